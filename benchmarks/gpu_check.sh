#!/usr/bin/env bash
# Is ptft ready for a CUDA machine? One run on an H100/H200 answers, in 8 minutes at most there (each part has a
# share of --budget, default 450 s); on a machine without a GPU it runs the same parts as a dry check on CPU.
#
#   benchmarks/gpu_check.sh [--quick] [--out FILE] [--budget SECONDS] [--keep]
#
#   1. strict steps: one training step of every model kind (MLM per model.family, CLM, each classifier on a
#      padded batch) in fp32 and bf16, on the GPU, under torch.use_deterministic_algorithms(True) with
#      warn_only=False: `python -m ptft.op_audit --device cuda`. A nondeterministic kernel fails its step;
#      the report names the SDPA kernel each step ran (flash, memory-efficient, cuDNN, math) and the
#      backends torch.backends.cuda had enabled.
#   2. bit-exact reruns: the smoke pipeline (`ptft merge-params configs/smoke.yaml`, `dvc repro` of prepare,
#      pretrain, finetune, evaluate and test) in a temp clone of HEAD, then `dvc repro -f` of the same stages;
#      every output hash those stages record in dvc.lock must be equal in the two runs.
#   3. speed: benchmarks/throughput.py with runtime.bf16 off, then on (the default params' model, after a
#      prepare with the default params; --quick: the smoke model and `throughput.py --quick`).
#   4. one JSON report, default benchmarks/results/gpu_check.json: every part's outcome, time and log tail,
#      the GPU (model, compute capability, driver, CUDA, cuBLAS and cuDNN: what decides its kernels, so what a
#      bit-exact result holds for), the torch and transformers versions, and the commit. Without a GPU the report
#      says so ("gpu_found": false) and goes to $TMPDIR/ptft-gpu_check-dry-run.json unless --out is given:
#      a CPU dry run is no GPU result.
#
# It checks the committed HEAD (commit first), with the python that has ptft's dependencies and dvc first on
# PATH (pip install -e '.[dev]'). Exit status 0 when every part passed, 1 otherwise, 2 on a usage error.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
OUT=""
QUICK=0
BUDGET=450  # seconds; the parts' time limits and the report keep the whole run within 8 minutes
KEEP=0
STAGES=(prepare pretrain finetune evaluate test)

usage() { sed -n '2,/^set /p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --out) [ $# -ge 2 ] || { echo "gpu_check.sh: --out needs a file" >&2; exit 2; }
           OUT=$(realpath -m -- "$2"); shift ;;
    --budget) [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "gpu_check.sh: --budget needs whole seconds" >&2; exit 2; }
              BUDGET=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ptft-gpu-check.XXXXXX")
CLONE=$WORK/ptft
PARTS=$WORK/parts
mkdir -p "$PARTS"
if [ "$KEEP" = 1 ]; then
  echo "gpu_check: keeping $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi
DEADLINE=$((SECONDS + BUDGET))
export DVC_NO_ANALYTICS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

say() { printf 'gpu_check [%3ds]: %s\n' "$SECONDS" "$*"; }

# The seconds a part may take: its cap, or its share of what is left of the budget.
limit() {
  local cap=$1 parts_left=$2 left=$((DEADLINE - SECONDS))
  local share=$((left / parts_left))
  [ "$share" -lt "$cap" ] || share=$cap
  [ "$share" -gt 10 ] || share=10
  echo "$share"
}

