"""Stage evaluate: score the fine-tuned model on the validation split."""

from pathlib import Path

from ptft.data import read_split
from ptft.evaluation import evaluate_split
from ptft.params import load_params
from ptft.runtime import setup_runtime

params = load_params()
setup_runtime(params["seed"], params["runtime"]["threads"])
metrics = evaluate_split(Path("models/finetuned"), read_split(Path("data/prepared"), "validation"),
                         Path("reports/evaluate"), params["evaluate"]["batch_size"], "validation")
print(f"evaluate: validation accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")
