"""``ptft estimate``: the time of every training stage of params.yaml on this checkout's prepared data, before
``dvc repro`` runs them (see :mod:`ptft.pipeline.cost` for how a stage is estimated)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptft.pipeline.compare import cell_estimate, minilm_missing
from ptft.pipeline.cost import (
    LONG,
    Estimate,
    Sizes,
    Speed,
    comparison_advice,
    describe_seconds,
    finetune_estimate,
    pretrain_estimate,
    speed_for,
)
from ptft.pipeline.params import UserError, check_params, comparison_pretrain, load_params


def estimate_pipeline(params: dict[str, Any], sizes: Sizes, speed: Speed) -> dict[str, list[Estimate]]:
    """The training stages of ``dvc repro``, estimated: ``main`` (pretrain, finetune) and ``comparison`` (every
    cell that trains a model; TF-IDF cells and the report take seconds). Budgets over the train split are
    skipped, as the comparison skips them."""
    pretrain, finetune, compare = params["pretrain"], params["finetune"], params["compare"]
    train = sizes.documents["train"]
    main = [pretrain_estimate("pretrain", pretrain, params, sizes, speed),
            finetune_estimate("finetune", finetune, params, sizes, speed, finetune["train_examples"] or train)]
    cells = [(arm, str(budget)) for arm in ("pretrained", "scratch") for budget in compare["budgets"]]
    cells += [("minilm", str(budget)) for budget in compare["minilm_budgets"]]
    cells += [(variant, str(compare["focus_budget"])) for variant in compare["variants"]]
    cells += [(f"objective-{name}", str(compare["focus_budget"])) for name in compare["objectives"]]
    cells += [(f"continued-{name}", str(b)) for name in compare["continued"] for b in compare["continued_budgets"]]
    comparison = [pretrain_estimate(f"pretrain_objective@{name}", comparison_pretrain(
        pretrain, compare["objective_settings"][name]), params, sizes, speed) for name in compare["objectives"]]
    comparison += [pretrain_estimate(f"pretrain_continued@{name}", comparison_pretrain(
        pretrain, {"objective": "mlm", **compare["continued_settings"]}, init=name), params, sizes, speed)
        for name in compare["continued"] if not ("minilm" in name and minilm_missing())]  # skipped, as its cells
    comparison += [found for arm, budget in cells if (found := cell_estimate(arm, budget, params, sizes, speed))]
    return {"main": main, "comparison": comparison}


def render(estimates: dict[str, list[Estimate]], speed: Speed) -> str:
    """The estimate as a user reads it, with how to run less of a long comparison."""
    rows = [e for group in estimates.values() for e in group]
    width = max(len(e.stage) for e in rows)
    lines = [f"Estimated time of each training stage ({speed.source}):"]
    lines += [f"  {e.stage:<{width}}  {describe_seconds(e.seconds):>7}  {e.work}" for e in rows]
    main, comparison = (sum(e.seconds for e in estimates[group]) for group in ("main", "comparison"))
    lines.append(f"The model (pretrain, finetune): about {describe_seconds(main)}; the comparison "
                 f"({len(estimates['comparison'])} training stages): about {describe_seconds(comparison)}.")
    if comparison > LONG:
        lines.append(comparison_advice(comparison))
    return "\n".join(lines)


def estimate(flops: float | None = None) -> str:
    """``ptft estimate``: every training stage of params.yaml, estimated on this checkout's prepared data."""
    params = load_params()
    check_params(params)
    if not Path("data/prepared").is_dir():
        raise UserError("data/prepared not found: run `dvc repro prepare_corpus` first (it prepares the labelled "
                        "data and the pre-training text, which the estimate measures)")
    speed = speed_for(params, flops)
    return render(estimate_pipeline(params, Sizes(), speed), speed)
