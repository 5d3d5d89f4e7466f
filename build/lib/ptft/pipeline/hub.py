"""Hugging Face Hub sources, ``hf:<id>[:<config>][@<revision>]``: parsed, resolved to a commit, and judged pinned.

A revision may be a branch, a tag or a commit sha. Only a full 40-hex commit sha names fixed content (a
branch or tag can move), so only such a source is reproducible; lineage records the commit any source
resolves to, asked of the Hub or, offline, read from the local Hub cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ptft.pipeline.params import UserError
from ptft.pipeline.sources import HUB_SOURCE

COMMIT = re.compile(r"[0-9a-f]{40}")
REPO_TYPES = ("dataset", "model")
# What a model snapshot needs: configs, safetensors weights and tokenizer files (no pickles, no other frameworks).
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.py"]


class HubError(UserError):
    """A Hub source that does not exist or cannot be read: the message names the spec and the fix."""


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf:`` source; ``spec`` is the text as the user wrote it, for messages."""

    id: str
    config: str | None = None
    revision: str | None = None
    spec: str = ""

    def __post_init__(self) -> None:
        if not self.spec:  # built in code rather than parsed: messages still show a spelling the user can write
            object.__setattr__(self, "spec", self.pinned(self.revision))

    def pinned(self, revision: str | None) -> str:
        """The spec at ``revision`` (the spelling to put in params.yaml to pin it)."""
        config = f":{self.config}" if self.config else ""
        return f"hf:{self.id}{config}" + (f"@{revision}" if revision else "")


def is_commit(revision: str | None) -> bool:
    """Whether ``revision`` is a full commit sha, the only revision whose content cannot change."""
    return bool(revision and COMMIT.fullmatch(revision))


def parse_hub(spec: str) -> HubRef:
    """``hf:<id>[:<config>][@<revision>]`` as a HubRef; a HubError if it is not of that form."""
    match = HUB_SOURCE.fullmatch(spec.strip())
    if not match:
        raise HubError(f"'{spec}' is not of the form hf:<id>[:<config>][@<revision>] (e.g. hf:stanfordnlp/imdb or "
                       "hf:user/data:en@<commit sha>)")
    return HubRef(match["id"], match["config"], match["revision"], spec)


def resolve_revision(ref: HubRef, repo_type: str) -> str | None:
    """The commit ``ref`` resolves to now: asked of the Hub, else (offline, no network, Hub down) read from the
    local Hub cache, else the revision itself if it is a commit sha; None if nothing is known.

    A repo or revision the Hub says does not exist is a HubError.
    """
    import httpx2  # huggingface_hub's HTTP client: its network errors are not OSErrors
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    _check_type(repo_type)
    api = HfApi()
    info = api.dataset_info if repo_type == "dataset" else api.model_info
    try:
        return info(ref.id, revision=ref.revision).sha
    except HFValidationError as err:  # checked before any request: the id itself is malformed
        raise HubError(f"'{ref.spec}': '{ref.id}' is not a valid Hub repo id ({err})") from err
    except GatedRepoError as err:  # a subclass of RepositoryNotFoundError: the repo exists
        raise HubError(f"'{ref.spec}': the {repo_type} '{ref.id}' is gated; accept its conditions on "
                       "huggingface.co and log in (hf auth login)") from err
    except RepositoryNotFoundError as err:
        raise HubError(f"'{ref.spec}': no {repo_type} '{ref.id}' on the Hub (or it is private: log in with "
                       "hf auth login); check the id") from err
    except RevisionNotFoundError as err:
        raise HubError(f"'{ref.spec}': the {repo_type} '{ref.id}' has no revision '{ref.revision}'; use one of its "
                       "branches, tags or commit shas") from err
    except (OSError, httpx2.HTTPError):  # HF_HUB_OFFLINE (OfflineModeIsEnabled), no network, or the Hub is down
        return ref.revision if is_commit(ref.revision) else cached_revision(ref, repo_type)


def cached_revision(ref: HubRef, repo_type: str) -> str | None:
    """The commit the local Hub cache last saw ``ref``'s branch or tag at (``refs/<revision>``), or None."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    _check_type(repo_type)
    # Read refs/ directly rather than through snapshot_download(local_files_only=True): that refuses a
    # snapshot it knows to be partial, yet a partial snapshot's commit is still the one the branch was at.
    refs = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=ref.id, repo_type=repo_type) / "refs"
    try:
        commit = (refs / (ref.revision or "main")).read_text().strip()
    except (OSError, ValueError):
        return None
    return commit if is_commit(commit) else None


def hub_identity(ref: HubRef, repo_type: str) -> dict[str, str | bool | None]:
    """What lineage records of a Hub source: the requested revision, the commit it resolved to, and whether
    the request itself pins the content."""
    return {"id": ref.id, "config": ref.config, "revision": ref.revision,
            "resolved": resolve_revision(ref, repo_type), "reproducible": is_commit(ref.revision)}


def unpinned_warning(ref: HubRef, resolved: str | None) -> str | None:
    """A one-line warning when ``ref`` is not pinned to a commit, naming the pinned spelling; None if it is."""
    if is_commit(ref.revision):
        return None
    return (f"'{ref.spec}' is not pinned to a commit, so it is not reproducible: the repo may change under the same "
            f"name. Pin it: {ref.pinned(resolved or '<commit sha>')}")


def _check_type(repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {', '.join(REPO_TYPES)}, not {repo_type!r}")


def model_snapshot(spec: str) -> str:
    """The local folder of the Hub model ``hf:<id>[@<revision>]`` at the commit it resolves to, fetched into the
    Hub cache once (its safetensors weights, configs and tokenizer files) and read from there offline."""
    import httpx2
    from huggingface_hub import snapshot_download

    ref = parse_hub(spec)
    if ref.config:
        raise HubError(f"'{spec}': a model has no config; write hf:<model id>[@<revision>]")
    resolved = resolve_revision(ref, "model")
    try:
        return snapshot_download(ref.id, revision=resolved or ref.revision, allow_patterns=MODEL_FILES)
    except (OSError, httpx2.HTTPError) as err:  # offline and not cached (LocalEntryNotFoundError), or no network
        raise HubError(f"'{spec}' is not in the local Hub cache and the Hub cannot be reached ({type(err).__name__});"
                       " connect once to fetch it, or point the init at a local checkpoint directory") from err