# part NAME SECONDS DIR COMMAND...: run COMMAND in DIR under a time limit, log to $PARTS/NAME.log, and record
# its exit status and wall time in $PARTS/NAME.json.
part() {
  local name=$1 seconds=$2 dir=$3 started=$SECONDS rc
  shift 3
  say "$name (limit ${seconds}s): $*"
  (cd "$dir" && timeout --kill-after=15 "$seconds" "$@") >"$PARTS/$name.log" 2>&1
  rc=$?
  "$PYTHON" - "$PARTS/$name" "$rc" "$((SECONDS - started))" "$seconds" "$*" <<'EOF'
import json, re, sys
path, rc, seconds, limit, command = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lines = open(path + ".log", errors="replace").read().splitlines()
# The exception that ended it, past the noise some libraries print while the interpreter shuts down.
errors = [line for line in lines if re.match(r"[\w.]*(Error|Exception|Interrupt)(: |$)", line)
          and "Python is likely shutting down" not in line]
json.dump({"command": command, "exit_status": rc, "seconds": seconds, "limit_seconds": limit,
           "timed_out": rc in (124, 137), "error": errors[-1] if rc and errors else None,
           "log_tail": lines[-30:]}, open(path + ".json", "w"), indent=1)
EOF
  say "$name: exit $rc after $((SECONDS - started))s"
  return "$rc"
}

# The clone's own code runs, not this working copy's: the checks are of the committed HEAD.
export PYTHONPATH=$CLONE/src
GPU=$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))') || { echo "gpu_check: no torch" >&2; exit 2; }
if [ -z "$OUT" ]; then
  if [ "$GPU" = 1 ]; then OUT=$ROOT/benchmarks/results/gpu_check.json; else OUT=${TMPDIR:-/tmp}/ptft-gpu_check-dry-run.json; fi
fi
if [ "$GPU" = 1 ]; then DEVICE=cuda; else DEVICE=cpu; say "no GPU found: a dry run on CPU"; fi

part clone 60 "$ROOT" git clone --quiet "$ROOT" "$CLONE" || { echo "gpu_check: cannot clone $ROOT" >&2; exit 1; }

# 1. strict steps
part strict_steps "$(limit 150 4)" "$CLONE" "$PYTHON" -m ptft.op_audit --device "$DEVICE" --out "$PARTS/audit.json"

# 2. the smoke pipeline twice
part merge_params 30 "$CLONE" "$PYTHON" -m ptft.cli merge-params configs/smoke.yaml \
  && part repro_first "$(limit 180 3)" "$CLONE" "$PYTHON" -m dvc repro "${STAGES[@]}" \
  && cp "$CLONE/dvc.lock" "$PARTS/first.lock" \
  && part repro_forced "$(limit 180 2)" "$CLONE" "$PYTHON" -m dvc repro -f "${STAGES[@]}" \
  && cp "$CLONE/dvc.lock" "$PARTS/second.lock"

# 3. throughput, bf16 off and on
printf 'runtime:\n  bf16: false\n' >"$WORK/bf16-off.yaml"
printf 'runtime:\n  bf16: true\n' >"$WORK/bf16-on.yaml"
THROUGHPUT=("$PYTHON" benchmarks/throughput.py)
if [ "$QUICK" = 1 ]; then
  THROUGHPUT+=(--quick)  # the smoke params merged above: a toy model, a few steps
else
  # The default model on data prepared with the default params (the smoke prepare has a smaller vocabulary).
  git -C "$CLONE" show HEAD:params.yaml >"$CLONE/params.yaml"
  part prepare_default "$(limit 120 3)" "$CLONE" "$PYTHON" -m dvc repro prepare
fi
part throughput_bf16_off "$(limit 300 2)" "$CLONE" "${THROUGHPUT[@]}" --config "$WORK/bf16-off.yaml" \
  --out "$PARTS/throughput-bf16-off"
part throughput_bf16_on "$(limit 300 1)" "$CLONE" "${THROUGHPUT[@]}" --config "$WORK/bf16-on.yaml" \
  --out "$PARTS/throughput-bf16-on"

# 4. the report
mkdir -p "$(dirname "$OUT")"
"$PYTHON" - "$PARTS" "$OUT" "$GPU" "$QUICK" "$SECONDS" "$BUDGET" "${STAGES[@]}" <<'EOF'
import json, re, subprocess, sys
from pathlib import Path

import torch
import transformers
import yaml

from ptft.pipeline.kernels import gpu_info

