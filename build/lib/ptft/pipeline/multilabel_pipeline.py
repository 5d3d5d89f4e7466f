"""A transformers pipeline for ptft's multi-label classifiers: the set of labels whose probability reaches the
model's decision threshold (``config.threshold``, chosen on the validation split).

finetune copies this file into every multi-label model directory and names it in ``config.custom_pipelines``,
so ``pipeline(model="models/finetuned", trust_remote_code=True)`` returns label sets wherever the directory
goes, ptft installed or not: it imports only numpy and transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from transformers import TextClassificationPipeline

TASK = "multi-label-classification"
SOURCE = Path(__file__)  # this file, which finetune copies beside the model
CUSTOM_PIPELINES = {TASK: {"impl": f"{__name__.rsplit('.', 1)[-1]}.MultiLabelClassificationPipeline",
                           "pt": ["AutoModelForSequenceClassification"], "tf": [], "type": "text"}}


class MultiLabelClassificationPipeline(TextClassificationPipeline):
    """Every label with a sigmoid probability of at least the threshold, most probable first, as
    ``[{"label": ..., "score": ...}]`` per text (an empty list when none reaches it). ``threshold=`` overrides
    the model's own."""

    def _sanitize_parameters(self, threshold: float | None = None, **kwargs: Any) -> tuple[dict, dict, dict]:
        preprocess, forward, _ = super()._sanitize_parameters(**kwargs)
        preprocess.setdefault("truncation", True)  # to the length fine-tuning used (tokenizer.model_max_length)
        return preprocess, forward, {} if threshold is None else {"threshold": threshold}

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> list:
        # The base Pipeline's call: TextClassificationPipeline wraps a single text's answer in one more list.
        return super(TextClassificationPipeline, self).__call__(inputs, **kwargs)

    def postprocess(self, model_outputs: dict, threshold: float | None = None) -> list[dict[str, Any]]:
        if threshold is None:
            threshold = getattr(self.model.config, "threshold", 0.5)
        probs = 1 / (1 + np.exp(-model_outputs["logits"][0].float().numpy()))
        order = np.argsort(-probs, kind="stable")
        return [{"label": self.model.config.id2label[int(i)], "score": float(probs[i])}
                for i in order if probs[i] >= threshold]
