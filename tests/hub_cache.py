"""A Hugging Face Hub cache built by hand, so tests load Hub sources through the libraries' own code, offline.

``cache`` is an HF_HOME-like folder: the Hub cache (HF_HUB_CACHE) is ``cache/hub``, datasets' Arrow cache
``cache/datasets``. Repos are laid out as huggingface_hub lays them out (``<type>s--<org>--<name>/refs/<branch>``
holding a commit sha, ``snapshots/<sha>/<files>``; files are stored in the snapshot itself, as the library does
where symlinks are unavailable). Call ``use_hub_cache`` before loading anything.

What works offline from such a cache (huggingface_hub 2.4, datasets 5.2, transformers 5.24):

- ``AutoModel*.from_pretrained(id, revision=...)`` and ``AutoTokenizer.from_pretrained(id, revision=...)``, with
  revision a sha, a branch/tag in refs/, or None (refs/main).
- ``snapshot_download(id, repo_type=..., revision=..., local_files_only=True)``: the snapshot folder; then
  ``datasets.load_dataset(folder, config)`` reads it as the Hub would (same split and config rules).
- NOT ``datasets.load_dataset(id, revision=...)``: with HF_HUB_OFFLINE it never reads the Hub cache (ConnectionError),
  and if its own Arrow cache holds the id it returns the latest cached build whatever the revision.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import yaml

SHARD = "{split}-00000-of-00001.parquet"  # push_to_hub's names: datasets reads any split name from them


def hub_dir(cache: Path) -> Path:
    """The Hub cache (HF_HUB_CACHE) inside ``cache``."""
    return Path(cache) / "hub"


def _repo(cache: Path, repo_type: str, repo_id: str, sha: str, branch: str | None) -> Path:
    repo = hub_dir(cache) / "--".join([f"{repo_type}s", *repo_id.split("/")])
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True, exist_ok=True)
    if branch:
        ref = repo / "refs" / branch  # a branch such as refs/pr/1 nests, as in the real cache
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(sha)  # no newline: the library writes none
    return snapshot


def dataset_repo(cache: Path, repo_id: str, splits: dict[str, pd.DataFrame], sha: str, config: str | None = None,
                 branch: str | None = "main") -> None:
    """Dataset ``repo_id`` at commit ``sha`` (``branch`` pointing at it), one Parquet file per split.

    Without ``config`` the files are ``data/<split>-00000-of-00001.parquet``, which datasets names by split (a bare
    ``data/unsupervised.parquet`` would be silently ignored: only train/validation/test are guessed from plain
    names). With ``config`` they go under ``<config>/`` and README.md's ``configs:`` block gains the config, as
    on the Hub; call once per config. A repo holds either no config or named ones, not both.
    """
    snapshot = _repo(cache, "dataset", repo_id, sha, branch)
    folder = config or "data"
    for split, frame in splits.items():
        path = snapshot / folder / SHARD.format(split=split)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
    if config:
        readme = snapshot / "README.md"
        configs = _card(readme).get("configs", [])
        configs = [c for c in configs if c["config_name"] != config]
        configs.append({"config_name": config,
                        "data_files": [{"split": split, "path": f"{config}/{SHARD.format(split=split)}"}
                                       for split in splits]})
        readme.write_text(f"---\n{yaml.safe_dump({'configs': configs}, sort_keys=False)}---\n")


def _card(readme: Path) -> dict:
    if not readme.exists():
        return {}
    match = re.match(r"---\n(.*?)---\n", readme.read_text(), re.DOTALL)
    return yaml.safe_load(match.group(1)) if match else {}


def model_repo(cache: Path, repo_id: str, model_dir: Path, sha: str, branch: str | None = "main") -> None:
    """Model ``repo_id`` at commit ``sha`` holding the files of ``model_dir`` (a save_pretrained folder)."""
    shutil.copytree(model_dir, _repo(cache, "model", repo_id, sha, branch), dirs_exist_ok=True)


def use_hub_cache(monkeypatch, cache: Path) -> None:
    """Offline, with ``cache`` as the only Hugging Face cache: nothing reaches the network or ~/.cache.

    The environment variables alone are too late: huggingface_hub and datasets read them once, at import, into
    module constants (``huggingface_hub.constants.HF_HUB_OFFLINE``/``HF_HUB_CACHE``, ``datasets.config.HF_HUB_OFFLINE``
    and its cache paths). transformers asks huggingface_hub at each call. The variables are set too, for
    subprocesses.
    """
    import datasets.config  # imported before the variables change, so it keeps the real ones after the test
    from huggingface_hub import constants

    cache = Path(cache)
    hub_dir(cache).mkdir(parents=True, exist_ok=True)
    arrow = cache / "datasets"
    for name, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_CACHE": str(hub_dir(cache)),
                        "HF_DATASETS_CACHE": str(arrow)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_dir(cache)))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", arrow)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", arrow / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", arrow / "downloads" / "extracted")


def answer_hub_api(monkeypatch, datasets: dict[str, dict[str, str]] | None = None,
                   models: dict[str, dict[str, str]] | None = None, reachable: bool = True) -> list[str]:
    """The Hub online, answered in-process: ``{repo_id: {branch or tag: sha}}`` per repo type.

    huggingface_hub's own client sends the requests, so its real errors come back: a missing repo is a 404
    ``RepoNotFound``, a missing revision a 404 ``RevisionNotFound``. ``reachable=False`` makes every request
    fail as a lost network does (httpx2.ConnectError). Returns the request paths, in order. Use after
    ``use_hub_cache``.
    """
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    repos = {"datasets": datasets or {}, "models": models or {}}
    requests: list[str] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        path = unquote(request.url.path)
        requests.append(path)
        if not reachable:
            raise httpx2.ConnectError("[Errno -2] Name or service not known", request=request)
        match = re.fullmatch(r"/api/(datasets|models)/([^/]+(?:/[^/]+)?)(?:/revision/(.+))?", path)
        revisions = repos[match[1]].get(match[2]) if match else None
        if revisions is None:
            return httpx2.Response(404, headers={"X-Error-Code": "RepoNotFound"}, request=request)
        revision = match[3] or "main"
        sha = revisions.get(revision) or (revision if revision in revisions.values() else None)
        if sha is None:
            return httpx2.Response(404, headers={"X-Error-Code": "RevisionNotFound",
                                                 "X-Error-Message": "Invalid rev id"}, request=request)
        return httpx2.Response(200, json={"id": match[2], "sha": sha, "private": False}, request=request)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub sends every request through one shared client made by this factory; both are restored after
    # the test (set_client_factory would leave the fake in place).
    monkeypatch.setattr(_http, "_GLOBAL_CLIENT_FACTORY", lambda: httpx2.Client(transport=httpx2.MockTransport(answer)))
    monkeypatch.setattr(_http, "_GLOBAL_CLIENT", None)
    return requests
