"""The corpus scale benchmark runs end to end (its numbers are measured, not tested: see benchmarks/results)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.e2e
def test_corpus_benchmark_quick_run_measures_both_sizes_and_removes_what_it_planted(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/corpus.py", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads((tmp_path / "corpus.json").read_text())
    sizes = report["sizes"]
    assert [round(row["mb"]) for row in sizes] == [2, 8]
    for row in sizes:
        assert row["mb_per_s"] > 0 and row["peak_rss_mb"] > 0 and row["tokens"] > 0
        planted, removed = row["planted"], row["removed"]
        assert min(planted.values()) > 0  # each path had work to do
        assert removed["duplicates"] == planted["duplicates"]
        assert removed["copy"] == planted["copy"] and removed["shared_ngram"] == planted["shared_ngram"]
        assert removed["near_copy"] == 0 and removed["empty"] == 0
        assert row["documents_kept"] == row["documents"] - sum(planted.values())
    assert set(report["goals"]) >= {"rss_met", "linear_met", "speed_met"}
    assert "| text MB |" in (tmp_path / "corpus.md").read_text()
