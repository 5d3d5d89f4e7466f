"""Do other CPUs compute the same bytes? The default model's steps, op by op, on this CPU and on emulated ones.

Records one or more pretrain steps with every aten op's output hashed (``ptft.op_trace``), and compares:

- on this CPU, the kernels another kind of CPU picks (``native`` under AVX-512 and under AVX2 variables: what
  parts first, and where), and the pinned settings (``runtime.kernels``) against them;
- under ``qemu-x86_64`` (Debian's qemu-user, if installed), CPUs this machine is not: an Intel Haswell (AVX2, no
  AVX-512) and an AMD EPYC (AVX2; oneMKL dispatches by vendor), each with ``runtime.kernels`` avx2 and compatible,
  against this CPU's record of the same setting. Emulation executes each instruction exactly as the emulated CPU
  would (IEEE arithmetic), and the libraries see its CPUID, so they pick the code paths that CPU would; it is slow
  (a step takes minutes), so the emulated runs record one step.

Usage (after ``dvc repro prepare_corpus``): python benchmarks/cross_cpu.py [--steps 2] [--no-emulation]
Writes benchmarks/results/cross_cpu.json and cross_cpu.md, and this machine's ``lscpu`` to
cross_cpu_machine.md (run it on the machine that makes the committed dvc.lock).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ptft.op_trace import compare, read_record, record_in_process
from ptft.pipeline.kernels import VARIABLES, cpu_info

RESULTS = Path("benchmarks/results")
EMULATED = {"Haswell": "Intel Haswell (AVX2, no AVX-512)", "EPYC": "AMD EPYC (AVX2)"}


def site_packages() -> str:
    import torch

    return str(Path(torch.__file__).parents[1])


def record_emulated(cpu: str, kernels: str, out: Path, steps: int) -> None:
    """One record under ``qemu-x86_64 -cpu <cpu>``, the interpreter and its packages as here."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(Path("src").resolve()), site_packages()])
    cmd = ["nice", "-n", "10", "qemu-x86_64", "-cpu", cpu, os.path.realpath(sys.executable), "-m", "ptft.op_trace",
           "record", "--steps", str(steps), "--kernels", kernels, "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{cpu} ({kernels}) failed:\n{done.stderr[-3000:]}")


def outcome(a: list, b: list) -> dict[str, Any]:
    """Identical, or the first op whose output differs (its step, pass, op, shapes, dtype and threads)."""
    difference = compare(a, b)
    result: dict[str, Any] = {"ops": difference.ops, "identical": difference.identical}
    if difference.first:
        first = difference.first[0]
        result["first_difference"] = {"index": first.index, "step": first.step, "phase": first.phase, "op": first.op,
                                      "shapes": first.shapes, "dtype": first.dtype, "threads": first.threads}
        result["differing_outputs"] = difference.differing_outputs
    return result


LSCPU_FIELDS = ("Architecture", "Vendor ID", "Model name", "CPU family", "Model", "Stepping", "CPU(s)",
                "Thread(s) per core", "Hypervisor vendor", "L2 cache", "L3 cache")


def lscpu() -> dict[str, str]:
    """``lscpu``'s identifying fields, and the vector extensions that decide the kernels."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    found = {key: fields[key].strip() for key in LSCPU_FIELDS if key in fields}
    found["vector extensions"] = " ".join(cpu_info()["vector_extensions"])
    return found


def machine_markdown(fields: dict[str, str]) -> str:
    return "`lscpu`, selected fields:\n\n| field | value |\n| --- | --- |\n" + \
        "".join(f"| {key} | {value} |\n" for key, value in fields.items())


def markdown(result: dict[str, Any]) -> str:
    lines = [f"This CPU: {result['cpu']['model']} ({result['cpu']['vendor']}, "
             f"{'with' if result['cpu']['avx512'] else 'without'} AVX-512). Default model, "
             f"{result['threads']} threads; every aten op's output hashed.\n",
             "| run | against | steps | ops | result |", "| --- | --- | --- | --- | --- |"]
    for row in result["comparisons"]:
        first = row.get("first_difference")
        verdict = "identical" if row["identical"] else (
            f"parts at op {first['index']} (step {first['step']}, {first['phase']}): `{first['op']}` on "
            f"{' x '.join('x'.join(map(str, s)) for s in first['shapes'])} {first['dtype']}")
        lines.append(f"| {row['run']} | {row['against']} | {row['steps']} | {row['ops']} | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="pretrain steps recorded on this CPU")
    parser.add_argument("--no-emulation", action="store_true", help="skip the emulated CPUs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    info = cpu_info()
    avx512 = "avx512f" in info["vector_extensions"]
    work = Path(tempfile.mkdtemp(prefix="ptft-cross-cpu-"))
    comparisons: list[dict[str, Any]] = []

    def here(setting: str, kernels: str, steps: int) -> list:
        out = work / f"here-{setting.replace(' ', '_')}-{kernels}-{steps}.jsonl"
        if not out.is_file():
            record_in_process("pretrain", steps, setting, out, kernels)
        return read_record(out)[1]

    # What another kind of CPU picks, emulated here by the variables (the sse4 kernels on a CPU without AVX-512).
    other = "avx512" if avx512 else "sse4"
    native = here("avx2", "native", args.steps)
    comparisons.append({"run": f"native kernels under {other} variables", "against": "native under avx2 variables",
                        "steps": args.steps, **outcome(native, here(other, "native", args.steps))})
    # ATen pinned alone: what oneMKL's own choice changes.
    comparisons.append({"run": "ATEN_CPU_CAPABILITY=avx2 alone (oneMKL native)", "against": "all pinned to avx2",
                        "steps": args.steps, **outcome(here("avx2", "avx2", args.steps),
                                                       here("ATEN_CPU_CAPABILITY=avx2", "native", args.steps))})
    for kernels in ("avx2", "compatible"):
        comparisons.append({"run": f"runtime.kernels: {kernels}, under {other} variables",
                            "against": f"runtime.kernels: {kernels}, under avx2 variables", "steps": args.steps,
                            **outcome(here("avx2", kernels, args.steps), here(other, kernels, args.steps))})
    if not args.no_emulation and shutil.which("qemu-x86_64"):
        jobs = [(cpu, kernels) for cpu in EMULATED for kernels in ("avx2", "compatible")]
        with ThreadPoolExecutor(2) as pool:  # two at a time: each emulated process keeps about one core busy
            list(pool.map(lambda job: record_emulated(*job, work / f"{job[0]}-{job[1]}.jsonl", 1), jobs))
        for cpu, kernels in jobs:
            comparisons.append({"run": f"emulated {EMULATED[cpu]}, runtime.kernels: {kernels}",
                                "against": f"this CPU, runtime.kernels: {kernels}", "steps": 1,
                                **outcome(here("avx2", kernels, 1), read_record(work / f"{cpu}-{kernels}.jsonl")[1])})
    result = {"cpu": {"model": info["model"], "vendor": info["vendor"], "avx512": avx512}, "lscpu": lscpu(),
              "threads": read_record(next(work.glob("here-*.jsonl")))[0]["threads"], "comparisons": comparisons}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cross_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "cross_cpu.md").write_text(markdown(result))
    (args.out / "cross_cpu_machine.md").write_text(machine_markdown(result["lscpu"]))
    print(markdown(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
