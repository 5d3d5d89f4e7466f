"""A local source that neither git nor DVC tracks is named, with the command that tracks it, before a queued run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ptft.experiments import set_params
from ptft.pipeline.tracked import untracked_problem
from tests.conftest import ROOT, run

CSV = "text,label\n" + "".join(f"review number {i} of a product,{'good' if i % 2 else 'bad'}\n" for i in range(40))


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git and DVC repository with data/raw/ in it."""
    root = tmp_path / "repo"
    (root / "data/raw").mkdir(parents=True)
    run(["git", "init", "-q"], root)
    run([sys.executable, "-m", "dvc", "init", "-q"], root)
    return root


def test_an_untracked_file_is_named_with_the_commands_that_track_it(repo):
    (repo / "data/raw/t.csv").write_text(CSV)
    problem = untracked_problem("data.source", repo / "data/raw/t.csv", repo)
    assert problem.startswith("data.source: 'data/raw/t.csv' is tracked by neither git nor DVC")
    assert "`git add data/raw/t.csv`" in problem and "`dvc add data/raw/t.csv`" in problem
    run(["git", "add", "data/raw/t.csv"], repo)  # staged is enough: a queued run carries the index
    assert untracked_problem("data.source", repo / "data/raw/t.csv", repo) is None


def test_a_folder_names_its_first_untracked_file(repo):
    for name in ("good/1.txt", "bad/2.txt"):
        (repo / "data/raw/reviews" / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / "data/raw/reviews" / name).write_text("a review")
    run(["git", "add", "data/raw/reviews/bad/2.txt"], repo)
    problem = untracked_problem("data.source", repo / "data/raw/reviews", repo)
    assert problem.startswith("data.source: 'data/raw/reviews/good/1.txt' (in data/raw/reviews) is tracked by neither")


def test_a_dvc_tracked_file_is_tracked_until_it_changes_without_dvc_add(repo):
    dvc = [sys.executable, "-m", "dvc"]
    (repo / "data/raw/t.csv").write_text(CSV)
    run([*dvc, "add", "-q", "data/raw/t.csv"], repo)
    assert "not see it" in untracked_problem("data.source", repo / "data/raw/t.csv", repo)  # .dvc file not in git
    run(["git", "add", "data/raw/t.csv.dvc", "data/raw/.gitignore"], repo)
    assert untracked_problem("data.source", repo / "data/raw/t.csv", repo) is None
    (repo / "data/raw/t.csv").write_text(CSV.replace("good", "fine", 1))
    assert untracked_problem("data.source", repo / "data/raw/t.csv", repo) == (
        "data.source: 'data/raw/t.csv' changed since data/raw/t.csv.dvc recorded it, so a queued experiment would "
        "read the old version: run `dvc add data/raw/t.csv` and `git add data/raw/t.csv.dvc`")
    run([*dvc, "add", "-q", "data/raw/t.csv"], repo)
    assert untracked_problem("data.source", repo / "data/raw/t.csv", repo) is None


def test_a_file_brought_by_dvc_import_url_is_tracked(repo, tmp_path):
    """docs/data.md's remote-file route, with a local path for the URL (the tests are offline)."""
    (tmp_path / "remote.csv").write_text(CSV)
    run([sys.executable, "-m", "dvc", "import-url", "-q", str(tmp_path / "remote.csv"), "data/raw/reviews.csv"], repo)
    run(["git", "add", "data/raw/reviews.csv.dvc", "data/raw/.gitignore"], repo)
    assert untracked_problem("data.source", repo / "data/raw/reviews.csv", repo) is None
    assert (repo / "data/raw/reviews.csv").read_text() == CSV


def test_set_params_reads_dvc_exp_runs_overrides_as_dvc_does():
    args = ["--queue", "-S", "data.source=data/raw/a.csv", "--set-param=pretrain.corpus=[train, corpus/x]",
            "-Sfinetune.lr=1e-5", "-S", "other.yaml:data.source=elsewhere", "-S", "params.yaml:seed=3"]
    assert set_params(args) == {"data.source": "data/raw/a.csv", "pretrain.corpus": ["train", "corpus/x"],
                                "finetune.lr": 1e-5, "seed": 3}


def test_exp_run_refuses_to_queue_an_untracked_source_then_queues_it_once_tracked(tmp_path):
    clone = tmp_path / "ptft"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], ROOT)
    (clone / "data/raw/t.csv").write_text(CSV)
    queue = [sys.executable, "-m", "ptft.cli", "exp-run", "--queue", "prepare", "-S", "data.source=data/raw/t.csv"]
    refused = run(queue, clone, check=False)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "ptft: error: data.source: 'data/raw/t.csv' is tracked by neither git nor DVC, so a queued experiment, a "
        "search or a clone would not see it: run `git add data/raw/t.csv`, or for a large file `dvc add "
        "data/raw/t.csv` and `git add data/raw/t.csv.dvc`, then commit"]
    status = [sys.executable, "-m", "dvc", "queue", "status"]
    assert "Queued" not in run(status, clone).stdout
    outside = [*queue[:-1], "data.source=data/t.csv"]
    (clone / "data/t.csv").write_text(CSV)
    assert "is outside data/raw/" in run(outside, clone, check=False).stderr
    run(["git", "add", "data/raw/t.csv"], clone)
    run(["git", "commit", "-q", "-m", "the data"], clone)
    run(queue, clone)
    assert "Queued" in run(status, clone).stdout


def test_search_refuses_an_untracked_source_before_its_study_starts(tmp_path):
    clone = tmp_path / "ptft"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], ROOT)
    (clone / "data/raw/t.csv").write_text(CSV)
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("  source: bbc ", "  source: data/raw/t.csv ", 1))
    refused = run([sys.executable, "-m", "ptft.cli", "search", "configs/search.yaml"], clone, check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith("ptft: error: data.source: 'data/raw/t.csv' is tracked by neither git nor DVC")
    assert len(refused.stderr.splitlines()) == 1
    assert not list((clone / "reports/search").glob("*.db"))  # no study was opened


def test_a_file_outside_the_repository_is_named_not_a_traceback(repo, tmp_path):
    (tmp_path / "elsewhere.txt").write_text("unlabelled text")
    problem = untracked_problem("pretrain.corpus", tmp_path / "elsewhere.txt", repo)
    assert problem.startswith("pretrain.corpus: '") and "is outside the repository" in problem
