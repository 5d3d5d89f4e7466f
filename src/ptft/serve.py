"""``ptft serve``: an HTTP inference server (FastAPI on uvicorn) with dynamic batching.

Concurrent requests wait in a bounded queue; one worker takes what arrived within ``batch_window``
(at most ``max_batch`` texts) and runs it through the model in a single forward pass, off the event
loop. A full queue answers 503 with ``Retry-After`` at once; every bad request gets a 4xx with one clear
message and the server keeps serving. A body is read a chunk at a time and refused (413) as soon as it
passes ``max_body_bytes`` (before reading, when its ``Content-Length`` says so), or (408) when it has not
arrived within ``body_timeout``: no client makes the server hold more than the limit, or wait forever.
``/metrics`` is in Prometheus' text format. On SIGTERM uvicorn stops accepting connections, the requests
in flight finish, and the worker drains the queue before the process exits.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from ptft import serve_api
from ptft.pipeline.dvc_files import directory_md5
from ptft.predict import Classifier, load_classifier, locate, records_for


@dataclass(frozen=True)
class Limits:
    """What one request may hold, and how requests are batched."""

    max_body_bytes: int = 1_000_000
    max_text_chars: int = 100_000
    max_texts: int = 64
    max_batch: int = 32  # texts per forward pass
    batch_window: float = 0.005  # seconds the worker waits for more requests to share a pass
    max_queue: int = 1024  # requests waiting; beyond it, 503
    batching: bool = True
    body_timeout: float = 10.0  # seconds a client has to send its whole body; then 408


@dataclass
class _Job:
    texts: list[str]
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class RequestError(Exception):
    """A bad request: its HTTP status and the message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Batcher:
    """A bounded queue of jobs and the worker that runs them through ``predict`` a batch at a time."""

    def __init__(self, predict: Any, limits: Limits, metrics: Metrics | None = None):
        self.predict, self.limits, self.metrics = predict, limits, metrics
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=limits.max_queue)
        self.stats = {"requests": 0, "texts": 0, "batches": 0}
        self.worker: asyncio.Task | None = None

    def start(self) -> None:
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish every queued job, then stop the worker."""
        await self.queue.join()
        if self.worker is not None:
            self.worker.cancel()

    async def submit(self, texts: list[str]) -> list[dict[str, Any]]:
        job = _Job(texts)
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            if self.metrics is not None:
                self.metrics.busy.inc()
            raise RequestError(503, f"the server is busy ({self.limits.max_queue} requests waiting); retry "
                                    "shortly") from None
        self.stats["requests"] += 1
        self.stats["texts"] += len(texts)
        return await job.done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            if self.limits.batching:  # what queued up while the last pass ran, then what arrives within the window
                deadline = loop.time() + self.limits.batch_window
                while sum(len(j.texts) for j in jobs) < self.limits.max_batch:
                    try:
                        jobs.append(self.queue.get_nowait())
                        continue
                    except asyncio.QueueEmpty:
                        pass
                    if deadline <= loop.time():
                        break
                    try:
                        jobs.append(await asyncio.wait_for(self.queue.get(), deadline - loop.time()))
                    except asyncio.TimeoutError:  # TimeoutError from Python 3.11; not before
                        break
            taken, jobs = jobs, [job for job in jobs if not job.done.cancelled()]  # a client that went away
            texts = [text for job in jobs for text in job.texts]
            records: list[dict[str, Any]] = []
            error = None
            try:
                if texts:
                    records = await loop.run_in_executor(None, self.predict, texts)
                    self.stats["batches"] += 1
                    if self.metrics is not None:
                        self.metrics.batch_size.observe(len(texts))
            except Exception as err:  # noqa: BLE001 - the clients hear of it; the server keeps serving
                error = RequestError(500, f"prediction failed: {err}")
            start = 0
            for job in jobs:
                answer = records[start : start + len(job.texts)]
                start += len(job.texts)
                if job.done.cancelled():  # its client went away during the forward pass
                    continue
                if error is None:
                    job.done.set_result(answer)
                else:
                    job.done.set_exception(error)
            for _ in taken:
                self.queue.task_done()


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request's body, read a chunk at a time: a RequestError 413 as soon as it (or its ``Content-Length``)
    passes ``max_body_bytes``, 408 when it has not all arrived within ``body_timeout`` seconds."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise RequestError(413, f"the body is {declared} bytes; the limit is {limits.max_body_bytes}")

    async def chunks() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:  # a chunked body, or one longer than it said: stop reading
                raise RequestError(413, f"the body is over {limits.max_body_bytes} bytes; the limit is "
                                        f"{limits.max_body_bytes}")
        return bytes(body)

    try:
        return await asyncio.wait_for(chunks(), limits.body_timeout)
    except asyncio.TimeoutError:
        raise RequestError(408, f"the body did not arrive within {limits.body_timeout:g} s; send it whole, "
                                "at once") from None


def parse_request(body: bytes, limits: Limits) -> tuple[list[str], bool]:
    """The texts of a ``/predict`` body, ``{"text": "..."}`` or ``{"texts": ["...", ...]}``, and whether it held one
    text; a RequestError (4xx) naming what is wrong otherwise."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"the body is {len(body)} bytes; the limit is {limits.max_body_bytes}")
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(400, f"the body is not valid JSON ({err}); send {{\"text\": \"...\"}} or "
                                "{\"texts\": [\"...\", ...]}") from None
    if not isinstance(payload, dict) or ("text" in payload) == ("texts" in payload):
        raise RequestError(422, "send a JSON object with either \"text\" (a string) or \"texts\" (a list of strings)")
    single = "text" in payload
    texts = [payload["text"]] if single else payload["texts"]
    if not isinstance(texts, list):
        raise RequestError(422, "\"texts\" must be a list of strings")
    if not texts:
        raise RequestError(422, "\"texts\" is an empty list; send at least one text")
    if len(texts) > limits.max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request; the limit is {limits.max_texts}: split them")
    for i, text in enumerate(texts):
        where = "\"text\"" if single else f"texts[{i}]"
        if not isinstance(text, str):
            raise RequestError(422, f"{where} is a JSON {type(text).__name__}, not a string")
        if not text.strip():
            raise RequestError(422, f"{where} is empty; there is nothing to classify")
        if len(text) > limits.max_text_chars:
            raise RequestError(413, f"{where} has {len(text)} characters; the limit is {limits.max_text_chars}")
    return texts, single


