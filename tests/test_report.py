"""End-to-end: the pull-request workflow's no-remote path, then `ptft report`, in a temp clone.

main holds full-size results; the pull request halves finetune.lr. As the workflow does, the base
is reproduced at a small size (configs/smoke.yaml here, configs/ci.yaml in the workflow) on a
local branch, the change runs at the same size, and the report compares the two.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import yaml

from tests.conftest import clone_env, copy_clone, dvc, run


def test_report_shows_the_changed_param_and_metric_deltas_against_the_base_at_the_same_size(smoke_run, tmp_path):
    # smoke_run's clone is main with configs/smoke.yaml merged and reproduced (uncommitted).
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    run(["git", "checkout", "-qb", "half-lr"], clone)
    committed = yaml.safe_load(run(["git", "show", "HEAD:params.yaml"], clone).stdout)
    old_lr = committed["finetune"]["lr"]
    committed["finetune"]["lr"] = old_lr / 2
    (clone / "params.yaml").write_text(yaml.safe_dump(committed, sort_keys=False))
    run(["git", "commit", "-qm", "halve the fine-tuning rate", "params.yaml"], clone)

    # The workflow's steps when no remote is configured.
    # Limited to the main chain (`test`) to keep the suite short; the workflow reproduces everything.
    run(["bash", ".github/scripts/reproduce-base.sh", "main", "configs/smoke.yaml", "main-at-ci-size", "test"], clone)
    run([sys.executable, "-m", "ptft.cli", "merge-params", "configs/smoke.yaml"], clone)
    repro = dvc("repro", "test", cwd=clone).stdout
    assert "Running stage 'finetune'" in repro and "Running stage 'pretrain'" not in repro
    markdown = run([sys.executable, "-m", "ptft.cli", "report", "--base", "main-at-ci-size"], clone).stdout
    assert markdown == (clone / "pr-report/report.md").read_text()

    # Only the pull request's param shows: the base was reproduced with the same config.
    params = markdown.split("### Params")[1].split("### Metrics")[0]
    assert re.findall(r"^\| `([\w.]+)` \|", params, re.M) == ["finetune.lr"]
    assert f"| `finetune.lr` | {old_lr:.4g} | {old_lr / 2:.4g} |" in params

    def metrics(stage: str, rev: str | None) -> dict:
        path = f"reports/{stage}/metrics.json"
        text = (clone / path).read_text() if rev is None else run(["git", "show", f"{rev}:{path}"], clone).stdout
        return json.loads(text)

    for stage in ("test", "evaluate"):
        old, new = metrics(stage, "main-at-ci-size"), metrics(stage, None)
        for key in ("accuracy", "macro_f1"):
            assert (f"| `{stage}` | `{key}` | {old[key]:.4g} | {new[key]:.4g} | {new[key] - old[key]:+.4g} |"
                    in markdown)
    # Pre-training did not change, and the base reproduced it bit for bit: like is compared with like.
    perplexity = metrics("pretrain", None)["perplexity"]
    assert metrics("pretrain", "main-at-ci-size")["perplexity"] == perplexity
    assert f"| `pretrain` | `perplexity` | {perplexity:.4g} | {perplexity:.4g} | +0 |" in markdown
    for png in ("pretrain_loss.png", "finetune_loss.png", "confusion.png"):
        assert (clone / "pr-report" / png).read_bytes().startswith(b"\x89PNG")
        assert f"]({png})" in markdown

    failed = subprocess.run([sys.executable, "-m", "ptft.cli", "report", "--base", "no-such-branch"], cwd=clone,
                            env=clone_env(clone), capture_output=True, text=True, check=False)
    assert failed.returncode == 2 and "ptft: error: dvc params diff no-such-branch failed" in failed.stderr


def test_dvc_diffs_work_between_commits_and_between_experiments(smoke_run, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    run(["git", "commit", "-qam", "smoke results"], clone)
    # Ten times the labelled examples: the smoke model's predictions surely change (a lower rate may not).
    n = yaml.safe_load((clone / "params.yaml").read_text())["finetune"]["train_examples"]
    dvc("exp", "run", "test", "--name", "more-labels", "-S", f"finetune.train_examples={n * 10}", cwd=clone)
    run(["git", "add", "-A"], clone)
    run(["git", "commit", "-qm", "keep the experiment"], clone)

    def diff(*args: str) -> dict:
        return json.loads(dvc(*args, "--json", cwd=clone).stdout)

    old, new = (json.loads(run(["git", "show", f"{rev}:reports/test/metrics.json"], clone).stdout)
                for rev in ("HEAD~1", "HEAD"))
    assert new["accuracy"] != old["accuracy"] or new["macro_f1"] != old["macro_f1"]
    for a, b in (("HEAD~1", "HEAD"), ("HEAD~1", "more-labels")):  # two commits; a commit and an experiment
        assert diff("params", "diff", a, b) == {"params.yaml": {"finetune.train_examples": {"old": n, "new": n * 10,
                                                                                            "diff": n * 9}}}
        metrics = diff("metrics", "diff", a, b, "--all")["reports/test/metrics.json"]
        for key in ("accuracy", "macro_f1"):
            assert metrics[key] == {"old": old[key], "new": new[key], "diff": new[key] - old[key]}
        plots = diff("plots", "diff", a, b)["data"]
        for plot in ("Pre-training loss (masked LM)", "Fine-tuning loss", "reports/test/confusion.json"):
            assert plots[plot][0]["revisions"] == [a, b], plot
        assert [p["revisions"] for p in plots["reports/test/confusion.png"]] == [[a], [b]]
