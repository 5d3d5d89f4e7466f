"""Which CPU kernels the numeric libraries run, pinned so that the same steps give the same bytes on any x86 CPU.

ATen (torch's own kernels), oneMKL (torch's BLAS), oneDNN, OpenBLAS (NumPy's and SciPy's BLAS) and NumPy's own
loops each pick a code path for the CPU they find: AVX-512 on a CPU that has it, AVX2 on one that does not. The
paths sum in different orders, so a machine with AVX-512 and one without round differently, and training grows
the last bit into another model (docs/reproducibility.md: the op that parts first is torch's CPU flash
attention). ``runtime.kernels`` pins them all to one instruction set. Each library reads its variable once,
when it loads, so this runs before torch or NumPy load and imports nothing heavy itself.
"""

from __future__ import annotations

import os
import platform
import sys
from functools import cache
from pathlib import Path
from typing import Any

VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")
# runtime.kernels: the variables each value sets. `native` sets none: each library picks its fastest path.
# MKL_CBWR's STRICT: oneMKL's conditional numerical reproducibility, bit-exact whatever the arrays' alignment.
SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    # oneMKL's AVX2 branch is for Intel CPUs: on others it falls back to its own dispatch. Its COMPATIBLE branch
    # (SSE2) gives the same bytes on Intel and AMD CPUs, at a cost (docs/speed.md).
    "compatible": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2",
                   "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "OPENBLAS_CORETYPE": "SkylakeX"},
}


# The library that reads each variable, once, when it loads (SciPy's OpenBLAS loads after NumPy).
READ_BY = {"ATEN_CPU_CAPABILITY": "torch", "MKL_CBWR": "torch", "ONEDNN_MAX_CPU_ISA": "torch",
           "OPENBLAS_CORETYPE": "numpy", "NPY_DISABLE_CPU_FEATURES": "numpy"}


class KernelError(RuntimeError):
    """The kernels could not be pinned as runtime.kernels asks."""


# The variables as the shell set them, before any pin: what `native` leaves in force.
SHELL = {name: os.environ.get(name) for name in VARIABLES}


def pin(kernels: str) -> dict[str, str | None]:
    """Set the variables of ``kernels`` (a :data:`SETTINGS` name) in this process's environment, and so its
    children's, over any the shell set (``native``: those the shell set, or none); returns them. A library that
    has loaded already has read its variables: if one of those differs, this raises rather than letting the run
    go on with other kernels than it says."""
    wanted = {**SHELL, **SETTINGS[kernels]}
    late = {k: v for k, v in wanted.items() if os.environ.get(k) != v and READ_BY[k] in sys.modules}
    if late:
        raise KernelError(f"runtime.kernels: {', '.join(sorted({READ_BY[k] for k in late}))} loaded before the "
                          f"kernels could be pinned ({' '.join(f'{k}={v}' for k, v in late.items())}); import "
                          "ptft.pipeline first, or set those variables in the environment")
    for name, value in wanted.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return wanted


def apply_kernels(runtime: dict[str, Any]) -> dict[str, str | None]:
    """Pin the kernels of the ``runtime`` params block (``runtime.kernels``)."""
    return pin(runtime["kernels"])


def pin_from_params_file(path: Path = Path("params.yaml")) -> None:
    """Pin the kernels to ``runtime.kernels`` of ``path``, if it is there and readable. A missing or broken file,
    or one pinned too late, pins nothing here: the stage's own check (:func:`apply_kernels`) says what is wrong."""
    if not path.is_file():
        return
    try:
        from ruamel.yaml import YAML

        pin((YAML(typ="safe", pure=True).load(path) or {}).get("runtime", {}).get("kernels", "native"))
    except Exception:  # noqa: BLE001 - reported by the stage's params check or apply_kernels
        return


@cache
def cpu_info() -> dict[str, Any]:
    """The CPU's model, vendor and the vector extensions that decide the kernels (Linux's /proc/cpuinfo)."""
    info: dict[str, Any] = {"machine": platform.machine(), "model": platform.processor() or None, "vendor": None}
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name":
                info["model"] = value
            elif key == "vendor_id":
                info["vendor"] = value
            elif key == "flags":
                flags = set(value.split())
            if key == "" and flags:  # the first processor's block is enough
                break
    except OSError:
        pass
    info["vector_extensions"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    return info


def kernel_facts() -> dict[str, Any]:
    """What ran the numbers: the CPU, torch's kernel capability, the thread count and every kernel variable in
    force. For the run log (never a DVC output: the same bytes come from different machines)."""
    import torch

    facts: dict[str, Any] = {
        "cpu": cpu_info(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "variables": {name: os.environ.get(name) for name in VARIABLES},
    }
    if torch.cuda.is_available():
        facts["gpu"] = gpu_info()
    return facts


def gpu_info() -> dict[str, Any]:
    """The GPU and the software that decides its kernels: compute capability, driver, CUDA, cuBLAS and cuDNN."""
    import importlib.metadata
    import subprocess

    import torch

    major, minor = torch.cuda.get_device_capability(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                                capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        driver = None
    # cuBLAS comes with PyPI's torch as a package of its own (nvidia-cublas-cu12 and the like).
    cublas = next((dist.version for dist in importlib.metadata.distributions()
                   if (dist.metadata["Name"] or "").lower().startswith("nvidia-cublas")), None)
    return {"name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}", "driver": driver,
            "cuda": torch.version.cuda, "cublas": cublas,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