def model_info(path: Path) -> dict[str, Any]:
    """What is served: the directory (and ONNX file), the runtime, the directory's lineage (artifact, stage, params,
    metrics) and the label names."""
    model_dir, onnx_file = locate(path)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    lineage_file = model_dir / "lineage.json"
    lineage = json.loads(lineage_file.read_text(encoding="utf-8")) if lineage_file.is_file() else {}
    return {"model_dir": str(model_dir), "md5": directory_md5(model_dir),
            **({"runtime": "onnxruntime", "file": onnx_file} if onnx_file else {"runtime": "pytorch"}),
            "labels": [config["id2label"][str(i)] for i in range(len(config["id2label"]))],
            "problem_type": config.get("problem_type"), "threshold": config.get("threshold"),
            **{key: lineage[key] for key in ("artifact", "stage", "params", "metrics", "init") if key in lineage}}


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (an app's, not the process's)."""

    def __init__(self, info: dict[str, Any], limits: Limits):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("ptft_requests", "HTTP requests by endpoint and status (disconnected: the client left "
                                "before an answer)", ["endpoint", "status"], registry=registry)
        self.latency = Histogram("ptft_request_duration_seconds", "Time from a request's arrival to its answer",
                                 ["endpoint"], registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        sizes = [2**i for i in range(limits.max_batch.bit_length())] + [limits.max_batch]
        self.batch_size = Histogram("ptft_batch_size", "Texts per forward pass", registry=registry,
                                    buckets=sorted(set(sizes)))
        self.queue = Gauge("ptft_queue_depth", "Requests waiting for a forward pass", registry=registry)
        self.busy = Counter("ptft_busy_rejections", "Requests answered 503 because the queue was full",
                            registry=registry)
        Info("ptft_model", "The model served", registry=registry).info(
            {key: str(info[key]) for key in ("md5", "runtime", "model_dir", "file", "stage") if info.get(key)})

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts and times every HTTP request by endpoint (an unknown path is ``other``) and status."""

    def __init__(self, app: Any, metrics: Metrics, endpoints: set[str]):
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status, started = "disconnected", time.perf_counter()

        async def answering(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, answering)
        except Exception:  # Starlette's outer handler answers it with a 500 (a client gone is CancelledError)
            status = "500" if status == "disconnected" else status
            raise
        finally:
            self.metrics.requests.labels(endpoint, status).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def create_app(model_dir: str, limits: Limits = Limits(), device: str = "auto") -> FastAPI:
    """The FastAPI application serving the classifier at ``model_dir``: a PyTorch model directory (safetensors
    only), an exported one (``model.onnx``, run by ONNX Runtime) or one of its ``.onnx`` files (``model.int8.onnx``)."""
    classifier = load_classifier(model_dir, device)  # checks the directory first (check_model_dir)
    return app_for(classifier, model_info(Path(model_dir)), limits)


