"""runtime.kernels (ptft.pipeline.kernels): the variables each setting pins, set before torch loads, the shell's own
kept under native, and a pin that comes too late refused with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptft.pipeline.kernels import SETTINGS, VARIABLES, cpu_info, kernel_facts
from tests.conftest import ROOT


def python(code: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (the libraries read their kernel variables once, when they load)."""
    environ = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**environ, **env}, capture_output=True,
                          text=True)


def test_importing_the_pipeline_pins_the_kernels_of_params_yaml_before_torch_loads(tmp_path):
    if "avx2" not in cpu_info()["vector_extensions"]:
        pytest.skip("this CPU has no AVX2")
    (tmp_path / "params.yaml").write_text("runtime: {kernels: avx2}\n")
    done = python("import ptft.pipeline, os, torch; print(torch.backends.cpu.get_cpu_capability()); "
                  "print(os.environ['MKL_CBWR'], os.environ['OPENBLAS_CORETYPE'])", tmp_path,
                  ATEN_CPU_CAPABILITY="default")  # the shell's choice is overridden
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["AVX2", "AVX2,STRICT", "Haswell"]


def test_native_leaves_the_shells_variables_in_force(tmp_path):
    (tmp_path / "params.yaml").write_text("runtime: {kernels: native}\n")
    done = python("import ptft.pipeline, os; from ptft.pipeline.kernels import pin; pin('avx2'); pin('native'); "
                  "print(os.environ.get('ATEN_CPU_CAPABILITY'), os.environ.get('MKL_CBWR'))", tmp_path,
                  ATEN_CPU_CAPABILITY="default")
    assert done.stdout.split() == ["default", "None"]


def test_a_pin_after_torch_loaded_is_refused_naming_the_library_and_variables():
    done = python("import torch\nfrom ptft.pipeline.kernels import KernelError, pin\ntry:\n    pin('avx512')\n"
                  "except KernelError as err:\n    print(err)")
    assert "runtime.kernels: numpy, torch loaded before the kernels could be pinned" in done.stdout
    assert "ATEN_CPU_CAPABILITY=avx512" in done.stdout and "import ptft.pipeline first" in done.stdout


def test_a_pin_after_torch_loaded_with_the_same_variables_is_accepted():
    done = python("import torch\nfrom ptft.pipeline.kernels import pin\npin('avx2')\nprint('pinned')",
                  **SETTINGS["avx2"])
    assert done.stdout.strip() == "pinned", done.stderr


def test_every_setting_names_only_known_variables_and_the_schema_allows_each():
    from ptft.pipeline.schema import Runtime

    assert set(Runtime.model_fields["kernels"].annotation.__args__) == set(SETTINGS)
    assert all(set(variables) <= set(VARIABLES) for variables in SETTINGS.values())
    assert SETTINGS["native"] == {}


def test_the_run_log_facts_name_the_cpu_the_torch_kernels_and_every_variable():
    facts = kernel_facts()
    assert facts["cpu"]["machine"] == "x86_64" or facts["cpu"]["machine"]
    assert facts["torch_cpu_capability"] and facts["threads"] >= 1
    assert set(facts["variables"]) == set(VARIABLES)
    if Path("/proc/cpuinfo").is_file():
        assert facts["cpu"]["vendor"] and facts["cpu"]["model"]
