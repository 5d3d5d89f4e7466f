"""ptft.op_trace's comparison: the first op whose output differs, and the ops that turned equal inputs into other
outputs (a kernel that depends on the setting); digests of tensors."""

from __future__ import annotations

import pytest
import torch

from ptft.op_trace import OpCall, compare, describe, digest, setting_env


def call(index: int, op: str, inputs: str, output: str) -> OpCall:
    return OpCall(index, 1, "forward", op, [[2, 2]], "float32", 2, inputs, output)


def test_the_first_difference_and_the_culprits_are_named():
    a = [call(0, "aten.mm.default", "i0", "o0"), call(1, "aten.softmax.default", "o0", "o1"),
         call(2, "aten.add.Tensor", "o1", "o2")]
    same = compare(a, list(a))
    assert same.identical and "identical" in describe(same, "a", "b")
    b = [a[0], call(1, "aten.softmax.default", "o0", "x1"), call(2, "aten.add.Tensor", "x1", "x2")]
    difference = compare(a, b)
    assert not difference.identical and difference.first[0].index == 1 and difference.differing_outputs == 2
    assert list(difference.culprits) == ["aten.softmax.default [[2, 2]] float32"]  # add only got other inputs
    assert "first differing output: op 1 (step 1, forward): aten.softmax.default on [2x2] float32, 2 threads" in \
        describe(difference, "a", "b")
    other_path = compare(a, [a[0], call(1, "aten.log_softmax.default", "o0", "o1")])
    assert not other_path.same_sequence and "another code path ran" in describe(other_path, "a", "b")


def test_digests_see_bytes_dtype_and_shape():
    x = torch.arange(6, dtype=torch.float32)
    assert digest(x) == digest(x.clone()) != digest(x.reshape(2, 3)) != digest(x.double())
    assert digest((x, [x])) != digest(x) and digest(torch.tensor(1.0)) == digest(torch.tensor(1.0))
    y = x.clone()
    y[5] = torch.nextafter(y[5], torch.tensor(10.0))  # one ulp
    assert digest(y) != digest(x)


def test_settings_are_named_or_pairs_of_known_variables():
    assert setting_env("avx2")["MKL_CBWR"] == "AVX2,STRICT" and setting_env("sse4")["ATEN_CPU_CAPABILITY"] == "default"
    assert setting_env("ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2") == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
    with pytest.raises(SystemExit, match="unknown variable"):
        setting_env("OMP_NUM_THREADS=1")