parts, out, gpu, quick, seconds, budget, stages = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1",
                                                    sys.argv[4] == "1", int(sys.argv[5]), int(sys.argv[6]),
                                                    sys.argv[7:])


def part(name):
    path = parts / f"{name}.json"
    found = json.loads(path.read_text()) if path.is_file() else {"exit_status": None, "skipped": True}
    found["ok"] = found.get("exit_status") == 0
    return found


def outputs(lock_file):
    """(stage, path) -> hash of every output the given stages record in a dvc.lock."""
    lock = yaml.safe_load(lock_file.read_text())["stages"]
    return {(stage, out["path"]): out.get("md5") or out.get("hash") or out.get("etag")
            for stage in stages for out in lock.get(stage, {}).get("outs", [])}


strict = part("strict_steps")
audit_file = parts / "audit.json"
strict["audit"] = json.loads(audit_file.read_text()) if audit_file.is_file() else None
strict["ok"] = strict["ok"] and bool(strict["audit"]) and strict["audit"]["ok"]

repro = {"stages": stages, "first": part("repro_first"), "forced": part("repro_forced")}
forced_log = parts / "repro_forced.log"
rerun = re.findall(r"Running stage '([^']+)'", forced_log.read_text()) if forced_log.is_file() else []
repro["forced"]["stages_rerun"] = rerun
if (parts / "first.lock").is_file() and (parts / "second.lock").is_file():
    first, second = outputs(parts / "first.lock"), outputs(parts / "second.lock")
    repro["outputs_compared"] = len(first)
    repro["differ"] = [{"stage": stage, "path": path, "first": first.get((stage, path)),
                        "second": second.get((stage, path))}
                       for stage, path in sorted(set(first) | set(second))
                       if first.get((stage, path)) != second.get((stage, path))]
    repro["identical"] = sorted(f"{stage}: {path}" for (stage, path) in first
                                if first[stage, path] == second.get((stage, path)))
else:
    repro["outputs_compared"], repro["differ"], repro["identical"] = 0, None, []
repro["ok"] = (repro["first"]["ok"] and repro["forced"]["ok"] and set(stages) <= set(rerun)
               and repro["outputs_compared"] > 0 and repro["differ"] == [])

throughput = {}
for setting in ("off", "on"):
    found = part(f"throughput_bf16_{setting}")
    result = parts / f"throughput-bf16-{setting}" / "throughput.json"
    found["result"] = json.loads(result.read_text()) if result.is_file() else None
    found["ok"] = found["ok"] and found["result"] is not None
    throughput[f"bf16_{setting}"] = found
throughput["quick"] = quick
if not quick:
    throughput["prepare_default"] = part("prepare_default")

commit = subprocess.run(["git", "-C", str(parts.parent / "ptft"), "rev-parse", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
report = {
    "gpu_found": gpu,
    "note": ("a GPU run" if gpu else "no GPU found: a dry run on CPU, which checks that the script works; "
             "its numbers are no GPU result"),
    "device": torch.cuda.get_device_name() if gpu else "cpu",
    # Bit-exact results hold for the same GPU model and software: these name both.
    "gpu": gpu_info() if gpu else None,
    "torch": torch.__version__, "cuda": torch.version.cuda,
    "transformers": transformers.__version__, "commit": commit, "quick": quick,
    "seconds": seconds, "budget_seconds": budget,
    "strict_steps": strict, "repro": repro, "throughput": throughput,
}
report["ok"] = strict["ok"] and repro["ok"] and all(throughput[f"bf16_{s}"]["ok"] for s in ("off", "on"))
out.write_text(json.dumps(report, indent=1) + "\n")
status = "passed" if report["ok"] else "FAILED"
print(f"gpu_check: {status} on {report['device']} in {seconds}s: strict steps {strict['ok']}, reruns bit-exact "
      f"{repro['ok']} ({repro['outputs_compared']} outputs), throughput bf16 off/on "
      f"{throughput['bf16_off']['ok']}/{throughput['bf16_on']['ok']}; report: {out}")
sys.exit(0 if report["ok"] else 1)
EOF
