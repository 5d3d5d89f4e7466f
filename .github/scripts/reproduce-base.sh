#!/usr/bin/env bash
# Reproduce the base revision with a CI-sized config and commit the results on a local branch,
# so `ptft report --base BRANCH` compares the change with its base at the same size.
# Usage: reproduce-base.sh BASE_REV CONFIG BRANCH [STAGE...]   (run from the repository root;
# STAGE... limits `dvc repro` to those stages and what they need, as the tests do)
set -euo pipefail
base_rev=$1 config=$(realpath "$2") branch=$3
shift 3

worktree=$(mktemp -d)/base
git worktree add --quiet -B "$branch" "$worktree" "$base_rev"
cd "$worktree"
ptft merge-params "$config"
# The base's own code runs, not the installed (changed) package: stage scripts import ptft.
PYTHONPATH="$worktree/src" dvc repro "$@"
git add --all
git -c user.name="ptft CI" -c user.email="ci@ptft.invalid" commit --quiet \
  -m "ptft CI: $base_rev reproduced with $(basename "$config")"