def app_for(classifier: Classifier, info: dict[str, Any], limits: Limits) -> FastAPI:
    """The application serving ``classifier``, which ``/model`` describes with ``info``."""
    metrics = Metrics(info, limits)
    batcher = Batcher(lambda texts: records_for(classifier, texts, limits.max_batch), limits, metrics)
    metrics.queue.set_function(batcher.queue.qsize)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()  # uvicorn has stopped taking requests: finish the ones queued

    app = FastAPI(title="ptft", version=version("ptft"), lifespan=lifespan,
                  description="A fine-tuned ptft text classifier: POST /predict, GET /health, /model, /metrics.")
    app.add_middleware(MetricsMiddleware, metrics=metrics, endpoints={"/predict", "/health", "/model", "/metrics"})
    started = time.time()
    request_body, components = serve_api.request_body_schema()
    errors = {code: {"model": serve_api.ErrorBody, "description": text} for code, text in serve_api.ERRORS.items()}

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if err.status == 503 else None
        return JSONResponse({"error": str(err)}, status_code=err.status, headers=headers)

    @app.post("/predict", response_model=serve_api.AnyPrediction | serve_api.Predictions, responses=errors,
              openapi_extra={"requestBody": request_body})
    async def predict(request: Request) -> dict[str, Any]:
        """Classify ``{"text": ...}`` (one prediction) or ``{"texts": [...]}`` (``predictions``, in order)."""
        texts, single = parse_request(await read_body(request, limits), limits)
        records = await batcher.submit(texts)
        return records[0] if single else {"predictions": records}

    @app.get("/health", response_model=serve_api.Health)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "uptime_seconds": round(time.time() - started, 1), "queued": batcher.queue.qsize(),
                **batcher.stats}

    @app.get("/model", response_model=serve_api.ModelInfo)
    async def served_model() -> dict[str, Any]:
        return info

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                                                                     "description": "Prometheus' text format"}})
    async def prometheus_metrics() -> Response:
        return metrics.exposition()

    def openapi() -> dict[str, Any]:  # FastAPI's, with the request body's schemas (it never parses the body itself)
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serve(model_dir: str, host: str, port: int, limits: Limits, device: str = "auto") -> None:
    """Run the server until SIGTERM or Ctrl-C (uvicorn then drains the requests in flight)."""
    import uvicorn

    app = create_app(model_dir, limits, device)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=30)
