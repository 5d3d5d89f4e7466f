"""What pre-training text buys on BBC News, measured through the real pipeline (a benchmark, not a test).

Two questions, each answered by `dvc repro` of the comparison's cells in a temp clone of the committed HEAD:

- **How much text does pre-training need?** The model is pre-trained for the default pipeline's number of
  optimizer steps on the first 1/16, 1/4 and all of the BBC train split's text (``pretrain.corpus`` names a
  file cut from it; the whole split is ``train``), then fine-tuned at 25 and 100 labels, 3 seeds, beside
  scratch and TF-IDF (whose tokenizer and vocabulary come from the same text).
- **Does continued pre-training help a public checkpoint?** all-MiniLM-L6-v2 fine-tuned directly
  (``compare.minilm_budgets``) against MiniLM pre-trained further on the train text first
  (``compare.continued: [minilm]``), at 25 and 100 labels, 3 seeds.

Usage:  python benchmarks/pretraining_text.py [--parts size,continued] [--fractions 16,4,1] [--out DIR]
Writes pretraining_text.json and pretraining_text.md (default: benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from clones import repro, sh

from ptft.pipeline.compare import summarize

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = ["25", "100"]
ARMS = ("pretrained", "scratch", "tfidf")


def set_params(clone: Path, changes: dict[str, Any]) -> None:
    """Set dotted keys in the clone's params.yaml."""
    params = yaml.safe_load((clone / "params.yaml").read_text())
    for dotted, value in changes.items():
        *blocks, key = dotted.split(".")
        node = params
        for block in blocks:
            node = node[block]
        node[key] = value
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def cell(clone: Path, arm: str, budget: str) -> dict[str, Any]:
    """A comparison cell's test accuracy over seeds, summarised as the comparison's report does."""
    summary = summarize(json.loads((clone / f"reports/compare/runs/{arm}-{budget}.json").read_text()))
    accuracy = summary["test_accuracy"]
    return {"mean": round(accuracy["mean"], 4), "std": round(accuracy["std"], 4), "seeds": summary["seeds"]}


