"""Estimates before a run: FLOPs counted as training computes them, speed measured (never assumed), the comparison
estimated cell by cell with advice when it is long; `ptft estimate` on the smoke run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ptft.cli import main
from ptft.estimate import render
from ptft.pipeline import cost
from ptft.pipeline.cost import LONG, Estimate, Speed, announce, measured_speed
from ptft.pipeline.flops import padded_length, run_passes
from tests.conftest import run

SPEED = Speed(pretrain=1e9, finetune=2e9, startup=1.0, source="as given")


def test_a_batch_is_padded_to_its_longest_text_cut_at_max_length():
    assert padded_length([1, 1, 1, 10], batch_size=2, max_length=512, grouped=True) == (2 * 1 + 2 * 10) / 4
    assert padded_length([1, 1, 1, 10], batch_size=2, max_length=4, grouped=True) == (2 * 1 + 2 * 4) / 4
    # Batching texts of like length (group_by_length) pads less than random batches.
    lengths = list(range(1, 200))
    assert padded_length(lengths, 16, 512, grouped=True) < padded_length(lengths, 16, 512)


def test_a_comparison_run_trains_min_steps_when_its_epochs_are_fewer():
    settings = {"batch_size": 16, "epochs": 4, "min_steps": 70}
    assert run_passes(25, settings) == 35 * 25  # 2 steps an epoch: 35 epochs reach 70 steps
    assert run_passes(1439, settings) == 4 * 1439
    assert run_passes(25, {"batch_size": 16, "epochs": 10}) == 250  # finetune: epochs only


def _log(directory: Path, stage: str, threads: int, **speed: float) -> None:
    entry = {"stage": stage, "status": "succeeded", "wall_seconds": 12.0,
             "environment": {"threads": threads, "device": "cpu (x86_64)"}, "speed": {"train_runtime": 10.0, **speed}}
    (directory / f"{stage}.jsonl").write_text(json.dumps({**entry, "status": "failed"}) + "\n" + json.dumps(entry))


def test_speed_comes_from_this_machines_logs_at_the_same_threads_else_the_committed_run(tmp_path):
    logs, reference = tmp_path / "logs", tmp_path / "pipeline_time.json"
    logs.mkdir()
    assert measured_speed(2, logs, reference) is None  # nothing measured: no estimate rather than a guess
    reference.write_text(json.dumps({"machine": {"cpu": "Some CPU", "threads": 2},
                                     "rates": {"pretrain": 5.0, "finetune": 6.0, "startup": 2.0}}))
    assert measured_speed(2, logs, reference) == Speed(5.0, 6.0, 2.0, measured_speed(2, logs, reference).source)
    assert "Some CPU" in measured_speed(2, logs, reference).source
    _log(logs, "pretrain", 2, train_flops_per_second=7.0)
    _log(logs, "finetune", 2, train_flops_per_second=8.0)
    own = measured_speed(2, logs, reference)
    assert (own.pretrain, own.finetune, own.startup) == (7.0, 8.0, 2.0)  # start-up: wall less training
    assert "this checkout" in own.source
    assert measured_speed(4, logs, reference).pretrain == 5.0  # other threads: another speed


def test_a_long_comparison_says_how_to_run_less_of_it():
    short = {"main": [Estimate("pretrain", "1,000 tokens", 60)], "comparison": [Estimate("compare_scratch@25", "", 30)]}
    text = render(short, SPEED)
    assert "pretrain" in text and "compare_scratch@25" in text and "dvc repro export" not in text
    long = {**short, "comparison": [Estimate("compare_scratch@all", "3 runs", LONG + 1)]}
    assert "`dvc repro export` builds the model without it" in render(long, SPEED)
    assert "compare.budgets" in render(long, SPEED)


def test_a_stage_announces_its_estimate_and_never_fails_for_it(monkeypatch, capsys):
    monkeypatch.setattr(cost, "measured_speed", lambda threads: SPEED)
    monkeypatch.setattr(cost, "Sizes", lambda: None)
    params = {"runtime": {"threads": 2}}
    announce("compare_scratch@all", params, lambda sizes, speed: Estimate("compare_scratch@all", "3 runs", 2 * LONG))
    out = capsys.readouterr().out
    assert "compare_scratch@all: 3 runs, estimated 2.0 h (as given)" in out and "dvc repro export" in out
    announce("compare_tfidf@25", params, lambda sizes, speed: None)  # trains nothing: says nothing

    def missing(sizes, speed):
        raise FileNotFoundError("data/corpus")
    announce("pretrain", params, missing)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(cost, "measured_speed", lambda threads: None)
    announce("pretrain", params, lambda sizes, speed: pytest.fail("estimated with no measured speed"))


def test_estimate_needs_the_prepared_data_first(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["estimate"]) == 2
    assert "run `dvc repro prepare_corpus` first" in capsys.readouterr().err


def test_estimate_on_the_smoke_run_lists_every_training_stage(smoke_run):
    clone, _ = smoke_run
    out = run([sys.executable, "-m", "ptft.cli", "estimate"], clone).stdout
    assert "measured by this checkout's last pretrain and finetune runs" in out  # the smoke run's logs
    stages = run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], clone).stdout.split()
    training = [stage for stage in stages if stage in ("pretrain", "finetune") or stage.startswith(
        ("pretrain_objective@", "compare_pretrained@", "compare_scratch@", "compare_variant@", "compare_objective@"))]
    assert training and all(f"  {stage} " in out for stage in training)
    assert "compare_tfidf" not in out  # seconds, not estimated
    given = run([sys.executable, "-m", "ptft.cli", "estimate", "--flops", "1e15"], clone).stdout
    assert "at 1e+15 FLOP/s, as given" in given
