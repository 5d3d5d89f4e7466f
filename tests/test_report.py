"""End-to-end: `ptft report` on a branch that changes a param, against main, in a temp clone."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.conftest import clone_env, copy_clone, dvc, run


def test_report_shows_the_changed_param_and_metric_deltas(smoke_run, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    run(["git", "add", "-A"], clone)
    run(["git", "commit", "-qm", "smoke results on main"], clone)
    run(["git", "checkout", "-qb", "half-lr"], clone)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    old_lr = params["finetune"]["lr"]
    params["finetune"]["lr"] = old_lr / 2
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc("repro", cwd=clone)

    markdown = run([sys.executable, "-m", "ptft.cli", "report", "--base", "main"], clone).stdout
    assert markdown == (clone / "pr-report/report.md").read_text()
    assert f"| `finetune.lr` | {old_lr:.4g} | {old_lr / 2:.4g} |" in markdown
    assert "model.layers" not in markdown  # unchanged params stay out
    old = json.loads(run(["git", "show", "main:reports/test/metrics.json"], clone).stdout)
    new = json.loads((clone / "reports/test/metrics.json").read_text())
    for key in ("accuracy", "macro_f1"):
        assert f"| `test` | `{key}` | {old[key]:.4g} | {new[key]:.4g} | {new[key] - old[key]:+.4g} |" in markdown
    for png in ("pretrain_loss.png", "finetune_loss.png", "confusion.png"):
        assert (clone / "pr-report" / png).read_bytes().startswith(b"\x89PNG")
        assert f"]({png})" in markdown

    failed = subprocess.run([sys.executable, "-m", "ptft.cli", "report", "--base", "no-such-branch"], cwd=clone,
                            env=clone_env(clone), capture_output=True, text=True)
    assert failed.returncode == 2 and "ptft: error: dvc params diff no-such-branch failed" in failed.stderr
