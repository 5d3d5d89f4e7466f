"""The aten-op audit (ptft.op_audit): every model kind's training step runs only ops that PyTorch's determinism
switch allows on CUDA, and only the ops of the approved snapshot in src/ptft/aten_ops/torch-<version>.json."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ptft.op_audit import (
    GOVERNED_ATTENTION,
    KIND_NAMES,
    KINDS,
    PRECISIONS,
    REFRESH,
    StepResult,
    _global_torch_state,
    audit,
    documented_ops,
    flagged,
    load_table,
    op_key,
    problems,
    record,
    report,
    run_step,
    table_path,
    torch_minor,
    write_snapshot,
)
from ptft.pipeline.runtime import setup_runtime

ROOT = Path(__file__).resolve().parents[1]


def require_table(path: Path) -> dict:
    """This torch version's table; without one the audit cannot judge, which CI (PTFT_CI=1) must not pass."""
    if not path.is_file():
        message = (f"no aten-op table for torch {torch_minor()}: run `{REFRESH}` to create {path.name} (it starts "
                   "from the newest table), check its raises_on_cuda against torch.use_deterministic_algorithms."
                   "__doc__, and commit it")
        if os.environ.get("PTFT_CI"):
            pytest.fail(message)
        pytest.skip(message)
    return load_table(path)


@pytest.fixture(scope="module")
def table() -> dict:
    return require_table(table_path())


@pytest.fixture(scope="module")
def audited(table) -> dict[tuple[str, str], StepResult]:
    """One recorded training step of every kind in fp32 and bf16 (about 20 s on 2 CPU cores)."""
    return {(result.kind, result.precision): result for result in audit()}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_step_runs_approved_ops_none_raising_on_cuda(audited, table, kind, precision):
    result = audited[kind, precision]
    assert result.error is None
    found = problems(kind, precision, result.keys, table)
    assert not found, "\n".join(found)


def test_the_audit_records_backward_optimizer_and_the_kernels_picked(audited):
    for (kind, precision), result in audited.items():
        keys = result.keys
        assert "aten.embedding_dense_backward.default" in keys, kind  # the backward pass reached the embeddings
        assert any(key.startswith("aten.native_layer_norm_backward") for key in keys), kind
        assert any(key.startswith(("aten._fused_adamw_", "aten._foreach_add", "aten.addcdiv")) for key in keys), kind
        attention = [key for key in keys if "_scaled_dot_product" in key and "backward" not in key]
        assert attention, kind
        dtype = "torch.bfloat16" if precision == "bf16" else "torch.float32"
        assert all(f"dtype={dtype}" in key for key in attention), (kind, attention)  # autocast is on in bf16
        assert all(("causal=True" in key) == kind.startswith("clm") for key in attention), (kind, attention)
        if kind.startswith("classifier"):  # a padded batch: its attention is masked
            assert all("mask=True" in key for key in attention), (kind, attention)


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_model_attends_through_kernels_the_determinism_switch_governs(audited, table, kind):
    """No flash_attention_2 or hub kernel: SDPA or eager attention, whose aten kernels the switch covers."""
    for precision in PRECISIONS:
        result = audited[kind, precision]
        assert result.attn_implementation in GOVERNED_ATTENTION, (kind, result.attn_implementation)
        assert flagged(result.keys, table["backend_dependent"]) or result.attn_implementation == "eager"
        assert all(key.startswith("aten.") for key in result.keys), sorted(k for k in result.keys
                                                                            if not k.startswith("aten."))


def test_the_table_transcribes_this_torch_docstring(table):
    """Each entry keeps the docstring's bullet: a torch whose list changed fails here until the table is reviewed."""
    documented = documented_ops()
    assert len(documented["raises"]) > 10 and len(documented["switched"]) > 10
    assert sorted(entry["doc"] for entry in table["raises_on_cuda"]) == sorted(documented["raises"])
    assert sorted(entry["doc"] for entry in table["deterministic_when_switched"]) == sorted(documented["switched"])
    assert set(table["snapshot"]) == set(KIND_NAMES)
    assert all(set(by_precision) == set(PRECISIONS) for by_precision in table["snapshot"].values())


def test_a_raising_op_fails_the_audit_and_its_deterministic_form_does_not(table):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    keys = record(lambda: F.nll_loss(F.log_softmax(logits, 1), target).backward())
    assert "aten.nll_loss2d_forward.default input_ndim=4 reduction=mean" in keys
    found = problems("probe", "fp32", keys, table, check_snapshot=False)
    assert len(found) == 1 and "probe (fp32): aten.nll_loss2d_forward.default" in found[0]
    assert "torch.nn.NLLLoss" in found[0]
    # No reduction: no atomicAdd, no alert. Flattened 2-D logits (what transformers' losses pass): none either.
    keys = record(lambda: F.nll_loss(F.log_softmax(logits, 1), target, reduction="none").sum().backward())
    keys |= record(lambda: F.cross_entropy(logits.permute(0, 2, 3, 1).reshape(-1, 3), target.flatten()).backward())
    assert not problems("probe", "fp32", keys, table, check_snapshot=False)


