"""The locked environment: requirements/lock.txt pins, with hashes, all that pyproject asks for, and CI installs it."""

from __future__ import annotations

import os
import re
from importlib.metadata import PackageNotFoundError, version

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml; the lock is made for 3.11")

LOCK = ROOT / "requirements/lock.txt"
TORCH = ROOT / "requirements/torch.txt"
LOCK_SCRIPT = ROOT / "requirements/lock.sh"
# dvclive's GPU monitor reads NVML through this pure-Python binding: no CUDA library comes with it.
NOT_CUDA = {"nvidia-ml-py"}


def locked() -> dict[str, tuple[str, list[str]]]:
    """Each locked package's normalised name -> (pinned version, hashes), as pip reads the file."""
    entries = {}
    for entry in LOCK.read_text().replace("\\\n", " ").splitlines():
        if not entry.strip() or entry.lstrip().startswith("#"):
            continue
        requirement, *options = entry.split(" --hash=")
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", requirement.strip())
        assert match, f"lock.txt: {requirement.strip()!r} is not pinned with =="
        name = canonicalize_name(match[1])
        assert name not in entries, f"lock.txt pins {name} twice"
        entries[name] = (match[2], [option.split()[0] for option in options])
    return entries


def pyproject_requirements() -> list[Requirement]:
    """The requirements the lock must cover: the dependencies, the extras CI installs, and the build backend."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    return [Requirement(line) for line in (*pyproject["project"]["dependencies"], *extras["dev"], *extras["minilm"],
                                           *pyproject["build-system"]["requires"])]


def torch_pin() -> str:
    (pin,) = [line for line in TORCH.read_text().splitlines() if line.startswith("torch==")]
    return pin.removeprefix("torch==")


def test_lock_pins_every_pyproject_dependency_within_its_range():
    lock = locked()
    for requirement in pyproject_requirements():
        name = canonicalize_name(requirement.name)
        if name == "torch":  # installed on its own, before the lock: the CPU or the CUDA build
            assert name not in lock, "torch belongs in requirements/torch.txt, not in the lock"
            assert requirement.specifier.contains(torch_pin()), f"requirements/torch.txt is outside {requirement}"
            continue
        assert name in lock, f"{requirement} (pyproject.toml) is not in requirements/lock.txt: run requirements/lock.sh"
        pinned, hashes = lock[name]
        assert requirement.specifier.contains(pinned, prereleases=True), (
            f"lock.txt pins {name}=={pinned}, outside pyproject's {requirement}: run requirements/lock.sh")
        assert hashes, f"lock.txt pins {name} without a --hash"


def test_every_locked_package_has_a_hash_and_none_is_a_cuda_library():
    lock = locked()
    assert len(lock) > 100  # the whole closure, not only the direct dependencies
    assert all(hashes and all(h.startswith("sha256:") for h in hashes) for _, hashes in lock.values())
    cuda = sorted(name for name in lock if name not in NOT_CUDA
                  and (name.startswith(("nvidia-", "cuda-")) or name in {"triton", "torch"}))
    assert not cuda, f"CUDA packages in the CPU lock (torch resolved to its CUDA build?): {cuda}"
    # torch's own dependencies are locked, so that `pip install --require-hashes` finds a hash for each.
    assert {"filelock", "fsspec", "jinja2", "networkx", "setuptools", "sympy", "typing-extensions"} <= lock.keys()
    assert "#    requirements/lock.sh\n" in LOCK.read_text(), "lock.txt names its refresh command in its header"


def test_ci_installs_torch_then_the_lock_then_ptft_without_resolving():
    ci = (ROOT / ".ci/run").read_text().splitlines()
    steps = [line for line in ci if line.startswith("python -m pip install")]
    assert len(steps) == 4 and "--upgrade pip" in steps[0], steps
    torch, lock, ptft = steps[1:]
    assert "-r requirements/torch.txt" in torch
    assert "--require-hashes -r requirements/lock.txt" in lock
    assert "--no-deps" in ptft and ptft.endswith("-e ."), ptft


@pytest.mark.skipif(not os.environ.get("PTFT_CI"), reason="only CI's environment is installed from the lock alone")
def test_ci_environment_is_the_lock():
    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    drift = {name: (pinned, installed(name)) for name, (pinned, _) in locked().items() if installed(name) != pinned}
    assert not drift, f"installed versions differ from requirements/lock.txt (locked, installed): {drift}"
    assert version("torch").split("+")[0] == torch_pin()
