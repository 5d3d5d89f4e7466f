"""The benchmarks run end to end (their numbers are measured, not tested: see the README)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import yaml

from tests.conftest import ROOT, run


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


def test_electra_probe_records_each_steps_detection_loss_beside_the_prior(smoke_run, tmp_path):
    clone = smoke_run[0]
    run([sys.executable, "benchmarks/electra_probe.py", "--steps", "4", "--lr", "3e-3", "--out", str(tmp_path)], clone)
    result = json.loads((tmp_path / "electra_probe.json").read_text())
    rows = result["runs"]["lr3e-03"]["rows"]
    assert [row["step"] for row in rows] == [1, 2, 3, 4] and result["runs"]["lr3e-03"]["final"] == rows[-1]
    for row in rows:  # the prior is the binary entropy of the replaced share (smoke masks 30%; nearly all replaced)
        share = row["replaced_share"]
        assert 0.2 < share < 0.4 and row["generator"] > 0 and row["detection"] > 0
        assert row["prior"] == pytest.approx(-share * math.log(share) - (1 - share) * math.log(1 - share), abs=2e-3)
    assert "| 4 |" in (tmp_path / "electra_probe.md").read_text()


def test_rebuild_compares_the_stages_it_ran_with_the_committed_lock(tmp_path, monkeypatch):
    """benchmarks/rebuild.py: each stage run here is identical or not to the committed lock, with the step at which a
    differing curve parts and the metrics that moved; a stage not run here is left out."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import rebuild

    def lock(md5: str) -> str:
        outs = {"data": [{"path": "data/x", "md5": "1"}],
                "train": [{"path": f"reports/train/{out}", "md5": md5} for out in ("metrics.json", "plots")],
                "other": [{"path": "data/y", "md5": "2"}]}
        return yaml.safe_dump({"schema": "2.0", "stages": {name: {"cmd": "python", "outs": out}
                                                           for name, out in outs.items()}})

    curve = tmp_path / "reports/train/plots/metrics/train/loss.tsv"
    curve.parent.mkdir(parents=True)
    curve.write_text("step\tloss\n1\t2.0\n2\t1.5\n3\t1.2\n")
    (tmp_path / "reports/train/metrics.json").write_text(json.dumps({"loss": 1.2, "steps": 3}))
    (tmp_path / "dvc.lock").write_text(lock("5"))
    for command in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "committed run"]):
        run(command, tmp_path)
    (tmp_path / "dvc.lock").write_text(lock("6"))  # the rebuild: train wrote other bytes from its second step on
    curve.write_text("step\tloss\n1\t2.0\n2\t1.25\n3\t1.1\n")
    (tmp_path / "reports/train/metrics.json").write_text(json.dumps({"loss": 1.1, "steps": 3}))
    (tmp_path / "logs").mkdir()
    for stage, started in (("train", "2026-01-01T00:02"), ("data", "2026-01-01T00:01")):  # "other" did not run
        (tmp_path / f"logs/{stage}.jsonl").write_text(json.dumps({"started": started}) + "\n")
    rows = rebuild.compare(tmp_path)
    assert [(stage, row["identical"]) for stage, row in rows.items()] == [("data", True), ("train", False)]  # as run
    train = rows["train"]
    assert train["differing"] == ["reports/train/metrics.json", "reports/train/plots"]
    assert train["curves"] == {"reports/train/plots/metrics/train/loss.tsv":
                                 {"step": 2, "committed": 1.5, "rebuilt": 1.25}}
    assert train["metrics"] == {"loss": [1.2, 1.1]}  # the steps did not move
    assert rebuild.machine_key({"model": "AMD EPYC", "vendor": "AuthenticAMD"}, "avx2") == "amd-epyc-avx2"
