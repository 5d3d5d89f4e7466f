"""Stage export: the fine-tuned classifier as ONNX and int8 ONNX, checked against PyTorch on the validation split."""

from pathlib import Path

from ptft.pipeline.artifacts import atomic_dir, write_json, write_text
from ptft.pipeline.cards import model_card
from ptft.pipeline.data import read_split
from ptft.pipeline.export import INT8_FILE, ONNX_FILE, export_classifier
from ptft.pipeline.stage import run_stage

USAGE = f"""
import onnxruntime as ort
from transformers import AutoConfig, AutoTokenizer

tokenizer, config = AutoTokenizer.from_pretrained("models/exported"), AutoConfig.from_pretrained("models/exported")
session = ort.InferenceSession("models/exported/{ONNX_FILE}")  # or {INT8_FILE}
batch = tokenizer(["Shares rose after the bank raised its forecast."], truncation=True, return_tensors="np")
logits = session.run(["logits"], {{"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}})[0]
print(config.id2label[int(logits.argmax(-1)[0])])
# or serve it: ptft serve models/exported (int8: ptft serve models/exported/{INT8_FILE})
"""

with run_stage("export") as run, run.output_dir("models/exported") as out, atomic_dir("reports/export") as reports:
    metrics = export_classifier(Path("models/finetuned"), out, read_split(Path("data/prepared"), "validation"),
                                run.params["export"], run.params["evaluate"]["batch_size"], run.threads)
    write_json(reports / "metrics.json", metrics)
    lineage = run.write_lineage(out, "models/exported", metrics)
    write_text(out / "README.md", model_card(
        "ptft text classifier, ONNX", "The fine-tuned classifier of `models/finetuned` exported to ONNX with "
        "torch.onnx, and a dynamically quantised int8 copy, both checked against the PyTorch model on the validation "
        "split (the metrics below).", "text-classification", USAGE, lineage, library_name="onnx"))
onnx, int8 = metrics["onnx"], metrics.get("int8")
print(f"export: ONNX {onnx['size_mb']} MB, same prediction on {onnx['same_prediction']:.1%} of validation, largest "
      f"probability difference {onnx['max_probability_diff']:.2g}"
      + (f"; int8 {int8['size_mb']} MB, accuracy change {int8['accuracy_change_points']:+.2f} points" if int8 else ""))
