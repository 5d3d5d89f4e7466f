"""Does the pre-training recipe beat TF-IDF on real data? Measured through the real pipeline (a benchmark, not a test).

For each development dataset (``../shared/data``: SST-2, 20 Newsgroups; and BBC News, the default data) a temp
clone of the committed HEAD gets the data as a user's own file (official splits; validation carved from train),
pre-trains on the whole train split's text (``pretrain.corpus: train``: the unlabelled rest of the data), and
runs the comparison's ``tfidf`` and ``pretrained`` cells at the dataset's label budgets, 3 seeds each, as
``dvc repro`` does for a user. Each recipe is a params overlay merged over the clone's params.yaml:

- ``new``: none (the defaults of the commit measured);
- ``old``: ``benchmarks/recipes/old.yaml``, the defaults before issue 28;
- any other name: ``benchmarks/recipes/NAME.yaml`` (a grid point), and ``A+B`` for B's params merged over A's.

Usage:  python benchmarks/recipes.py [--datasets sst2,20ng,bbc] [--recipes old,new] [--out DIR]
Writes recipes.json and recipes.md (default: benchmarks/results/); a (dataset, recipe) already measured at the
same overlay is kept unless --again; an interrupted one resumes in its clone (--work).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from clones import repro, sh

from ptft.pipeline.compare import summarize
from ptft.pipeline.cost import last_succeeded, model_config, pretrain_flops_per_token
from ptft.pipeline.params import deep_merge

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data"
RECIPES = ROOT / "benchmarks/recipes"
SEEDS = [1, 2, 3]
PRETRAIN_LOG = "logs/pretrain.jsonl"  # the pretrain stage's run log in a clone
# A recipe's pre-training is capped at the default pipeline's own compute on BBC News (3,640 steps of 2,048 tokens,
# 13 minutes on 2 cores): an epochs budget over a larger corpus (10 epochs of 20 Newsgroups: 58M tokens, hours) is
# cut to this many tokens. A recipe that sets pretrain.tokens or max_steps itself is taken as it is.
PRETRAIN_TOKENS_CAP = 7_454_720
# Each dataset: the data params a user would set for the file, and the label budgets the issue asks for.
DATASETS: dict[str, dict[str, Any]] = {
    "sst2": {"file": "sst2-glue-train-dev.csv.gz", "budgets": [100, 1000],
             "data": {"text_column": "sentence", "label_column": "label", "split": "official",
                      "splits": {"train": "train", "validation": None, "test": "validation"}}},
    "20ng": {"file": "20newsgroups-bydate-18846.csv.gz", "budgets": [100, 1000],
             "data": {"text_column": "text", "label_column": "newsgroup", "split": "official",
                      "splits": {"train": "train", "validation": None, "test": "test"}}},
    "bbc": {"file": None, "budgets": [100], "data": {}},
}


def overlay(recipe: str) -> dict[str, Any]:
    """The params a recipe sets over the defaults: ``new`` none, ``NAME`` benchmarks/recipes/NAME.yaml's, and
    ``A+B`` B's merged over A's (``old+windows``: the old recipe reading long documents in windows)."""
    merged: dict[str, Any] = {}
    for name in recipe.split("+"):
        if name != "new":
            merged = _merge(merged, yaml.safe_load((RECIPES / f"{name}.yaml").read_text()))
    return merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    return {**base, **{k: _merge(base.get(k, {}), v) if isinstance(v, dict) else v for k, v in over.items()}}


def clone_for(dataset: str, work: Path) -> tuple[Path, dict[str, Any]]:
    """A clone of HEAD whose params read the dataset as a user's file and run only the cells measured here, and those
    params. A clone left by an earlier or interrupted run is reused, moved to HEAD as a user would pull a new commit:
    `dvc repro` then reruns what the new code or params change (its run cache restores what it ran before) and
    pretrain resumes from its last checkpoint."""
    clone = work / dataset / "ptft"
    if clone.exists() and sh(["git", "rev-parse", "HEAD"], clone) != sh(["git", "rev-parse", "HEAD"], ROOT):
        sh(["git", "fetch", "--quiet", str(ROOT), "HEAD"], clone)
        sh(["git", "checkout", "--quiet", "--force", "FETCH_HEAD"], clone)
    if not clone.exists():
        clone.parent.mkdir(parents=True, exist_ok=True)
        sh(["git", "clone", "--quiet", str(ROOT), str(clone)], ROOT)
    # This checkout's DVC cache, run cache included: a stage its own pipeline already ran with the same code, params
    # and data (BBC's pre-training and cells at the defaults) is restored, not run again.
    cache = sh([sys.executable, "-m", "dvc", "cache", "dir"], ROOT).strip()
    sh([sys.executable, "-m", "dvc", "cache", "dir", "--local", cache], clone)
    spec = DATASETS[dataset]
    data: dict[str, Any] = dict(spec["data"])
    if spec["file"]:
        name = Path(spec["file"]).name.removesuffix(".gz")
        if not (clone / "data/raw" / name).is_file():
            with gzip.open(SHARED / spec["file"], "rb") as packed:
                (clone / "data/raw" / name).write_bytes(packed.read())
        data["source"] = f"data/raw/{name}"
    committed = yaml.safe_load(sh(["git", "show", "HEAD:params.yaml"], clone))
    return clone, deep_merge(committed, {"data": data, "pretrain": {"corpus": "train"},
                                         "compare": {"budgets": spec["budgets"], "seeds": SEEDS, "minilm_budgets": [],
                                                     "variants": [], "objectives": [], "continued": []}})


def with_recipe(clone: Path, recipe: str, base: dict[str, Any], corpus_tokens: int | None = None) -> bool:
    """Write the recipe's params into the clone; with the corpus' size known, an epochs budget of more than
    :data:`PRETRAIN_TOKENS_CAP` tokens is cut to it. Whether it was."""
    params = deep_merge(base, overlay(recipe))
    pretrain = params["pretrain"]
    capped = (corpus_tokens is not None and not pretrain.get("tokens") and not pretrain.get("max_steps")
              and pretrain["epochs"] * corpus_tokens > PRETRAIN_TOKENS_CAP)
    if capped:
        pretrain["tokens"] = PRETRAIN_TOKENS_CAP
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return capped


def cell(clone: Path, arm: str, budget: int) -> dict[str, Any]:
    """A comparison cell's test accuracy over seeds, summarised as the comparison's report does."""
    runs = json.loads((clone / f"reports/compare/runs/{arm}-{budget}.json").read_text())
    summary = summarize(runs)
    if "skipped" in summary:
        return {"skipped": summary["skipped"]}
    accuracy = summary["test_accuracy"]
    steps = [run["steps"] for run in runs["runs"] if "steps" in run]  # fine-tuning's optimizer steps (not TF-IDF)
    return {"mean": round(accuracy["mean"], 4), "std": round(accuracy["std"], 4), "seeds": summary["seeds"],
            "macro_f1": round(summary["test_macro_f1"]["mean"], 4),
            **({"steps": round(sum(steps) / len(steps))} if steps else {})}


def measure(clone: Path, dataset: str, recipe: str, base: dict[str, Any]) -> dict[str, Any]:
    """Pre-train with the recipe, then its pretrained cells and (recipe-independent) TF-IDF's."""
    with_recipe(clone, recipe, base)
    budgets = DATASETS[dataset]["budgets"]
    seconds = {"prepare": repro(clone, ["prepare_corpus"])}
    stats = json.loads((clone / "reports/prepare_corpus/stats.json").read_text())
    capped = with_recipe(clone, recipe, base, stats["tokens"])
    before = last_succeeded(clone / PRETRAIN_LOG)
    seconds["pretrain"] = repro(clone, ["pretrain"])
    ran = last_succeeded(clone / PRETRAIN_LOG) != before  # else DVC found it done: another recipe's pre-training
    seconds["cells"] = repro(clone, [f"compare_{arm}@{b}" for arm in ("tfidf", "pretrained") for b in budgets])
    pretrain = json.loads((clone / "reports/pretrain/metrics.json").read_text())
    prepared = json.loads((clone / "reports/prepare/stats.json").read_text())
    params = yaml.safe_load((clone / "params.yaml").read_text())
    tokens = pretrain["steps"] * params["pretrain"]["batch_size"] * params["pretrain"]["seq_len"]
    return {"commit": sh(["git", "rev-parse", "HEAD"], clone).strip(), "overlay": overlay(recipe),
            "data": {"splits": {name: split["documents"] for name, split in prepared["splits"].items()},
                     "corpus_documents": stats["documents"], "corpus_tokens": stats["tokens"]},
            "pretrain": {"steps": pretrain["steps"], "tokens": tokens, "pflop": _pflop(clone, params, tokens),
                         "eval_loss": round(pretrain["eval_loss"], 4), "capped": capped, "ran": ran},
            "seconds": seconds,
            "accuracy": {arm: {str(b): cell(clone, arm, b) for b in budgets} for arm in ("tfidf", "pretrained")}}


