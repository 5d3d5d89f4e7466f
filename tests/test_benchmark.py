"""The benchmarks run end to end (their numbers are measured, not tested: see the README)."""

from __future__ import annotations

import json
import sys

from tests.conftest import run


def test_benchmark_quick_run_writes_its_tables(smoke_run, tmp_path):
    clone = smoke_run[0]
    run([sys.executable, "benchmarks/throughput.py", "--quick", "--config", "configs/smoke.yaml", "--out",
         str(tmp_path)], clone)
    result = json.loads((tmp_path / "throughput.json").read_text())
    overhead = result["overhead"]
    for path in ("real", "bare", "real_dense"):
        assert overhead[path]["tokens_per_second"] > 0 and overhead[path]["peak_memory_mb"] > 0
    assert 0 < overhead["real"]["mfu"] < 1 and overhead["real"]["flops_per_token"] > 0
    assert {(row["seq_len"], row["batch_size"]) for row in result["scaling"]["rows"]} == \
        {(64, 8), (64, 32)}  # the smoke model has 64 positions
    assert set(result["padding"]) == {"32", "64"}  # smoke's finetune.max_length, and the longest the model takes
    assert "| ptft pretrain path" in (tmp_path / "throughput.md").read_text()


def test_serve_benchmark_quick_run_loads_every_runtime_batched_and_unbatched(smoke_run, tmp_path):
    clone = smoke_run[0]
    run([sys.executable, "benchmarks/serve.py", "--quick", "--out", str(tmp_path)], clone)
    result = json.loads((tmp_path / "serve.json").read_text())
    assert set(result["runs"]) == {"pytorch", "onnx", "int8"}
    for modes in result["runs"].values():
        assert set(modes) == {"batched", "unbatched"}
        for rows in modes.values():
            assert [row["clients"] for row in rows] == [1, 4]
            assert all(row["errors"] == 0 and row["texts_per_second"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0
                       for row in rows)
        assert all(row["forward_passes"] == row["requests"] for row in modes["unbatched"])  # one pass per request
    assert all(latency["p95_ms"] >= latency["p50_ms"] > 0 for latency in result["model_latency"].values())
    assert set(result["int8_single_text_speedup"]) == {"in_process", "endpoint"}
    table = (tmp_path / "serve.md").read_text()
    assert "| int8 | batched | 4 |" in table and "| pytorch | " in table and "int8 ONNX against PyTorch" in table
