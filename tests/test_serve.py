"""``ptft serve``: request parsing (unit) and the real server on 127.0.0.1 with the smoke run's model (e2e)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
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

from ptft.serve import Batcher, Limits, RequestError, parse_request
from tests.conftest import clone_env

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``ptft serve`` in a subprocess on a free loopback port."""

    def __init__(self, model: Path, *args: str):
        self.url = f"http://127.0.0.1:{_free_port()}"
        port = self.url.rsplit(":", 1)[1]
        # The log goes to a file: a pipe nobody reads would fill up with access lines and block the server.
        self.log = tempfile.NamedTemporaryFile("w+", prefix="ptft-serve-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-m", "ptft.cli", "serve", str(model), "--port", port, *args],
                                        env=clone_env(next(p for p in model.parents if p.name == "models").parent),
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
