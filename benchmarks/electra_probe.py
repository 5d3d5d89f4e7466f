"""What does ELECTRA's discriminator learn at ptft's compute? Its replaced-token detection loss, step by step, against
the loss of knowing only the share of replaced tokens.

ELECTRA pre-training (``pretrain.objective: electra``) logs one loss: the generator's MLM loss plus 50 times the
discriminator's detection loss. This runs the pretrain stage's own Trainer on the default params with
``objective: electra`` (data/corpus and data/tokenizer from `dvc repro prepare_corpus`) and, through forward hooks,
records each step's parts: the generator's loss, the detection loss, and the prior loss, the binary cross-entropy
of predicting the batch's share of replaced tokens at every position. A discriminator scores below the prior only
by telling replaced tokens from their context, which is what fine-tuning would draw on.

Usage: python benchmarks/electra_probe.py [--steps 1500] [--lr 3e-3 5e-4] [--out DIR]
Writes electra_probe.json and electra_probe.md to DIR (default: benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from ptft.pipeline.blocks import TokenBlocks
from ptft.pipeline.data import read_split_dataset
from ptft.pipeline.modeling import language_model
from ptft.pipeline.params import load_params
from ptft.pipeline.runtime import setup_runtime
from ptft.pipeline.training import pretrain_trainer

RESULTS = Path("benchmarks/results")


def probe(params: dict[str, Any], lr: float, steps: int) -> list[dict[str, float]]:
    """Train ELECTRA for ``steps`` at ``lr`` (the other pretrain params as given); each logging interval's mean
    generator, detection and prior losses."""
    pretrain = {**params["pretrain"], "objective": "electra", "lr": lr, "max_steps": steps, "tokens": None,
                "evals": 1}
    setup_runtime(params["seed"], params["runtime"]["threads"])
    model, tokenizer = language_model(pretrain, params["model"], Path("data/tokenizer"))
    seen: dict[str, torch.Tensor] = {}
    parts: list[dict[str, float]] = []

    def before(_module, _args, kwargs):  # noqa: ANN001, ANN202 - a forward pre-hook
        if model.training:
            seen["original"] = torch.where(kwargs["labels"] != -100, kwargs["labels"], kwargs["input_ids"])

    def corrupted(_module, _args, kwargs):  # noqa: ANN001, ANN202
        if model.training:
            seen["replaced"] = (kwargs["input_ids"] != seen["original"]).float().flatten()

    def after(_module, _args, _kwargs, output):  # noqa: ANN001, ANN202
        if model.training:
            replaced = seen["replaced"]
            prior = F.binary_cross_entropy(replaced.mean().expand_as(replaced), replaced)
            parts.append({"generator": output["generator_loss"].item(), "detection": output["detection_loss"].item(),
                          "prior": prior.item(), "replaced_share": replaced.mean().item()})

    model.register_forward_pre_hook(before, with_kwargs=True)
    model.discriminator.register_forward_pre_hook(corrupted, with_kwargs=True)
    model.register_forward_hook(after, with_kwargs=True)
    validation = read_split_dataset(Path("data/prepared"), "validation")
    with tempfile.TemporaryDirectory() as work:
        trainer = pretrain_trainer(model, tokenizer, TokenBlocks(Path("data/corpus"), pretrain["seq_len"]),
                                   validation, pretrain, params["seed"], None, Path(work), params["runtime"],
                                   save_strategy="no", eval_strategy="no")
        trainer.train()
    interval = max(1, steps // 20)
    return [{"step": end, **{key: round(sum(p[key] for p in parts[end - interval:end]) / interval, 4)
                             for key in parts[0]}}
            for end in range(interval, len(parts) + 1, interval)]


def run(params: dict[str, Any], lr: float, steps: int) -> dict[str, Any]:
    """One :func:`probe`, with its last interval apart (what the docs quote)."""
    rows = probe(params, lr, steps)
    return {"lr": lr, "rows": rows, "final": rows[-1]}


def markdown(results: dict[str, Any]) -> str:
    first = next(iter(results["runs"].values()))["rows"]
    lines = ["# ELECTRA's discriminator at ptft's compute", "",
             f"The default model and pretrain params with `objective: electra`, {results['steps']} steps of batch "
             f"{results['batch_size']} on BBC News' train split. Each row is the mean of the {first[0]['step']} steps "
             "up to it. Detection below prior: the discriminator tells replaced "
             "tokens from their context. Written by `python benchmarks/electra_probe.py`.", ""]
    for entry in results["runs"].values():
        lines += [f"## lr {entry['lr']:g}", "",
                  "| step | generator MLM loss | detection loss | prior loss | replaced share |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['step']} | {r['generator']:.3f} | {r['detection']:.3f} | {r['prior']:.3f} | "
                  f"{r['replaced_share']:.3f} |" for r in entry["rows"]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, nargs="+", default=[3e-3, 5e-4])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    missing = [path for path in ("data/corpus", "data/tokenizer", "data/prepared") if not Path(path).exists()]
    if missing:
        sys.exit(f"electra_probe: {', '.join(missing)} missing: run `dvc repro prepare_corpus` first")
    params = load_params()
    results = {"steps": args.steps, "batch_size": params["pretrain"]["batch_size"],
               "runs": {f"lr{lr:.0e}": run(params, lr, args.steps) for lr in args.lr}}
    (args.out / "electra_probe.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "electra_probe.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
