"""Stages compare_<method>@<budget>, compare_variant@<variant> and compare_objective@<objective>:
one cell of the comparison, one run per seed.

Usage: python stages/compare.py ARM BUDGET (dvc.yaml's foreach fills them in).
"""

import sys

from ptft.pipeline.artifacts import write_json
from ptft.pipeline.compare import cell_estimate, cell_path, run_cell, stage_name, summarize
from ptft.pipeline.cost import announce
from ptft.pipeline.stage import run_stage

arm, budget = sys.argv[1], sys.argv[2]
with run_stage(stage_name(arm, budget)) as run:
    announce(run.name, run.params, lambda sizes, speed: cell_estimate(arm, budget, run.params, sizes, speed))
    cell = run_cell(arm, budget, run.params, run.checkpoint_dir)
    write_json(cell_path(arm, budget), cell)
summary = summarize(cell)
if "skipped" in summary:
    print(f"compare {arm} at {budget}: skipped, {summary['skipped']}")
else:
    print(f"compare {arm} at {budget} ({summary['train_examples']} examples): test accuracy "
          f"{summary['test_accuracy']['mean']:.3f} ± {summary['test_accuracy']['std']:.3f}")
