"""An exported classifier (``models/exported``) run with ONNX Runtime and the tokenizers library alone.

Neither torch nor transformers nor DVC is imported here, so the smallest server installs only what this module and
``ptft serve`` need (``requirements/serve.txt``). It reads a document exactly as the PyTorch model does: the same
tokenizer file, the same windows (:mod:`ptft.pipeline.windows`), the same batching and padding; tests compare the
two on long texts.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ptft.pipeline.labels import decision_threshold, is_multi_label, label_names
from ptft.pipeline.windows import NO_LENGTH, Windows, pooled_logits

ONNX_FILE = "model.onnx"  # ptft.predict names these too
INT8_FILE = "model.int8.onnx"


class TokenizerFile:
    """A saved fast tokenizer (``tokenizer.json``, ``tokenizer_config.json``) called as transformers calls one for
    what :meth:`Windows.encode` asks: special tokens added, truncation at ``max_length``, with ``stride`` and the
    overflowing windows when asked."""

    def __init__(self, model_dir: Path):
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.backend.no_padding()  # pad() pads each batch to its own longest window
        config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.model_max_length = int(config.get("model_max_length") or NO_LENGTH)
        self.padding_side, self.truncation_side = config.get("padding_side", "right"), config.get("truncation_side",
                                                                                                  "right")
        self.pad_token_id = self.backend.token_to_id(config["pad_token"]) if config.get("pad_token") else None

    def __call__(self, texts: list[str], truncation: bool = True, max_length: int | None = None, stride: int = 0,
                 return_overflowing_tokens: bool = False) -> dict[str, list]:
        length = max_length or (self.model_max_length if self.model_max_length < NO_LENGTH else None)
        if truncation and length:
            self.backend.enable_truncation(length, stride=stride, strategy="longest_first",
                                           direction=self.truncation_side)
        else:
            self.backend.no_truncation()
        rows, sources = [], []
        for i, encoding in enumerate(self.backend.encode_batch(texts, add_special_tokens=True)):
            for piece in [encoding, *(encoding.overflowing if return_overflowing_tokens else [])]:
                rows.append(piece.ids)
                sources.append(i)
        encoded: dict[str, list] = {"input_ids": rows, "attention_mask": [[1] * len(row) for row in rows]}
        if return_overflowing_tokens:
            encoded["overflow_to_sample_mapping"] = sources
        return encoded


def read_config(model_dir: Path) -> SimpleNamespace:
    """A classifier's ``config.json`` as the attributes :mod:`ptft.pipeline.labels` and :meth:`Windows.of` read
    (``id2label`` keyed by integers, as transformers loads it)."""
    config: dict[str, Any] = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    id2label = {int(key): name for key, name in config["id2label"].items()}
    return SimpleNamespace(**{**config, "id2label": id2label, "num_labels": len(id2label)})


class OnnxClassifier:
    """An exported classifier run with ONNX Runtime: the same probabilities, batching and labels as the PyTorch one."""

    def __init__(self, model_dir: Path, file: str = ONNX_FILE, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:  # ONNX Runtime's results are repeatable only for a fixed thread count, as torch's are
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(model_dir / file), options, providers=["CPUExecutionProvider"])
        self.inputs = [value.name for value in self.session.get_inputs()]
        self.tokenizer = TokenizerFile(model_dir)
        self.config = read_config(model_dir)
        self.labels = label_names(self.config)
        self.multi_label, self.threshold = is_multi_label(self.config), decision_threshold(self.config)
        self.windows = Windows.of(self.config, self.tokenizer)

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], {name: batch[name] for name in self.inputs})[0].astype(np.float32)

    def predict_proba(self, texts: list[str], batch_size: int) -> np.ndarray:
        pooled = pooled_logits(self.logits, self.tokenizer, texts, batch_size, len(self.labels), self.windows)
        if self.multi_label:
            return 1 / (1 + np.exp(-pooled))
        shifted = np.exp(pooled - pooled.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
