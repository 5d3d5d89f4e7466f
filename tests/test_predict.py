"""``ptft predict`` on the smoke run's fine-tuned model, and safe loading (never unpickle a checkpoint)."""

from __future__ import annotations

import io
import json
import pickle
import shutil

import pandas as pd
import pytest

from ptft.cli import main

TEXTS = ["Shares rose after the bank raised its profit forecast.", "The striker scored twice in the cup final.",
         "MPs voted on the new budget today.", "The film won three awards at the festival."]


@pytest.fixture(scope="module")
def model_dir(smoke_run):
    return smoke_run[0] / "models/finetuned"


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_the_readmes_three_ways_to_predict_agree(model_dir, tmp_path, capsys):
    """ptft predict on a text file, transformers.pipeline and plain PyTorch, as the README shows them."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    source = tmp_path / "texts.txt"
    source.write_bytes(("\ufeff" + "\r\n\r\n".join(TEXTS) + "\r\n").encode())  # BOM, CRLF, blank lines
    assert main(["predict", str(source), "--model", str(model_dir), "--output", str(tmp_path / "out.jsonl")]) == 0
    every = _records((tmp_path / "out.jsonl").read_text())
    assert [r["id"] for r in every] == list(range(1, 8))  # one record per line, blank lines included
    assert [r for r in every if "error" in r] == [{"id": i, "label": None, "error": "empty text"} for i in (2, 4, 6)]
    records = [r for r in every if "error" not in r]
    classify = pipeline("text-classification", model=str(model_dir))
    assert [r["label"] for r in records] == [p["label"] for p in classify(TEXTS)]
    for record in records:
        assert set(record["probabilities"]) == set(classify.model.config.label2id)
        assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert record["score"] == max(record["probabilities"].values())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        probabilities = model(**tokenizer(TEXTS, truncation=True, padding=True, return_tensors="pt")).logits.softmax(-1)
    for record, row in zip(records, probabilities.tolist(), strict=True):
        assert record["probabilities"] == pytest.approx({model.config.id2label[i]: p for i, p in enumerate(row)},
                                                        abs=1e-5)
    assert f"wrote 7 records to {tmp_path / 'out.jsonl'} (3 empty" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*.tmp"))


def test_predict_reads_a_table_column_and_stdin(model_dir, tmp_path, capsys, monkeypatch):
    pd.DataFrame({"id": range(4), "body": TEXTS}).to_csv(tmp_path / "t.csv", index=False)
    assert main(["predict", str(tmp_path / "t.csv"), "--column", "body", "--model", str(model_dir)]) == 0
    from_csv = _records(capsys.readouterr().out)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(TEXTS) + "\n"))
    assert main(["predict", "--model", str(model_dir), "--batch-size", "3"]) == 0
    from_stdin = _records(capsys.readouterr().out)
    assert [r["id"] for r in from_csv] == [0, 1, 2, 3] and [r["id"] for r in from_stdin] == [1, 2, 3, 4]
    # The same predictions; batches of 3 pad to other lengths, which moves the last digits on a CPU whose matrix
    # products depend on the shapes (oneMKL on AMD, docs/reproducibility.md).
    assert [{**r, "id": 0} for r in from_stdin] == [{**r, "id": 0, "score": pytest.approx(r["score"], abs=1e-5),
                                                     "probabilities": pytest.approx(r["probabilities"], abs=1e-5)}
                                                    for r in from_csv] and len(from_csv) == 4

    assert main(["predict", str(tmp_path / "t.csv"), "--model", str(model_dir)]) == 2
    assert "has no column 'text'; its columns are ['id', 'body']" in capsys.readouterr().err
    (tmp_path / "t.docx").write_text("x")
    assert main(["predict", str(tmp_path / "t.docx"), "--model", str(model_dir)]) == 2
    assert "unsupported extension '.docx'" in capsys.readouterr().err


class _Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_only_checkpoint_is_refused_and_never_unpickled(model_dir, tmp_path, capsys):
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, unsafe / name)
    marker = tmp_path / "payload-ran"
    (unsafe / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(str(marker))))

    assert main(["predict", "--model", str(unsafe)]) == 2
    assert "holds no .safetensors weights (only pytorch_model.bin, pickle files that ptft never loads" in \
        capsys.readouterr().err
    from ptft.pipeline.modeling import classifier  # the stages' loader (finetune.init, pretrain.init) refuses it too
    from ptft.pipeline.params import ParamsError

    with pytest.raises(ParamsError, match=r"finetune.init '.*unsafe' holds no .safetensors weights \(only pytorch_mo"):
        classifier(str(unsafe), {}, None, ["a", "b"], "mean")
    assert not marker.exists()


def test_every_input_record_gets_one_output_record_in_its_place(model_dir, tmp_path, capsys, monkeypatch):
    """The same four records as a text file, stdin and a table, with an empty one among them: four records out,
    in order, each with its id; the empty one marked, the others predicted as if alone."""
    texts = [TEXTS[0], "", f"{TEXTS[1]}\f and\u2028 more", TEXTS[2]]  # a form feed and U+2028 stay in their line
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    pd.DataFrame({"key": ["a", "b", "c", "d"], "text": texts}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"key": ["a", "b", "c", "d"], "text": [texts[0], None, texts[2], texts[3]]}).to_parquet(
        tmp_path / "t.parquet")
    outputs = {}
    for name, args in {"txt": [str(tmp_path / "t.txt")], "stdin": [],
                       "csv": [str(tmp_path / "t.csv"), "--id-column", "key"],
                       "parquet": [str(tmp_path / "t.parquet"), "--id-column", "key"]}.items():
        monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts)))  # no newline at the end: still 4 lines
        assert main(["predict", *args, "--model", str(model_dir)]) == 0
        outputs[name] = _records(capsys.readouterr().out)
    assert [r["id"] for r in outputs["txt"]] == [r["id"] for r in outputs["stdin"]] == [1, 2, 3, 4]
    assert [r["id"] for r in outputs["csv"]] == [r["id"] for r in outputs["parquet"]] == ["a", "b", "c", "d"]
    strip = lambda records: [{k: v for k, v in r.items() if k != "id"} for r in records]  # noqa: E731
    assert strip(outputs["txt"]) == strip(outputs["stdin"]) == strip(outputs["csv"]) == strip(outputs["parquet"])
    assert strip(outputs["txt"])[1] == {"label": None, "error": "empty text"}
    (tmp_path / "alone.txt").write_text(texts[2])
    assert main(["predict", str(tmp_path / "alone.txt"), "--model", str(model_dir)]) == 0
    alone = _records(capsys.readouterr().out)
    assert alone[0]["probabilities"] == pytest.approx(outputs["csv"][2]["probabilities"], abs=1e-5)
    assert main(["predict", str(tmp_path / "t.txt"), "--id-column", "key", "--model", str(model_dir)]) == 2
    assert "--id-column names a column of a table input" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "t.csv"), "--id-column", "row", "--model", str(model_dir)]) == 2
    assert "has no column 'row'; its columns are ['key', 'text']" in capsys.readouterr().err


def test_unreadable_input_and_bad_batch_size_are_clear_errors(tmp_path, capsys):
    from ptft.predict import PredictError, read_records

    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait\n".encode("cp1252"))
    with pytest.raises(PredictError, match=r"latin.txt' is not UTF-8 \(byte 3\); re-encode it"):
        read_records(str(tmp_path / "latin.txt"), "text")
    with pytest.raises(SystemExit):
        main(["predict", "--batch-size", "0"])
    assert "--batch-size: must be a positive whole number, got '0'" in capsys.readouterr().err


def test_an_output_in_a_missing_directory_is_a_clear_error_before_any_work(model_dir, tmp_path, capsys):
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "no-such-dir" / "predictions.jsonl"
    assert main(["predict", str(tmp_path / "texts.txt"), "--model", str(model_dir), "--output", str(out)]) == 2
    assert f"--output '{out}': the directory {out.parent} does not exist; create it first" in capsys.readouterr().err
    assert not out.parent.exists()


def test_the_onnx_export_predicts_as_the_pytorch_model(smoke_run, tmp_path, capsys):
    exported = smoke_run[0] / "models/exported"
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n\n")
    results = {}
    for model in (smoke_run[0] / "models/finetuned", exported, exported / "model.int8.onnx"):
        assert main(["predict", str(tmp_path / "texts.txt"), "--model", str(model)]) == 0
        results[model.name] = _records(capsys.readouterr().out)
    torch_, onnx_ = results["finetuned"], results["exported"]
    assert [r["label"] for r in onnx_] == [r["label"] for r in torch_] and onnx_[-1]["error"] == "empty text"
    for a, b in zip(onnx_[:-1], torch_[:-1], strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
    assert len(results["model.int8.onnx"]) == len(TEXTS) + 1
    assert main(["predict", str(tmp_path / "texts.txt"), "--model", str(exported), "--device", "cuda"]) == 2
    assert "is an ONNX export, which ptft runs on the CPU" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "texts.txt"), "--model", str(exported / "model.fp16.onnx")]) == 2
    assert "does not exist; `dvc repro export` writes" in capsys.readouterr().err
