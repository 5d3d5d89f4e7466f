"""The two installs that can run ``ptft serve`` on the ONNX export: cold start, memory, latency and disk (a benchmark,
not a test).

- **full**: the environment that runs the pipeline (requirements/lock.txt, torch, ptft): this interpreter's;
- **serving**: requirements/serve.txt and ptft's wheel without its dependencies, in a fresh venv under ``--work``:
  no torch, transformers, DVC or pandas.

Each serves ``--model`` (default models/exported) on 127.0.0.1, and the full install also serves ``--pytorch``
(default models/finetuned: the same model through PyTorch, for comparison), ``--starts`` times: the cold start is
the time from launching ``ptft serve`` to the first answer of ``/health`` (the median of the starts); the RSS is
the server's once started and after ``--requests`` sequential single-text requests, whose median latency is
reported too.

Usage:  python benchmarks/serve_install.py [--model models/exported] [--starts 3] [--requests 200]
Writes serve_install.json and serve_install.md under --out (default: benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

import psutil
from serve import FALLBACK, _free_port, _get, _post

ROOT = Path(__file__).resolve().parents[1]


def serving_venv(work: Path) -> Path:
    """The serving install in ``work/serve-venv`` (made once): requirements/serve.txt, then ptft's wheel built from
    this checkout, without dependencies. Its python."""
    venv = work / "serve-venv"
    python = venv / "bin/python"
    if not python.exists():
        wheels = work / "wheel"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                        str(wheels), str(ROOT)], check=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "-r",
                        str(ROOT / "requirements/serve.txt")], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *map(str, wheels.glob("*.whl"))],
                       check=True)
    return python


def site_packages_mb(python: str) -> float:
    """The size of an install's site-packages, in MB."""
    where = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return round(sum(f.stat().st_size for f in Path(where).rglob("*") if f.is_file()) / 1e6, 1)


def one_start(python: str, model: str, env: dict[str, str], requests: int, log: Path) -> dict[str, float]:
    """Launch the server, time its first /health, then measure its RSS and single-text latency; stop it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen([python, "-m", "ptft.cli", "serve", model, "--port", str(port)], env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                _get(url + "/health")
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.perf_counter() - started > 300:
                    raise SystemExit(f"the server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.01)
        cold = time.perf_counter() - started
        rss = psutil.Process(process.pid).memory_info().rss
        latencies = [_post(url + "/predict", FALLBACK[i % len(FALLBACK)]) for i in range(requests)]
        assert all(status == 200 for status, _ in latencies), latencies
        return {"cold_start_s": cold, "rss_started_mb": rss / 1e6,
                "rss_after_mb": psutil.Process(process.pid).memory_info().rss / 1e6,
                "p50_ms": statistics.median(seconds for _, seconds in latencies) * 1000}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def markdown(results: dict) -> str:
    lines = [f"# `ptft serve` of the ONNX export: the full install against the serving install\n\n"
             f"`python benchmarks/serve_install.py` on {results['machine']}, Python {results['python']}: "
             f"`ptft serve MODEL`, {results['starts']} starts each (medians), {results['requests']} sequential "
             "single-text requests per start. The last row serves the same model through PyTorch.\n",
             "| install | model | torch | site-packages MB | cold start s | RSS started MB | RSS after requests MB | "
             "p50 latency ms |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in results["installs"].items():
        lines.append(f"| {name} | `{row['model']}` | {'installed' if row['torch_installed'] else 'not installed'} | "
                     f"{row['site_packages_mb']:,.0f} | {row['cold_start_s']:.2f} | {row['rss_started_mb']:.0f} | "
                     f"{row['rss_after_mb']:.0f} | {row['p50_ms']:.1f} |")
    lines.append("\nThe full install's site-packages holds the development and docs tools too (the lock's `dev` "
                 "extra); torch alone is " + f"{results['torch_mb']:,.0f} MB of it.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/exported")
    parser.add_argument("--pytorch", default="models/finetuned")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ptft-serve-install")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    serving = serving_venv(args.work)
    serving_env = {**os.environ, "PATH": f"{serving.parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": ""}
    installs = {"full": (sys.executable, os.environ.copy(), args.model),
                "serving": (str(serving), serving_env, args.model),
                "full, PyTorch": (sys.executable, os.environ.copy(), args.pytorch)}
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "python": platform.python_version(),
               "model": args.model, "pytorch": args.pytorch, "starts": args.starts, "requests": args.requests,
               "installs": {}}
    for name, (python, env, model) in installs.items():
        runs = [one_start(python, model, env, args.requests, args.work / f"{name.replace(', ', '-')}-{i}.log")
                for i in range(args.starts)]
        has_torch = subprocess.run([python, "-c", "import importlib.util as u; print(bool(u.find_spec('torch')))"],
                                   env=env, capture_output=True, text=True, check=True).stdout.strip() == "True"
        results["installs"][name] = {"model": model, "torch_installed": has_torch,
                                     "site_packages_mb": site_packages_mb(python),
                                     **{key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}}
        print(name, results["installs"][name], flush=True)
    import torch

    results["torch_mb"] = round(sum(f.stat().st_size for f in Path(torch.__file__).parent.rglob("*") if f.is_file())
                                / 1e6, 1)
    results["pytorch_cold_start_ratio"] = round(results["installs"]["full, PyTorch"]["cold_start_s"]
                                                / results["installs"]["serving"]["cold_start_s"], 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_install.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "serve_install.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
