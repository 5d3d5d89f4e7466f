"""End-to-end: pre-training on an external corpus of shards (corpus/news), through `dvc repro`.

The corpus holds random-word documents (which share no 13-word sequence with anything) in three formats
and shards, plus copies of validation and test documents planted in four ways. It is read, cleaned,
decontaminated, tokenised and pre-trained on with a step budget; on 2 processes; killed and resumed.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ptft.pipeline.lineage import md5_path
from tests.conftest import assert_resumed_like_unbroken, clone_env, copy_clone, dvc, repro_until_checkpoint
from tests.test_distributed import LAUNCH, TRAIN_LOSS_TOLERANCE, _assert_same_curve, _curve

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "po", "ra", "si", "tu", "ve", "zo") for b in "nmrst"]
# A budget of steps, not epochs: more than one pass over the small corpus, and several checkpoints to resume from.
EXTERNAL = {"pretrain": {"corpus": "corpus/news", "max_steps": 40}}
MAIN_CHAIN = ["prepare", "prepare_corpus", "pretrain", "finetune", "evaluate", "test"]


def _random_text(rng: np.random.Generator, words: int) -> str:
    return " ".join(" ".join(rng.choice(WORDS, 10)).capitalize() + "." for _ in range(words // 10))


def write_news_corpus(clone: Path) -> dict[str, int]:
    """corpus/news in the clone: 3 shards (jsonl.gz, txt, parquet), 300 clean documents, 1 repeat and copies of
    held-out documents; returns what prepare_corpus must remove, by reason."""
    rng = np.random.default_rng(7)
    held = [t for s in ("validation", "test") for t in pd.read_parquet(clone / f"data/prepared/{s}.parquet")["text"]]
    clean = [_random_text(rng, int(rng.integers(40, 200))) for _ in range(300)]
    words = held[2].split()
    planted = {
        "copy": [held[0], "\n".join(held[1].split(". "))],  # verbatim, and re-wrapped
        "near_copy": [" ".join(words[:40] + ["an", "inserted", "sentence", "here."] + words[40:])],
        # embedded in a document several times longer
        "shared_ngram": [f"{_random_text(rng, 2000)} {held[3]} {_random_text(rng, 2000)}"],
    }
    root = clone / "corpus/news"
    root.mkdir(parents=True)
    lines = "".join(json.dumps({"text": text}) + "\n" for text in clean[:100] + planted["copy"])
    (root / "part-0.jsonl.gz").write_bytes(gzip.compress(lines.encode(), mtime=0))  # the same bytes in every clone
    (root / "part-1.txt").write_text("\n\n".join(clean[100:200] + planted["near_copy"] + [clean[0]]) + "\n")
    pq.write_table(pa.table({"text": clean[200:] + planted["shared_ngram"]}), root / "part-2.parquet")
    return {reason: len(docs) for reason, docs in planted.items()}


def _external_clone(smoke_run, to: Path, override: dict | None = None) -> tuple[Path, dict[str, int]]:
    clone = copy_clone(smoke_run[0], to, EXTERNAL)
    if override:
        params = yaml.safe_load((clone / "params.yaml").read_text())
        for block, values in override.items():
            params[block].update(values)
        (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return clone, write_news_corpus(clone)


@pytest.fixture(scope="module")
def external(smoke_run, tmp_path_factory) -> dict:
    clone, planted = _external_clone(smoke_run, tmp_path_factory.mktemp("external") / "ptft")
    output = dvc("repro", "evaluate", "test", cwd=clone).stdout
    stale = set(json.loads(dvc("status", "--json", cwd=clone).stdout))
    return {"clone": clone, "planted": planted, "output": output, "stale": stale}


def test_an_external_corpus_reruns_the_corpus_stage_and_everything_downstream(external):
    output, stale = external["output"], external["stale"]
    assert [s for s in MAIN_CHAIN if f"Running stage '{s}'" in output] == MAIN_CHAIN[1:]  # not prepare
    # The comparison's cells read the new text, tokenizer or pre-trained model: stale until they rerun.
    assert {"compare_pretrained@25", "compare_scratch@25", "compare_tfidf@25", "compare_variant@linear-probe",
            "pretrain_objective@clm"} <= stale


def test_the_planted_copies_are_removed_and_counted(external):
    clone = external["clone"]
    stats = json.loads((clone / "reports/prepare_corpus/stats.json").read_text())
    assert stats["decontamination_removed"] == {**external["planted"], "total": sum(external["planted"].values())}
    assert stats["duplicates_removed"] == 1 and stats["documents"] == 300
    assert stats["small_text"] and len(stats["warnings"]) == 1  # a toy corpus: too small to pay off
    assert stats["warnings"][0].startswith(f"the pre-training text is small: {stats['tokens']:,} tokens")
    assert stats["documents_read"] == 300 + 1 + sum(external["planted"].values())
    assert "decontamination_removed" in dvc("metrics", "show", cwd=clone).stdout  # a DVC metric


def test_lineage_records_the_corpus_files_and_pretrain_its_budget(external):
    clone = external["clone"]
    lineage = json.loads((clone / "data/corpus/lineage.json").read_text())
    files = lineage["corpus"][0]["files"]
    assert sorted(files) == ["corpus/news/part-0.jsonl.gz", "corpus/news/part-1.txt", "corpus/news/part-2.parquet"]
    assert files["corpus/news/part-1.txt"] == md5_path(clone / "corpus/news/part-1.txt")
    pretrained = json.loads((clone / "models/pretrained/lineage.json").read_text())
    assert pretrained["deps"]["data/corpus"] == md5_path(clone / "data/corpus")
    metrics = json.loads((clone / "reports/pretrain/metrics.json").read_text())
    meta = json.loads((clone / "data/corpus/meta.json").read_text())
    seq_len = pretrained["params"]["pretrain"]["seq_len"]
    assert metrics["steps"] == 40 and metrics["train_tokens"] == meta["tokens"] // seq_len * seq_len
    assert "`corpus/news`" in (clone / "models/pretrained/README.md").read_text()


def test_a_changed_file_in_corpus_reruns_the_corpus_stage(external, tmp_path):
    clone = copy_clone(external["clone"], tmp_path / "ptft")
    with (clone / "corpus/news/part-1.txt").open("a") as f:
        f.write("\nOne more paragraph of new text for the corpus.\n")
    assert "prepare_corpus" in json.loads(dvc("status", "--json", cwd=clone).stdout)


def test_torchrun_on_an_external_corpus_splits_the_blocks_between_processes(smoke_run, tmp_path):
    """Causal LM on 1 and 2 processes, the step budget, the same corpus: the same losses step by step, so each
    process trained on its own half of each global batch (both reading the same half would not match)."""
    one, _ = _external_clone(smoke_run, tmp_path / "one", {"pretrain": {"objective": "clm"}})
    two, _ = _external_clone(smoke_run, tmp_path / "two", {"pretrain": {"objective": "clm"},
                                                           "runtime": {"launch": LAUNCH}})
    dvc("repro", "pretrain", cwd=one)
    output = dvc("repro", "pretrain", cwd=two).stdout
    assert f"{LAUNCH} stages/pretrain.py" in output
    _assert_same_curve(_curve(one, "pretrain", "train/loss"), _curve(two, "pretrain", "train/loss"),
                       TRAIN_LOSS_TOLERANCE)


def test_a_killed_pretrain_on_an_external_corpus_resumes_to_the_identical_model(smoke_run, external, tmp_path):
    killed, _ = _external_clone(smoke_run, tmp_path / "killed")
    dvc("repro", "prepare_corpus", cwd=killed)
    process = repro_until_checkpoint(killed)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    output = dvc("repro", "pretrain", cwd=killed).stdout
    assert_resumed_like_unbroken(killed, external["clone"], output, smoke_run[0])


def test_a_bad_corpus_stops_the_stage_before_any_work_with_one_line(smoke_run, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft", {"pretrain": {"corpus": "corpus/missing/*.jsonl"}})
    result = subprocess.run([sys.executable, "stages/prepare_corpus.py"], cwd=clone, capture_output=True, text=True,
                            env=clone_env(clone))
    assert result.returncode == 2
    assert result.stderr.strip() == ("prepare_corpus: error: pretrain.corpus: the glob 'corpus/missing/*.jsonl' "
                                     "matches no file; check the pattern (** matches folders at any depth)")
    assert md5_path(clone / "data/corpus") == md5_path(smoke_run[0] / "data/corpus")  # untouched