def text_size(clone: Path, fractions: list[int], steps: int) -> list[dict[str, Any]]:
    """Pre-train on 1/k of the train text for ``steps`` steps, for each k; score the arms at BUDGETS."""
    train = pd.read_parquet(clone / "data/prepared/train.parquet")
    rows = []
    for k in fractions:
        if k == 1:
            corpus = "train"
        else:
            corpus = f"corpus/bbc-train-1of{k}.jsonl"
            train["text"][: len(train) // k].to_frame().to_json(clone / corpus, orient="records", lines=True)
        set_params(clone, {"pretrain.corpus": corpus, "pretrain.max_steps": steps})
        cells = [f"compare_{arm}@{budget}" for arm in ARMS for budget in BUDGETS]
        seconds = repro(clone, cells)
        stats = json.loads((clone / "reports/prepare_corpus/stats.json").read_text())
        pretrain = json.loads((clone / "reports/pretrain/metrics.json").read_text())
        rows.append({"fraction": f"1/{k}", "corpus": corpus, "documents": stats["documents"],
                     "tokens": stats["tokens"], "decontamination_removed": stats["decontamination_removed"]["total"],
                     "pretrain_steps": pretrain["steps"], "pretrain_eval_loss": round(pretrain["eval_loss"], 4),
                     "seconds": seconds,
                     "accuracy": {arm: {b: cell(clone, arm, b) for b in BUDGETS} for arm in ARMS}})
        print(json.dumps(rows[-1]), flush=True)
    set_params(clone, {"pretrain.corpus": "train", "pretrain.max_steps": None})
    return rows


def continued(clone: Path) -> dict[str, Any]:
    """MiniLM fine-tuned directly against MiniLM pre-trained further on the train text, at BUDGETS."""
    set_params(clone, {"compare.continued": ["minilm"], "compare.minilm_budgets": [int(b) for b in BUDGETS],
                       "compare.continued_budgets": [int(b) for b in BUDGETS]})
    timings = {"minilm": repro(clone, [f"compare_minilm@{b}" for b in BUDGETS]),
               "pretrain_continued": repro(clone, ["pretrain_continued@minilm"]),
               "continued_cells": repro(clone, [f"compare_continued@minilm-{b}" for b in BUDGETS])}
    pretrain = json.loads((clone / "reports/compare/continued-minilm/metrics.json").read_text())
    settings = yaml.safe_load((clone / "params.yaml").read_text())["compare"]["continued_settings"]
    return {"settings": settings, "pretrain_steps": pretrain["steps"],
            "pretrain_eval_loss": round(pretrain["eval_loss"], 4), "seconds": timings,
            "accuracy": {arm: {b: cell(clone, arm, b) for b in BUDGETS} for arm in ("minilm", "continued-minilm")}}


def markdown(result: dict[str, Any]) -> str:
    lines = ["# What pre-training text buys on BBC News\n",
             f"{result['machine']}. Test accuracy, mean ± std over 3 seeds; `python benchmarks/pretraining_text.py`.\n"]
    if "size" in result:
        part = result["size"]
        lines += [f"## Pre-training text size ({part['steps']} pre-training steps each; "
                  f"commit {part['commit'][:10]})\n",
                  "| train text | documents | tokens | " + " | ".join(f"{arm} @{b}" for b in BUDGETS for arm in ARMS)
                  + " | minutes |", "| --- | --- | --- |" + " --- |" * (len(ARMS) * len(BUDGETS) + 1)]
        for row in part["rows"]:
            scores = [row["accuracy"][arm][b] for b in BUDGETS for arm in ARMS]
            lines.append(f"| {row['fraction']} | {row['documents']} | {row['tokens']:,} | "
                         + " | ".join(f"{s['mean']:.3f} ± {s['std']:.3f}" for s in scores)
                         + f" | {row['seconds'] / 60:.1f} |")
    if "continued" in result:
        part = result["continued"]
        lines += [f"\n## all-MiniLM-L6-v2, directly or after continued pre-training (commit {part['commit'][:10]})\n",
                  f"Continued pre-training on the train text: {part['pretrain_steps']} steps ({part['settings']}), "
                  f"validation MLM loss {part['pretrain_eval_loss']:.3f}.\n",
                  "| labels | minilm | continued-minilm | gain |", "| --- | --- | --- | --- |"]
        for b in BUDGETS:
            direct, further = part["accuracy"]["minilm"][b], part["accuracy"]["continued-minilm"][b]
            lines.append(f"| {b} | {direct['mean']:.3f} ± {direct['std']:.3f} | {further['mean']:.3f} ± "
                         f"{further['std']:.3f} | {further['mean'] - direct['mean']:+.3f} |")
        seconds = part["seconds"]
        lines.append(f"\nCost on this machine: continued pre-training {seconds['pretrain_continued'] / 60:.1f} min; "
                     f"fine-tuning MiniLM {seconds['minilm'] / 60:.1f} min and the continued one "
                     f"{seconds['continued_cells'] / 60:.1f} min for {len(BUDGETS)} budgets x 3 seeds.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="size,continued")
    parser.add_argument("--fractions", default="16,4,1", help="k: pre-train on the first 1/k of the train text")
    parser.add_argument("--steps", type=int, default=3640, help="pre-training steps (the default pipeline's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    parts = args.parts.split(",")
    clone = Path(tempfile.mkdtemp(prefix="ptft-text-")) / "ptft"
    sh(["git", "clone", "--quiet", str(ROOT), str(clone)], ROOT)
    repro(clone, ["prepare"])  # the train split the fractions are cut from
    commit = sh(["git", "rev-parse", "HEAD"], clone).strip()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "pretraining_text.json"
    # A run of one part keeps the other part's last results, each with the commit that measured it.
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    if "size" in parts:
        result["size"] = {"commit": commit, "steps": args.steps, "rows": []}
        for k in args.fractions.split(","):  # written after each row: a long run keeps what it finished
            result["size"]["rows"] += text_size(clone, [int(k)], args.steps)
            write(result, args.out)
    if "continued" in parts:
        result["continued"] = {"commit": commit, **continued(clone)}
        write(result, args.out)
    print(markdown(result))


def write(result: dict[str, Any], out: Path) -> None:
    (out / "pretraining_text.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "pretraining_text.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
