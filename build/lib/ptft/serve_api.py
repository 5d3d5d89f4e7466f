"""The HTTP interface of ``ptft serve`` as pydantic models: what ``/openapi.json`` (and ``/docs``) documents.

The request body is read and checked by hand (:func:`ptft.serve.parse_request`), a bounded number of bytes at a
time and with the server's own one-line messages, so these models describe it rather than parse it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class OneText(BaseModel):
    """One text to classify: the answer is one prediction."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "Shares rose after the bank "
                                                                              "raised its profit forecast."}]})
    text: str = Field(min_length=1, description="the text (not empty)")


class ManyTexts(BaseModel):
    """Several texts to classify: the answer lists their predictions in order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"texts": ["MPs voted on the budget.",
                                                                                         "The striker scored."]}]})
    texts: list[str] = Field(min_length=1, description="the texts (at least one; at most the server's --max-texts)")


class Prediction(BaseModel):
    """A single-label model's answer for one text."""

    label: str = Field(description="the most probable label")
    score: float = Field(description="its probability")
    probabilities: dict[str, float] = Field(description="every label's probability")


class MultiLabelPrediction(BaseModel):
    """A multi-label model's answer for one text."""

    labels: dict[str, float] = Field(description="the labels at or above the model's threshold, most probable first")
    probabilities: dict[str, float] = Field(description="every label's probability")


AnyPrediction = Prediction | MultiLabelPrediction


class Predictions(BaseModel):
    """The answer to ``{"texts": [...]}``."""

    predictions: list[AnyPrediction]


class ErrorBody(BaseModel):
    """Every 4xx and 5xx: one line saying what is wrong and what to do."""

    error: str


class Health(BaseModel):
    """Liveness, and what the server has done since it started."""

    status: str = Field(description="ok")
    uptime_seconds: float
    queued: int = Field(description="requests waiting for a forward pass")
    requests: int = Field(description="requests accepted for prediction")
    texts: int = Field(description="texts in them")
    batches: int = Field(description="forward passes run")


class ModelInfo(BaseModel):
    """What is served: where it is, its md5 (as DVC records it), the runtime, the labels and its lineage."""

    model_config = ConfigDict(extra="allow")  # the lineage's artifact, stage, params, metrics and init
    model_dir: str
    md5: str
    runtime: str = Field(description="pytorch or onnxruntime")
    file: str | None = Field(None, description="the ONNX file run (onnxruntime)")
    labels: list[str]
    problem_type: str | None
    threshold: float | None


REQUEST = TypeAdapter(OneText | ManyTexts)
ERRORS = {400: "the body is not JSON", 408: "the body did not arrive in time", 413: "the body, a text or the "
          "number of texts is over its limit", 422: "the JSON is not a request", 500: "the model failed",
          503: "the queue is full: retry after the Retry-After seconds"}


def request_body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``/predict`` request body for OpenAPI's ``requestBody``, and the component schemas it refers to."""
    schema = REQUEST.json_schema(ref_template="#/components/schemas/{model}")
    components = schema.pop("$defs")
    return {"required": True, "content": {"application/json": {"schema": schema}}}, components
