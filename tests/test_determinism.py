"""Exact on any x86 CPU: the default model's steps (2 threads, as users run it) give the same bytes under the kernel
settings another kind of CPU would pick, and beside a busy process. Each run hashes every aten op's output
(ptft.op_trace), so "identical" means every forward, backward and optimizer op, hence the losses and weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ptft.op_trace import compare, describe, other_cpu_setting, read_record, record_in_process
from ptft.pipeline.params import merge_files
from tests.conftest import ROOT, clone_env, dvc, run

STEPS = 2  # today's code parts in the first forward pass (op 130: the CPU flash attention); two steps include an update


@pytest.fixture(scope="module")
def default_clone(tmp_path_factory) -> Path:
    """A clone of HEAD with the default params (the default model, runtime.threads 2): data prepared, and a
    briefly pre-trained models/pretrained for the fine-tuning steps to start from."""
    clone = tmp_path_factory.mktemp("determinism") / "ptft"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], ROOT)
    dvc("repro", "prepare_corpus", cwd=clone)
    short = clone.parent / "short.yaml"
    short.write_text("pretrain: {max_steps: 8, evals: 1}\n")
    merge_files(clone / "params.yaml", short, clone.parent / "short-params.yaml")
    (clone / "params.yaml").rename(clone.parent / "params.yaml")
    (clone.parent / "short-params.yaml").rename(clone / "params.yaml")
    run([sys.executable, "stages/pretrain.py"], clone)
    (clone.parent / "params.yaml").replace(clone / "params.yaml")  # the default params again
    return clone


def record(clone: Path, stage: str, setting: str, name: str, kernels: str | None = None) -> list:
    out = clone.parent / f"{name}.jsonl"
    record_in_process(stage, STEPS, setting, out, kernels, cwd=clone, env=clone_env(clone))
    return read_record(out)[1]


@pytest.fixture(scope="module")
def pinned_pretrain(default_clone) -> list:
    return record(default_clone, "pretrain", "avx2", "pretrain-avx2")


def assert_identical(a: list, b: list, what: str) -> None:
    difference = compare(a, b)
    assert difference.identical, describe(difference, "the pinned run", what)


def test_pretrain_is_the_same_under_another_cpus_kernels(default_clone, pinned_pretrain):
    other = record(default_clone, "pretrain", other_cpu_setting(), "pretrain-other")
    assert len(pinned_pretrain) > 1000  # every op of two steps of the default model: forward, backward, AdamW
    assert_identical(pinned_pretrain, other, f"the run under {other_cpu_setting()} kernels")


def test_native_kernels_part_under_another_cpus_kernels(default_clone, pinned_pretrain):
    """What the pin fixes, and proof that the comparison above can fail: with runtime.kernels native (the
    behaviour before it existed), the kernels another CPU picks give other bytes in the first forward pass. Which op
    parts first depends on the pair of CPUs: the attention (AVX2 against AVX-512), the rotary cosine (against SSE4)."""
    native_here = record(default_clone, "pretrain", "avx2", "pretrain-native-avx2", kernels="native")
    native_other = record(default_clone, "pretrain", other_cpu_setting(), "pretrain-native-other", kernels="native")
    assert_identical(pinned_pretrain, native_here, "native kernels under the pinned variables")
    difference = compare(native_here, native_other)
    assert not difference.identical
    assert (difference.first[0].step, difference.first[0].phase) == (1, "forward")


def test_pretrain_is_the_same_beside_a_busy_process(default_clone, pinned_pretrain):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        beside = record(default_clone, "pretrain", "avx2", "pretrain-busy")
    finally:
        busy.kill()
    assert_identical(pinned_pretrain, beside, "the run beside a busy process")


def test_finetune_is_the_same_under_another_cpus_kernels(default_clone):
    pinned = record(default_clone, "finetune", "avx2", "finetune-avx2")
    other = record(default_clone, "finetune", other_cpu_setting(), "finetune-other")
    assert len(pinned) > 500
    assert_identical(pinned, other, f"the fine-tuning run under {other_cpu_setting()} kernels")
