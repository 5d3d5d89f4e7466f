"""``ptft estimate``: the time of every training stage of params.yaml on this checkout's prepared data, before
``dvc repro`` runs them (see :mod:`ptft.pipeline.cost` for how a stage is estimated)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ptft.pipeline.compare import cell_estimate, cells, minilm_missing
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
from ptft.pipeline.params import UserError, check_params, comparison_model_pretrain, load_params


def estimate_pipeline(params: dict[str, Any], sizes: Sizes, speed: Speed) -> dict[str, list[Estimate]]:
    """The training stages of ``dvc repro``, estimated: ``main`` (pretrain, finetune) and ``comparison`` (every
    cell that trains a model; TF-IDF cells and the report take seconds). Budgets over the train split are
    skipped, as the comparison skips them."""
    finetune, compare = params["finetune"], params["compare"]
    train = sizes.documents["train"]
    main = [pretrain_estimate("pretrain", params["pretrain"], params, sizes, speed),
            finetune_estimate("finetune", finetune, params, sizes, speed, finetune["train_examples"] or train)]
    # The comparison's own pre-trained models (a continued MiniLM without the extra is skipped, as its cells are).
    models = [("objective", name) for name in compare["objectives"]]
    models += [("continued", name) for name in compare["continued"] if not ("minilm" in name and minilm_missing())]
    comparison = [pretrain_estimate(f"pretrain_{kind}@{name}", comparison_model_pretrain(kind, name, params), params,
                                    sizes, speed) for kind, name in models]
    for arm, budget in cells(compare):
        if found := cell_estimate(arm, budget, params, sizes, speed):
            comparison.append(found)
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
