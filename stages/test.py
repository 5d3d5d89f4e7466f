"""Stage test: score the fine-tuned model once on the held-out test split."""

from pathlib import Path

from ptft.data import read_split
from ptft.evaluation import evaluate_split
from ptft.params import load_params
from ptft.runtime import setup_runtime

params = load_params()
setup_runtime(params["seed"], params["runtime"]["threads"])
metrics = evaluate_split(Path("models/finetuned"), read_split(Path("data/prepared"), "test"),
                         Path("reports/test"), params["evaluate"]["batch_size"], "test")
print(f"test: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")
