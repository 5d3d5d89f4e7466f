"""``ptft serve``: request parsing (unit) and the real server on 127.0.0.1 with the smoke run's model (e2e)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ptft.serve import Batcher, Limits, RequestError, app_for, parse_request
from tests.conftest import clone_env, run

TEXTS = ["Shares rose after the bank raised its profit forecast.", "The striker scored twice in the cup final.",
         "MPs voted on the new budget today.", "The film won three awards at the festival."]
SMALL = Limits(max_body_bytes=2000, max_text_chars=300, max_texts=4)


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "the body is not valid JSON"),
    (b'["a"]', 422, "either \"text\" (a string) or \"texts\""),
    (b'{"text": "a", "texts": ["b"]}', 422, "either \"text\""),
    (b'{"txt": "a"}', 422, "either \"text\""),
    (b'{"text": 3}', 422, "\"text\" is a JSON int, not a string"),
    (b'{"texts": "a"}', 422, "\"texts\" must be a list of strings"),
    (b'{"texts": []}', 422, "\"texts\" is an empty list"),
    (b'{"texts": ["a", null]}', 422, "texts[1] is a JSON NoneType, not a string"),
    (b'{"texts": ["a", "  "]}', 422, "texts[1] is empty"),
    (b'{"texts": ["a", "b", "c", "d", "e"]}', 413, "5 texts in one request; the limit is 4"),
    (json.dumps({"text": "x" * 301}).encode(), 413, "\"text\" has 301 characters; the limit is 300"),
    (json.dumps({"texts": ["x" * 290] * 4}).encode() + b" " * 900, 413, "the limit is 2000"),
])
def test_every_bad_request_gets_a_4xx_naming_what_is_wrong(body, status, message):
    with pytest.raises(RequestError) as err:
        parse_request(body, SMALL)
    assert err.value.status == status and message in str(err.value)


def test_a_client_that_goes_away_does_not_stop_the_worker():
    """A request cancelled while it waits (its client disconnected) is taken with one that stays: the worker
    answers the one that stays, spends no forward pass on the cancelled text, and keeps serving."""
    predicted: list[str] = []

    def predict(texts: list[str]) -> list[dict]:
        predicted.extend(texts)
        return [{"label": text} for text in texts]

    async def scenario() -> list[dict]:
        batcher = Batcher(predict, Limits(batch_window=0.05))
        batcher.start()
        gone = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.01)  # queued, and taken by the worker, which waits for more
        gone.cancel()
        answers = [await asyncio.wait_for(batcher.submit([text]), 5) for text in ("b", "c")]
        await batcher.stop()
        return answers

    assert asyncio.run(scenario()) == [[{"label": "b"}], [{"label": "c"}]]
    assert predicted == ["b", "c"]


def test_a_good_request_gives_its_texts():
    assert parse_request(b'{"text": "a"}', SMALL) == (["a"], True)
    assert parse_request(b'{"texts": ["a", "b"]}', SMALL) == (["a", "b"], False)


class FakeClassifier:
    """Two labels; a text's probability of ``pos`` grows with its length."""

    labels, multi_label, threshold = ["neg", "pos"], False, 0.5

    def predict_proba(self, texts: list[str], batch_size: int):
        import numpy as np

        pos = np.array([min(len(text), 99) / 100 for text in texts])
        return np.stack([1 - pos, pos], axis=1)


FAKE_INFO = {"model_dir": "models/fake", "md5": "0123abcd.dir", "runtime": "onnxruntime", "file": "model.onnx",
             "labels": ["neg", "pos"], "problem_type": None, "threshold": None, "stage": "export"}


@pytest.fixture
def client():
    from fastapi.testclient import TestClient

    with TestClient(app_for(FakeClassifier(), FAKE_INFO, Limits(max_body_bytes=2000, body_timeout=0.5))) as test:
        yield test


def _samples(exposition: str, name: str) -> dict[str, float]:
    """The samples of one metric family in Prometheus' text format, by their label set."""
    from prometheus_client.parser import text_string_to_metric_families

    family = next(f for f in text_string_to_metric_families(exposition) if f.name == name)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


