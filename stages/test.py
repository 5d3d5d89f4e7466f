"""Stage test: score the fine-tuned model once on the held-out test split (never used for a choice)."""

from pathlib import Path

from ptft.pipeline.artifacts import atomic_dir
from ptft.pipeline.data import read_split
from ptft.pipeline.evaluation import evaluate_split
from ptft.pipeline.stage import run_stage

with run_stage("test") as run, atomic_dir("reports/test") as out:
    metrics = evaluate_split(Path("models/finetuned"), read_split(Path("data/prepared"), "test"), out,
                             run.params["evaluate"]["batch_size"], "test")
print(f"test: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")