def _pflop(clone: Path, params: dict[str, Any], tokens: int) -> float:
    """The pre-training's compute in PFLOP: its tokens at the training FLOPs per token of its model and objective
    (what its run reports as its speed; also for a pre-training DVC restored from another recipe's run)."""
    config = model_config("scratch", params["pretrain"]["objective"], params["model"], clone / "data/tokenizer")
    return round(tokens * pretrain_flops_per_token(params["pretrain"], config) / 1e15, 3)


def markdown(result: dict[str, Any]) -> str:
    recipes = sorted({r for cells in result["cells"].values() for r in cells}, key=lambda r: (r != "old", r))
    lines = ["# Pre-training recipes against TF-IDF on real data\n",
             f"{result['machine']}, runtime.threads 2. Test accuracy, mean ± std over {len(SEEDS)} seeds, each on "
             "its own stratified subset of the labelled train split; pre-training on the whole train split's text. "
             f"An epochs budget over {PRETRAIN_TOKENS_CAP:,} tokens is capped there (the default pipeline's "
             "pre-training compute on BBC News). `python benchmarks/recipes.py`.\n",
             "| dataset | labels | tfidf | " + " | ".join(recipes) + " | new − tfidf | best recipe − tfidf |",
             "| --- | --- | --- |" + " --- |" * (len(recipes) + 2)]
    for dataset, cells in result["cells"].items():
        for budget in (str(b) for b in DATASETS[dataset]["budgets"]):
            tfidf = next(iter(cells.values()))["accuracy"]["tfidf"][budget]
            scores = {r: cells[r]["accuracy"]["pretrained"][budget] for r in recipes if r in cells}
            best = max((s["mean"] for s in scores.values() if "mean" in s), default=None)
            new = scores.get("new", {}).get("mean")
            lines.append(f"| {dataset} | {budget} | {_score(tfidf)} | "
                         + " | ".join(_score(scores[r]) if r in scores else "—" for r in recipes)
                         + f" | {_points(new, tfidf)} | {_points(best, tfidf)} |")
    lines += ["\n## Pre-training per recipe\n", "| dataset | recipe | corpus tokens | steps | tokens trained | PFLOP | "
              "validation loss | minutes | commit |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for dataset, cells in result["cells"].items():
        for recipe in recipes:
            if recipe in cells:
                run = cells[recipe]
                cap = " (capped)" if run["pretrain"].get("capped") else ""
                lines.append(f"| {dataset} | {recipe} | {run['data']['corpus_tokens']:,} | "
                             f"{run['pretrain']['steps']} | "
                             f"{run['pretrain']['tokens']:,}{cap} | {run['pretrain'].get('pflop') or '—'} | "
                             f"{run['pretrain']['eval_loss']:.3f} | {_minutes(run)} | {run['commit'][:10]} |")
    return "\n".join(lines) + "\n"


def _minutes(run: dict[str, Any]) -> str:
    """The pre-training's wall minutes, or where DVC reused another recipe's same pre-training."""
    ran = run["pretrain"].get("ran", run["seconds"]["pretrain"] > 60)  # runs measured before "ran" was recorded
    return f"{run['seconds']['pretrain'] / 60:.1f}" if ran else "reused"


def _points(accuracy: float | None, tfidf: dict[str, Any]) -> str:
    return "—" if accuracy is None else f"{(accuracy - tfidf['mean']) * 100:+.1f} points"


def _score(summary: dict[str, Any]) -> str:
    return "skipped" if "skipped" in summary else f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--recipes", default="old,new")
    parser.add_argument("--again", action="store_true", help="measure again what recipes.json already holds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ptft-recipes",
                        help="where the clones are kept; an interrupted run resumes from them")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "recipes.json"
    result = json.loads(path.read_text()) if path.is_file() else {"cells": {}}
    result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    for dataset in args.datasets.split(","):
        clone, base = None, {}
        for recipe in args.recipes.split(","):
            done = result["cells"].get(dataset, {}).get(recipe)
            if done and done["overlay"] == overlay(recipe) and not args.again:
                continue
            if clone is None:
                clone, base = clone_for(dataset, args.work)
            result["cells"].setdefault(dataset, {})[recipe] = measure(clone, dataset, recipe, base)
            write(result, args.out)  # after each (dataset, recipe): a long run keeps what it finished
            print(json.dumps({dataset: {recipe: result["cells"][dataset][recipe]["accuracy"]}}), flush=True)
    print(markdown(result))


def write(result: dict[str, Any], out: Path) -> None:
    (out / "recipes.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "recipes.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