def test_metrics_count_known_traffic_in_prometheus_format(client):
    for body in [{"text": "short"}, {"texts": ["a" * 10, "b" * 80]}, {"text": "x" * 30}]:
        assert client.post("/predict", json=body).status_code == 200
    assert client.post("/predict", content=b"{oops").status_code == 400
    assert client.post("/predict", content=b" " * 3000).status_code == 413
    client.get("/health")
    client.get("/nowhere")
    response = client.get("/metrics")
    from prometheus_client import CONTENT_TYPE_LATEST

    assert response.status_code == 200 and response.headers["content-type"] == CONTENT_TYPE_LATEST
    requests = _samples(response.text, "ptft_requests")
    assert requests == {("ptft_requests_total", (("endpoint", "/predict"), ("status", "200"))): 3,
                        ("ptft_requests_total", (("endpoint", "/predict"), ("status", "400"))): 1,
                        ("ptft_requests_total", (("endpoint", "/predict"), ("status", "413"))): 1,
                        ("ptft_requests_total", (("endpoint", "/health"), ("status", "200"))): 1,
                        ("ptft_requests_total", (("endpoint", "other"), ("status", "404"))): 1}
    latency = _samples(response.text, "ptft_request_duration_seconds")
    assert latency[("ptft_request_duration_seconds_count", (("endpoint", "/predict"),))] == 5
    batches = _samples(response.text, "ptft_batch_size")
    assert batches[("ptft_batch_size_count", ())] == 3 and batches[("ptft_batch_size_sum", ())] == 4
    assert batches[("ptft_batch_size_bucket", (("le", "1.0"),))] == 2  # two one-text passes, one of two texts
    assert _samples(response.text, "ptft_queue_depth") == {("ptft_queue_depth", ()): 0}
    assert _samples(response.text, "ptft_busy_rejections") == {("ptft_busy_rejections_total", ()): 0}
    info = _samples(response.text, "ptft_model_info")
    assert list(info) == [("ptft_model_info", (("file", "model.onnx"), ("md5", "0123abcd.dir"),
                                                ("model_dir", "models/fake"), ("runtime", "onnxruntime"),
                                                ("stage", "export")))]


def test_openapi_documents_the_request_and_the_answers(client):
    from ptft.serve_api import ManyTexts, OneText

    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"anyOf": [{"$ref": "#/components/schemas/OneText"}, {"$ref": "#/components/schemas/ManyTexts"}]}
    components = schema["components"]["schemas"]
    assert components["OneText"]["required"] == ["text"] and components["ManyTexts"]["required"] == ["texts"]
    answer = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in answer["anyOf"]} == {"Prediction", "MultiLabelPrediction",
                                                                         "Predictions"}
    assert {"400", "408", "413", "422", "503"} <= set(predict["responses"])
    assert predict["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    for path, model in [("/health", "Health"), ("/model", "ModelInfo")]:
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].endswith(f"/{model}")
    from prometheus_client import CONTENT_TYPE_LATEST

    assert CONTENT_TYPE_LATEST in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    # The examples the schema gives are requests the server answers.
    for model in (OneText, ManyTexts):
        example = model.model_config["json_schema_extra"]["examples"][0]
        assert client.post("/predict", json=example).status_code == 200
    served = client.post("/predict", json={"texts": ["ab", "c" * 70]}).json()
    assert [p["label"] for p in served["predictions"]] == ["neg", "pos"]
    assert client.get("/model").json() == FAKE_INFO


def test_a_body_over_the_limit_is_refused_before_or_as_it_is_read(client):
    declared = client.post("/predict", content=b"{}", headers={"content-length": "500000000"})
    assert declared.status_code == 413 and "500000000 bytes; the limit is 2000" in declared.json()["error"]

    def chunks():  # no Content-Length: a chunked body
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 100

    chunked = client.post("/predict", content=chunks())
    assert chunked.status_code == 413 and "over 2000 bytes; the limit is 2000" in chunked.json()["error"]
    assert client.post("/predict", json={"text": "still serving"}).status_code == 200


