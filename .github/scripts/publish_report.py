"""Publish a `ptft report` on a pull request as one comment, which later pushes edit in place.

The report's PNGs are committed to the ``ptft-report-assets`` branch so the comment can show them;
the markdown, its image links pointing there, goes into the comment that starts with MARKER.

Usage: publish_report.py REPORT_DIR PR_NUMBER. Reads GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_SHA,
GITHUB_API_URL and GITHUB_SERVER_URL (Actions sets all but the token). Prints the markdown posted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

MARKER = "<!-- ptft-report -->"
BRANCH = "ptft-report-assets"
BOT = ["-c", "user.name=github-actions[bot]", "-c", "user.email=41898282+github-actions[bot]@users.noreply.github.com"]


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True)


def publish_images(report: Path, subdir: str) -> str:
    """Commit the report's PNGs under ``subdir`` on BRANCH and push; return that commit."""
    assets = Path(tempfile.mkdtemp()) / "assets"
    if git("fetch", "--quiet", "--depth", "1", "origin", BRANCH, check=False).returncode == 0:
        git("worktree", "add", "--quiet", "--detach", str(assets), "FETCH_HEAD")
    else:  # the first report in this repository
        git("worktree", "add", "--quiet", "--detach", str(assets))
        git("checkout", "--quiet", "--orphan", BRANCH, cwd=assets)
        git("rm", "-r", "--quiet", "--force", ".", cwd=assets)
    (assets / subdir).mkdir(parents=True, exist_ok=True)
    for png in report.glob("*.png"):
        shutil.copyfile(png, assets / subdir / png.name)
    git("add", subdir, cwd=assets)
    git(*BOT, "commit", "--quiet", "-m", f"ptft report images: {subdir}", cwd=assets)
    # Every run adds its own directory, so a push that lost a race only needs a rebase.
    for _ in range(3):
        if git("push", "--quiet", "origin", f"HEAD:refs/heads/{BRANCH}", cwd=assets, check=False).returncode == 0:
            return git("rev-parse", "HEAD", cwd=assets).stdout.strip()
        git(*BOT, "pull", "--quiet", "--rebase", "origin", BRANCH, cwd=assets)
    raise SystemExit(f"could not push {BRANCH} after 3 attempts")


def github(method: str, path: str, body: dict | None = None) -> object:
    request = urllib.request.Request(
        os.environ.get("GITHUB_API_URL", "https://api.github.com") + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}", "Accept": "application/vnd.github+json",
                 "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def upsert_comment(repo: str, pr: str, body: str) -> None:
    """Edit this workflow's earlier comment on the pull request, or create it."""
    page = 1
    while comments := github("GET", f"/repos/{repo}/issues/{pr}/comments?per_page=100&page={page}"):
        for comment in comments:
            if comment["body"].startswith(MARKER):
                github("PATCH", f"/repos/{repo}/issues/comments/{comment['id']}", {"body": body})
                return
        page += 1
    github("POST", f"/repos/{repo}/issues/{pr}/comments", {"body": body})


def main() -> None:
    report, pr = Path(sys.argv[1]), sys.argv[2]
    repo, sha = os.environ["GITHUB_REPOSITORY"], os.environ["GITHUB_SHA"]
    subdir = f"pr-{pr}/{sha}"
    commit = publish_images(report, subdir)
    url = f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{repo}/raw/{commit}/{subdir}"
    markdown = re.sub(r"\]\(([\w.-]+\.png)\)", rf"]({url}/\1)", (report / "report.md").read_text())
    body = f"{MARKER}\n{markdown}"
    upsert_comment(repo, pr, body)
    print(body, end="")


if __name__ == "__main__":
    main()
