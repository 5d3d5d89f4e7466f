"""``ptft serve`` under load: throughput and latency on loopback, PyTorch against ONNX against int8 ONNX, with and
without dynamic batching (a benchmark, not a test).

For each runtime (``--models``: the PyTorch model, its ONNX export and the int8 copy, served through ONNX Runtime)
and each mode (batched: the defaults, a 5 ms window and at most 32 texts per pass; batched with no window; unbatched:
``--no-batching``) it starts the real server on 127.0.0.1, warms it up, then for each number of concurrent clients
sends ``--requests`` requests of one text each (test-split documents of the prepared data, cycled) from that many
threads, each as soon as its previous answer came back. It reports throughput (texts per second of wall time),
the p50/p95/p99 latency of a request as its client saw it, the errors (anything but 200), and how many forward
passes the server ran (from /health). The server and the clients share the machine's cores.

It also times each runtime in-process, without HTTP: one text at a time (tokenising included), the latency a
single request pays for the model itself.

Usage:  python benchmarks/serve.py [--models pytorch=models/finetuned,onnx=models/exported,int8=...]
                                   [--requests 256] [--clients 1,8,32] [--quick] [--out benchmarks/results]
Writes serve.json and serve.md under --out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FALLBACK = ["Shares rose after the bank raised its profit forecast.", "The striker scored twice in the cup final.",
            "MPs voted on the new budget today.", "The film won three awards at the festival."]
MODES = {"batched": [], "batched, no window": ["--batch-window-ms", "0"], "unbatched": ["--no-batching"]}
MODELS = "pytorch=models/finetuned,onnx=models/exported,int8=models/exported/model.int8.onnx"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _post(url: str, text: str) -> tuple[int, float]:
    started = time.perf_counter()
    request = urllib.request.Request(url, data=json.dumps({"text": text}).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except OSError:
        status = 0  # no answer at all
    return status, time.perf_counter() - started


def _start(model: str, extra: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "ptft.cli", "serve", model, "--port", str(port), *extra],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            _get(url + "/health")
            return process, url
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def _load(url: str, texts: list[str], clients: int, requests: int) -> dict:
    before = _get(url + "/health")["batches"]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda i: _post(url + "/predict", texts[i % len(texts)]), range(requests)))
    wall = time.perf_counter() - started
    latencies = sorted(seconds * 1000 for _, seconds in answers)
    quantile = lambda q: latencies[min(len(latencies) - 1, round(q * (len(latencies) - 1)))]  # noqa: E731
    return {"clients": clients, "requests": requests, "texts_per_second": round(requests / wall, 1),
            "p50_ms": round(quantile(0.50), 1), "p95_ms": round(quantile(0.95), 1), "p99_ms": round(quantile(0.99), 1),
            "mean_ms": round(statistics.fmean(latencies), 1), "errors": sum(status != 200 for status, _ in answers),
            "forward_passes": _get(url + "/health")["batches"] - before}


def _model_latency(model: str, texts: list[str], count: int) -> dict:
    """In-process latency of one text at a time through ``model`` (tokenising included), in milliseconds."""
    from ptft.predict import load_classifier

    classifier = load_classifier(model, "cpu")
    for text in texts[:5]:  # warm-up
        classifier.predict_proba([text], 1)
    times = []
    for i in range(count):
        started = time.perf_counter()
        classifier.predict_proba([texts[i % len(texts)]], 1)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"texts": count, "p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * count)], 2)}


def _markdown(results: dict, requests: int, top: int) -> str:
    lines = [f"# ptft serve under load\n\n`python benchmarks/serve.py` on {results['machine']}, one text per "
             f"request, {requests} requests per row (server and clients on the same machine). Models: "
             + ", ".join(f"{name} `{path}`" for name, path in results["models"].items()) + ".\n",
             "| runtime | mode | clients | texts/s | p50 ms | p95 ms | p99 ms | errors | forward passes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {mode} | {r['clients']} | {r['texts_per_second']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['p99_ms']} | {r['errors']} | {r['forward_passes']} |"
              for name, modes in results["runs"].items() for mode, rows in modes.items() for r in rows]
    lines += ["", f"Dynamic batching at {top} clients, throughput against unbatched serving: "
              + ", ".join(f"{name} {x}x" for name, x in results["batching_speedup_at_max_clients"].items()) + ".", "",
              "Single-text latency, in-process (the model and its tokenizer, no HTTP) and through the endpoint "
              "(1 client, unbatched):", "", "| runtime | in-process p50 ms | in-process p95 ms | endpoint p50 ms |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {latency['p50_ms']} | {latency['p95_ms']} | "
              f"{next(r['p50_ms'] for r in results['runs'][name]['unbatched'] if r['clients'] == 1)} |"
              for name, latency in results["model_latency"].items()]
    speedup = results.get("int8_single_text_speedup")
    if speedup:
        lines += ["", f"int8 ONNX against PyTorch, single text: {speedup['in_process']}x faster in-process, "
                      f"{speedup['endpoint']}x at the endpoint."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=MODELS, help="runtime=path pairs, comma-separated (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=256, help="requests per number of clients")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--quick", action="store_true", help="16 requests at 1 and 4 clients, batched and unbatched "
                                                             "only (what the test runs)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    args = parser.parse_args()
    requests, clients = (16, [1, 4]) if args.quick else (args.requests, [int(c) for c in args.clients.split(",")])
    models = dict(pair.split("=", 1) for pair in args.models.split(","))
    test = Path("data/prepared/test.parquet")
    texts = pd.read_parquet(test)["text"].tolist() if test.is_file() else FALLBACK
    results = {"models": models, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
               "python": platform.python_version(), "texts": len(texts), "runs": {}, "model_latency": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            results["model_latency"][name] = _model_latency(model, texts, 20 if args.quick else 200)
            results["runs"][name] = {}
            for mode, extra in MODES.items():
                if args.quick and mode not in ("batched", "unbatched"):
                    continue
                process, url = _start(model, extra, Path(tmp) / f"{name}-{mode}.log")
                try:
                    _load(url, texts, 4, 16)  # warm-up: the first passes allocate
                    results["runs"][name][mode] = [_load(url, texts, c, requests) for c in clients]
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=60)
                for row in results["runs"][name][mode]:
                    print(f"{name:>7}, {mode:>18}, {row['clients']:>2} clients: {row['texts_per_second']:7.1f} "
                          f"texts/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, {row['errors']} errors, "
                          f"{row['forward_passes']} forward passes")
    top = max(clients)
    at_top = lambda rows: next(r["texts_per_second"] for r in rows if r["clients"] == top)  # noqa: E731
    results["batching_speedup_at_max_clients"] = {name: round(at_top(modes["batched"]) / at_top(modes["unbatched"]), 2)
                                                  for name, modes in results["runs"].items()}
    if {"pytorch", "int8"} <= set(models):
        endpoint = {name: next(r["p50_ms"] for r in results["runs"][name]["unbatched"] if r["clients"] == 1)
                    for name in ("pytorch", "int8")}
        results["int8_single_text_speedup"] = {
            "in_process": round(results["model_latency"]["pytorch"]["p50_ms"]
                                / results["model_latency"]["int8"]["p50_ms"], 2),
            "endpoint": round(endpoint["pytorch"] / endpoint["int8"], 2)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "serve.md").write_text(_markdown(results, requests, top))


if __name__ == "__main__":
    main()
