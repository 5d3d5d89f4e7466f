"""Stage evaluate: score the fine-tuned model on the validation split (used for every choice)."""

from pathlib import Path

from ptft.pipeline.artifacts import atomic_dir
from ptft.pipeline.data import read_split
from ptft.pipeline.evaluation import evaluate_split
from ptft.pipeline.stage import run_stage

with run_stage("evaluate") as run, atomic_dir("reports/evaluate") as out:
    metrics = evaluate_split(Path("models/finetuned"), read_split(Path("data/prepared"), "validation"), out,
                             run.params["evaluate"]["batch_size"], "validation")
print(f"validation: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")