def test_a_raising_op_in_the_backward_pass_fails_the_audit(table):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        forward_only = record(lambda: model(torch.randn(2, 1, 8, 8)))
    assert not problems("probe", "fp32", forward_only, table, check_snapshot=False)
    keys = record(lambda: model(torch.randn(2, 1, 8, 8)).sum().backward())
    found = problems("probe", "fp32", keys, table, check_snapshot=False)
    assert [message.split(" raises")[0] for message in found] == ["probe (fp32): aten._adaptive_avg_pool2d_backward"
                                                                  ".default"]


def test_a_model_that_starts_using_a_raising_kernel_fails_its_kind(table, monkeypatch, tmp_path):
    """As if a transformers release computed the classification loss over 3-D logits (nll_loss2d on CUDA)."""
    cross_entropy = F.cross_entropy

    def loss_over_3d_logits(input, target, *args, **kwargs):  # noqa: A002 - F.cross_entropy's names
        return cross_entropy(input.unsqueeze(-1), target.unsqueeze(-1), *args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", loss_over_3d_logits)
    kind = next(kind for kind in KINDS if kind.name == "classifier-modernbert-mean")
    result = run_step(kind, "fp32", tmp_path)
    found = problems(kind.name, "fp32", result.keys, table)
    raising = [message for message in found if "raises under" in message]
    assert raising and raising[0].startswith("classifier-modernbert-mean (fp32): aten.nll_loss2d_forward.default")
    assert any("not in the approved snapshot" in message and REFRESH in message for message in found)


def test_an_op_outside_the_snapshot_names_the_op_the_kind_and_the_refresh(audited, table):
    result = audited["mlm-bert", "bf16"]
    new_op = next(key for key in sorted(result.keys) if "_scaled_dot_product" in key)
    narrowed = copy.deepcopy(table)
    narrowed["snapshot"]["mlm-bert"]["bf16"].remove(new_op)
    assert problems("mlm-bert", "bf16", result.keys, narrowed) == [
        f"mlm-bert (bf16): {new_op} is not in the approved snapshot of src/ptft/aten_ops/torch-{table['torch']}.json; "
        f"check that it is deterministic on CUDA, then run `{REFRESH}` and commit the table"]


def test_keys_hold_the_arguments_that_decide_determinism_and_no_shapes():
    x = torch.zeros(5, 3)
    assert op_key(torch.ops.aten.index_put_.default, (x, [torch.tensor([0, 0])], torch.ones(3)), {"accumulate": True}) \
        == "aten.index_put_.default accumulate=True"
    assert op_key(torch.ops.aten.cumsum.default, (torch.ones(4, dtype=torch.int64), 0)) \
        == "aten.cumsum.default dtype=torch.int64"
    assert op_key(torch.ops.aten.cumsum.default, (torch.ones(4, dtype=torch.int64), 0), {"dtype": torch.float32}) \
        == "aten.cumsum.default dtype=torch.float32"
    index = torch.zeros(2, 3, dtype=torch.long)
    assert op_key(torch.ops.aten.scatter_reduce.two, (x, 0, index, torch.ones(2, 3), "prod")) \
        == "aten.scatter_reduce.two include_self=True reduce=prod"
    assert op_key(torch.ops.aten.mm.default, (x, torch.zeros(3, 7))) == "aten.mm.default"


def test_the_audit_leaves_torch_settings_as_it_found_them():
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    with _global_torch_state():
        setup_runtime(0, before[0] + 1, deterministic=not before[1])
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.benchmark) == before


def test_a_missing_table_skips_here_and_fails_in_ci(tmp_path, monkeypatch):
    missing = tmp_path / "torch-0.1.json"
    monkeypatch.delenv("PTFT_CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=REFRESH):
        require_table(missing)
    monkeypatch.setenv("PTFT_CI", "1")
    with pytest.raises(pytest.fail.Exception, match=REFRESH):
        require_table(missing)


def test_write_snapshot_keeps_the_reviewed_lists_and_starts_a_new_version_from_the_newest(table, tmp_path):
    (tmp_path / "torch-2.13.json").write_text(json.dumps(table))
    steps = [StepResult("mlm-bert", "fp32", {"aten.mm.default", "aten.add.Tensor"})]
    new = write_snapshot(steps, tmp_path / "torch-9.1.json")
    written = load_table(new)
    assert written["raises_on_cuda"] == table["raises_on_cuda"] and written["started_from"] == "torch-2.13.json"
    assert written["snapshot"] == {"mlm-bert": {"fp32": ["aten.add.Tensor", "aten.mm.default"]}}
    assert written["torch"] == torch_minor()


def test_the_report_gpu_check_reads(audited, table):
    summary = json.loads(json.dumps(report(list(audited.values()), table, table_path(), "cpu")))
    assert summary["ok"] and summary["device"] == "cpu" and summary["table_matches_torch"]
    assert len(summary["steps"]) == len(KIND_NAMES) * len(PRECISIONS)
    step = summary["steps"][0]
    assert step["backward_ops"] > 0 and step["attention_kernels"] and not step["problems"]


def test_the_op_tables_ship_in_the_wheel(tmp_path):
    """`python -m ptft.op_audit` reads its table from the package, so it works from an installed wheel."""
    clone = tmp_path / "ptft"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(clone)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("ptft-*.whl"))).namelist()
    tables = sorted(p.name for p in (ROOT / "src/ptft/aten_ops").glob("torch-*.json"))
    assert tables and sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("ptft/aten_ops/")) == tables
