"""Whether git or DVC tracks a local file a run reads (``data.source``, a file of ``pretrain.corpus``).

`dvc exp run --queue` and `--temp`, and so `ptft search`, run in a fresh copy of the commit plus the work tree's
changes to tracked files: a file that neither git nor DVC tracks is not there, and a clone of the commit cannot
rebuild what was made from it. Tracked means in git's index, or covered by a ``.dvc`` file in git's index (``dvc
add``, ``dvc import-url``) whose recorded hash is the file's as it is now.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git_index(root: Path) -> set[str] | None:
    """The files in git's index (committed or staged), relative to ``root``; None outside a git repository."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True)
    if listed.returncode:
        return None
    return set(listed.stdout.decode().split("\0")) - {""}


def _dvc_file(relative: Path, index: set[str]) -> Path | None:
    """The ``.dvc`` file in git's index that covers ``relative`` (the file's own, or a folder's above it)."""
    for path in (relative, *relative.parents):
        if path != Path(".") and f"{path}.dvc" in index:
            return Path(f"{path}.dvc")
    return None


def _dvc_recorded(dvc_file: Path) -> str | None:
    from ptft.pipeline.params import read_yaml

    outs = read_yaml(dvc_file).get("outs") or [{}]
    return outs[0].get("md5")


def untracked_problem(key: str, path: Path, root: Path) -> str | None:
    """Why ``path`` (read through param ``key``) would be missing from a queued experiment, with the fix; or None."""
    from ptft.pipeline.dvc_files import md5_path

    index = _git_index(root)
    if index is None:
        return None  # no git repository: no clone or queued experiment to carry it to
    if not Path(path).absolute().is_relative_to(root.absolute()):
        return (f"{key}: '{path}' is outside the repository, so a queued experiment, a search or a clone would not "
                "see it: move it under data/raw/ (data.source) or corpus/ (pretrain.corpus) and track it there")
    relative = Path(path).absolute().relative_to(root.absolute())
    if (root / relative).is_dir():
        files = sorted(p.relative_to(root) for p in (root / relative).rglob("*") if p.is_file())
    else:
        files = [relative]
    checked: set[Path] = set()
    for file in files:
        if str(file) in index:
            continue
        dvc_file = _dvc_file(file, index)
        if dvc_file is None:
            shown = f"'{file}'" if file == relative else f"'{file}' (in {relative})"
            return (f"{key}: {shown} is tracked by neither git nor DVC, so a queued experiment, a search or a clone "
                    f"would not see it: run `git add {relative}`, or for a large file `dvc add {relative}` and "
                    f"`git add {relative}.dvc`, then commit")
        if dvc_file in checked:  # a folder's .dvc file: hashed once for all its files
            continue
        checked.add(dvc_file)
        covered = dvc_file.with_suffix("")
        if _dvc_recorded(root / dvc_file) != md5_path(root / covered):
            return (f"{key}: '{covered}' changed since {dvc_file} recorded it, so a queued experiment would read the "
                    f"old version: run `dvc add {covered}` and `git add {dvc_file}`")
    return None
