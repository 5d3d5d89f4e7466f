"""End-to-end: data-parallel pretrain and finetune under torchrun (2 CPU processes, gloo), through `dvc repro`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import copy_clone, dvc

# Two processes see the same global batch (8 blocks each), but each draws its blocks and masks by rank,
# so the runs differ in the order of the data only: the final validation loss agrees within 2%.
LOSS_TOLERANCE = 0.02
LAUNCH = "torchrun --standalone --nproc_per_node=2"


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_torchrun_two_processes_match_one(smoke_run, tmp_path):
    single = smoke_run[0]
    clone = copy_clone(single, tmp_path / "ptft", {"runtime": {"launch": LAUNCH}})
    stale = set(json.loads(dvc("status", "--json", cwd=clone).stdout))
    assert {"pretrain", "finetune"} <= stale and "prepare" not in stale  # the launcher is part of their command
    output = dvc("repro", "pretrain", "finetune", cwd=clone).stdout
    assert f"{LAUNCH} stages/pretrain.py" in output

    for out in ("models/pretrained", "reports/pretrain", "models/finetuned", "reports/finetune"):
        assert _files(clone / out) == _files(single / out), out  # rank 0 alone wrote, and wrote everything
    assert not list(clone.glob("**/.*.tmp")) and not (clone / "checkpoints/pretrain").exists()
    logged = [json.loads(line) for line in (clone / "logs/pretrain.jsonl").read_text().splitlines()]
    assert len(logged) == 2 and logged[-1]["status"] == "succeeded"  # the smoke run's entry and rank 0's

    one, two = (json.loads((c / "reports/pretrain/metrics.json").read_text()) for c in (single, clone))
    assert two["steps"] == one["steps"]  # the same global batch, so the same schedule
    assert abs(two["eval_loss"] - one["eval_loss"]) <= LOSS_TOLERANCE * one["eval_loss"]
    finetuned = json.loads((clone / "reports/finetune/metrics.json").read_text())
    assert finetuned["steps"] == json.loads((single / "reports/finetune/metrics.json").read_text())["steps"]
    assert json.loads(dvc("status", "--json", "pretrain", "finetune", cwd=clone).stdout) == {}