def test_a_body_that_does_not_arrive_in_time_gets_408():
    async def scenario() -> tuple[int, dict]:
        app = app_for(FakeClassifier(), FAKE_INFO, Limits(body_timeout=0.2))
        sent: list[dict] = []

        async def receive() -> dict:
            if not sent:
                sent.append({})
                return {"type": "http.request", "body": b'{"text": ', "more_body": True}
            await asyncio.sleep(10)  # the rest never comes
            return {"type": "http.disconnect"}

        answer: list[dict] = []

        async def send(message: dict) -> None:
            answer.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [], "query_string": b"",
                 "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8000), "root_path": "",
                 "client": ("127.0.0.1", 5000)}
        await asyncio.wait_for(app(scope, receive, send), 5)
        return answer[0]["status"], json.loads(answer[1]["body"])

    status, body = asyncio.run(scenario())
    assert status == 408 and "did not arrive within 0.2 s" in body["error"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``ptft serve`` in a subprocess on a free loopback port."""

    def __init__(self, model: Path, *args: str, python: str = sys.executable, env: dict[str, str] | None = None):
        """``python``: the interpreter (and its install) to serve with; ``env``: its environment (default: the
        model's clone's, whose own ``src`` it runs)."""
        self.url = f"http://127.0.0.1:{_free_port()}"
        port = self.url.rsplit(":", 1)[1]
        # The log goes to a file: a pipe nobody reads would fill up with access lines and block the server.
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ptft-serve-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            [python, "-m", "ptft.cli", "serve", str(model), "--port", port, *args],
            env=env or clone_env(next(p for p in model.parents if p.name == "models").parent),
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            try:
                self.get("/health")
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.process.poll() is None, Path(self.log.name).read_text()
                assert time.time() < deadline, "the server did not start in 2 minutes"
                time.sleep(0.2)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)

    def post(self, body: bytes | dict) -> tuple[int, dict, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/predict", data=data, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response), dict(response.headers)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err), dict(err.headers)

    def stop(self) -> str:
        """SIGTERM, then the server's log: uvicorn shuts down gracefully, then re-raises the signal, as a process
        stopped by SIGTERM should (exit status -15)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == -signal.SIGTERM
        return Path(self.log.name).read_text()


@pytest.fixture(scope="module")
def model_dir(smoke_run) -> Path:
    return smoke_run[0] / "models/finetuned"


@pytest.fixture(scope="module")
def server(model_dir):
    running = Server(model_dir, "--max-texts", "4", "--max-text-chars", "300", "--max-body-bytes", "2000")
    yield running
    running.stop()


def test_predict_answers_as_ptft_predict_does(server, model_dir, tmp_path):
    from ptft.predict import write_predictions

    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    write_predictions(str(model_dir), str(tmp_path / "texts.txt"), str(tmp_path / "out.jsonl"), "text", 64, "cpu")
    expected = [{k: v for k, v in json.loads(line).items() if k != "id"}
                for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    status, answer, _ = server.post({"texts": TEXTS})
    assert status == 200 and len(answer["predictions"]) == len(expected)
    status, single, _ = server.post({"text": TEXTS[1]})
    assert status == 200
    for served, predicted in zip([*answer["predictions"], single], [*expected, expected[1]], strict=True):
        assert served["label"] == predicted["label"]
        assert served["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-5)


def test_the_int8_export_is_served_through_onnx_runtime_as_ptft_predict_labels_it(smoke_run, tmp_path):
    from ptft.predict import write_predictions

    int8 = smoke_run[0] / "models/exported/model.int8.onnx"
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    write_predictions(str(int8), str(tmp_path / "texts.txt"), str(tmp_path / "out.jsonl"), "text", 64, "auto")
    expected = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    server = Server(int8)
    try:
        info = server.get("/model")
        assert info["runtime"] == "onnxruntime" and info["file"] == "model.int8.onnx" and info["stage"] == "export"
        assert info["model_dir"] == str(int8.parent) and "onnx" in info["metrics"]
        status, answer, _ = server.post({"texts": TEXTS})
        assert status == 200
        for served, predicted in zip(answer["predictions"], expected, strict=True):
            assert served["label"] == predicted["label"]
            assert served["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-5)
        assert server.post(b"{oops")[0] == 400 and server.post({"text": TEXTS[0]})[0] == 200
    finally:
        server.stop()


def test_health_and_model_say_what_is_served(server, model_dir):
    assert server.get("/health")["status"] == "ok"
    info = server.get("/model")
    from ptft.pipeline.lineage import md5_path

    assert info["md5"] == md5_path(model_dir) and info["stage"] == "finetune" and info["runtime"] == "pytorch"
    assert info["params"]["finetune"]["init"] == "pretrained" and "validation_macro_f1" in info["metrics"]
    assert info["labels"] == sorted(info["labels"]) and len(info["labels"]) == 5


def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(server):
    for body, status in [(b"{oops", 400), ({"text": 3}, 422), ({"texts": []}, 422), ({"texts": ["a"] * 5}, 413),
                         ({"text": "x" * 301}, 413), (json.dumps({"text": "a" * 250}).encode() + b" " * 2000, 413)]:
        code, answer, _ = server.post(body)
        assert code == status and answer["error"], (body, answer)
        assert server.post({"text": TEXTS[0]})[0] == 200


def _concurrently(server: Server, n: int) -> list[tuple[int, dict, dict]]:
    start = threading.Barrier(n)

    def call(i: int) -> tuple[int, dict, dict]:
        start.wait()
        return server.post({"text": TEXTS[i % len(TEXTS)]})

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def test_concurrent_requests_share_forward_passes(server):
    before = server.get("/health")
    answers = _concurrently(server, 32)
    after = server.get("/health")
    assert [status for status, _, _ in answers] == [200] * 32
    assert [answer["label"] for _, answer, _ in answers[:4]] == [answer["label"] for _, answer, _ in answers[4:8]]
    assert after["requests"] - before["requests"] == 32 and after["batches"] - before["batches"] < 32


def test_a_full_queue_answers_503_with_retry_after(model_dir):
    server = Server(model_dir, "--max-queue", "1", "--no-batching")
    try:
        answers = _concurrently(server, 64)
        busy = [(answer, headers) for status, answer, headers in answers if status == 503]
        assert busy and all(headers["retry-after"] == "1" and "busy" in answer["error"] for answer, headers in busy)
        assert {status for status, _, _ in answers} == {200, 503}
        assert server.post({"text": TEXTS[0]})[0] == 200
        metrics = urllib.request.urlopen(server.url + "/metrics", timeout=30).read().decode()
        assert f"ptft_busy_rejections_total {float(len(busy))}" in metrics
        assert f'ptft_requests_total{{endpoint="/predict",status="503"}} {float(len(busy))}' in metrics
    finally:
        server.stop()


def test_sigterm_lets_the_requests_in_flight_finish(model_dir):
    server = Server(model_dir, "--batch-window-ms", "500")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        calls = [pool.submit(server.post, {"text": text}) for text in TEXTS * 2]
        while server.get("/health")["requests"] < len(calls):  # all of them received, waiting for the window
            time.sleep(0.01)
        log = server.stop()
        assert [call.result()[0] for call in calls] == [200] * len(calls)
        assert "Application shutdown complete" in log


def test_a_port_out_of_range_is_refused_before_the_model_loads(capsys):
    from ptft.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--port", "70000"])
    assert "--port: must be a port number from 1 to 65535, got '70000'" in capsys.readouterr().err


def _raw(server: Server, head: str) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(head.encode())
    return connection


def _status(connection: socket.socket) -> int:
    """The status of the answer on a raw connection (its first line)."""
    answer = b""
    while b"\r\n" not in answer:
        chunk = connection.recv(4096)
        assert chunk, f"the connection closed without an answer: {answer!r}"
        answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_a_huge_body_is_cut_off_as_it_arrives_and_memory_stays_flat(server):
    """300 MB streamed (chunked, so the server cannot know its size) gets a 413 as soon as it passes the limit,
    and so does a declared 500 MB body before any of it is read: the server's memory does not grow with them."""
    import select

    import psutil

    process = psutil.Process(server.process.pid)
    server.post({"text": TEXTS[0]})  # warm: the first request's allocations are not the body's
    idle = process.memory_info().rss
    connection = _raw(server, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
    sent = 0
    connection.setblocking(False)
    while sent < 300 << 20:
        readable, writable, _ = select.select([connection], [connection], [], 10)
        if readable or not writable:  # answered, or no longer read
            break
        try:
            sent += connection.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
    connection.settimeout(60)
    if sent >= 300 << 20:  # all of it was read: end the body, for a server that answers only then
        connection.sendall(b"0\r\n\r\n")
    assert _status(connection) == 413
    connection.close()
    assert sent < 300 << 20  # cut off, not read to the end
    declared = _raw(server, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500000000\r\n\r\n{")
    assert _status(declared) == 413
    declared.close()
    assert process.memory_info().rss - idle < 8 << 20
    assert server.post({"text": TEXTS[0]})[0] == 200


def test_slow_bodies_time_out_while_other_requests_are_answered(model_dir):
    import select

    server = Server(model_dir, "--body-timeout-s", "5")
    try:
        slow = [_raw(server, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"text\": ")
                for _ in range(50)]  # and the rest never comes
        assert [server.post({"text": text})[0] for text in TEXTS] == [200] * len(TEXTS)
        assert select.select(slow, [], [], 0)[0] == []  # answered while the slow ones still wait for their bodies
        assert [_status(connection) for connection in slow] == [408] * len(slow)
        metrics = urllib.request.urlopen(server.url + "/metrics", timeout=30).read().decode()
        assert 'ptft_requests_total{endpoint="/predict",status="408"} 50.0' in metrics
    finally:
        server.stop()


def test_the_serving_install_serves_the_export_without_torch(smoke_run, tmp_path):
    """The serving install (requirements/serve.txt, then ptft's wheel without its dependencies) has none of torch,
    transformers, DVC or pandas, and serves models/exported with the predictions of the full install: the same
    ONNX Runtime answers, and PyTorch's labels."""
    from ptft.predict import write_predictions
    from ptft.serve import directory_md5

    clone = smoke_run[0]
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(clone)], clone)
    venv = tmp_path / "serve-venv"
    run([sys.executable, "-m", "venv", str(venv)], clone)
    python = str(venv / "bin/python")
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": ""}
    # Without the clone's src on the path: pip would take the ptft there (its egg-info) as installed already.
    run([python, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(clone / "requirements/serve.txt")],
        clone, env)
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", *map(str, tmp_path.glob("ptft-*.whl"))], clone, env)
    absent = subprocess.run([python, "-c", "import importlib.util as u; print([m for m in ('torch', 'transformers', "
                             "'dvc', 'pandas', 'datasets', 'onnx') if u.find_spec(m)])"],
                            env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert absent == "[]"
    refused = subprocess.run([python, "-m", "ptft.cli", "serve", str(clone / "models/finetuned")], env=env,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "a PyTorch model, which needs the full install (torch is missing" in \
        refused.stderr
    long = " ".join(TEXTS * 40)  # several windows
    texts = [*TEXTS, long]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    expected = {}
    for name, model in [("onnx", clone / "models/exported"), ("pytorch", clone / "models/finetuned")]:
        write_predictions(str(model), str(tmp_path / "texts.txt"), str(tmp_path / f"{name}.jsonl"), "text", 64, "cpu")
        expected[name] = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    server = Server(clone / "models/exported", python=python, env=env)
    try:
        info = server.get("/model")
        assert info["runtime"] == "onnxruntime" and info["md5"] == directory_md5(clone / "models/exported")
        status, answer, _ = server.post({"texts": texts})
        assert status == 200
        for served, onnx, pytorch in zip(answer["predictions"], expected["onnx"], expected["pytorch"], strict=True):
            assert served["label"] == onnx["label"] == pytorch["label"]
            assert served["probabilities"] == pytest.approx(onnx["probabilities"], abs=1e-6)
            assert served["probabilities"] == pytest.approx(pytorch["probabilities"], abs=1e-4)
        assert "ptft_model_info" in urllib.request.urlopen(server.url + "/metrics", timeout=30).read().decode()
    finally:
        server.stop()


def test_a_failing_endpoint_is_counted_as_the_500_it_answers():
    from fastapi.testclient import TestClient

    app = app_for(FakeClassifier(), FAKE_INFO, Limits())

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("made to fail")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/broken").status_code == 500
        requests = _samples(client.get("/metrics").text, "ptft_requests")
    assert requests[("ptft_requests_total", (("endpoint", "other"), ("status", "500")))] == 1
