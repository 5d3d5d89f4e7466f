"""The narrow experiment table (`ptft exp-show`): which columns it keeps. The end-to-end check is in test_pipeline."""

from __future__ import annotations

import re

from ptft.experiments import ALWAYS, columns, keep_pattern

PARAMS = {"seed": 0, "finetune": {"lr": 1e-4, "freeze": "none", "layers": [1, 2]}}


def _row(**values: object) -> dict[str, object]:
    base = {"Experiment": None, "rev": "workspace", "Created": None, "seed": 0, "finetune.lr": 1e-4,
            "finetune.freeze": "none", "finetune.layers": [1, 2],
            "reports/evaluate/metrics.json:accuracy": 0.9, "reports/test/metrics.json:accuracy": 0.8,
            "reports/pretrain/metrics.json:perplexity": 20.0,
            "reports/compare/pretraining/objective-mlm/metrics.json:perplexity": 3.0}
    return {**base, **values}


def test_columns_are_the_changed_params_then_the_headline_metrics_the_rows_have():
    rows = [_row(), _row(**{"finetune.lr": 3e-4}), _row(**{"finetune.layers": [1, 3]})]
    assert columns(rows, PARAMS) == [
        "finetune.lr", "finetune.layers",  # in params.yaml's order; seed and freeze are the same in every row
        "reports/evaluate/metrics.json:accuracy", "reports/test/metrics.json:accuracy",
        "reports/pretrain/metrics.json:perplexity",  # prefixed: the comparison's objective cells have one too
    ]


def test_the_queue_columns_show_only_while_an_experiment_is_queued_running_or_failed():
    done = [_row(State="Success"), _row(State=None, **{"finetune.lr": 3e-4})]
    assert "State" not in columns(done, PARAMS)
    assert columns([*done, _row(State="Running")], PARAMS)[:2] == ["State", "Executor"]


def test_a_row_without_a_param_does_not_make_it_changed():
    rows = [_row(**{"finetune.freeze": None}), _row()]  # e.g. a commit from before the key existed
    assert "finetune.freeze" not in columns(rows, PARAMS)
    assert columns([], PARAMS) == []


def test_a_param_name_that_a_metric_shares_is_found_under_its_file():
    rows = [{"params.yaml:seed": seed, "reports/prepare/stats.json:seed": 0} for seed in (0, 1)]
    assert columns(rows, PARAMS) == ["params.yaml:seed"]


def test_keep_pattern_matches_exactly_the_columns():
    pattern = re.compile(keep_pattern(["finetune.lr", "reports/test/metrics.json:accuracy"]))
    for name in [*ALWAYS, "finetune.lr", "reports/test/metrics.json:accuracy"]:
        assert pattern.match(name), name
    for name in ["finetune.lr_decay", "finetuneXlr", "reports/test/metrics.json:accuracy_top5", "Experimental"]:
        assert not pattern.match(name), name
