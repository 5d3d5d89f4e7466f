"""Write the command output samples the docs show, by running the commands: never type them by hand.

Run it from the repository root, in the workspace whose results are committed (after `dvc repro`, with
dvc.lock committed, so that the lineage names the commit):

    python docs/samples.py lineage     # docs/samples/lineage.txt: `ptft lineage models/finetuned` (seconds)
    python docs/samples.py exp-show    # docs/samples/exp-show.md: the experiment grid of docs/experiments.md
                                       # (trains 4 experiments up to the test stage: about 10 minutes on 2 cores)
    python docs/samples.py             # both

Then commit docs/samples/. The docs site inserts each file where a page says `{{ insert: samples/<file> }}`
(docs/gen_pages.py). tests/test_docs.py renders the lineage of the end-to-end smoke run with the current code and
checks that docs/samples/lineage.txt has the same shape (the same steps, fields and keys, in the same order), so
a change to `ptft lineage` or to a stage's params or metrics fails that test until this script is rerun.

`exp-show` runs `dvc exp run --temp evaluate test` for each point of the grid (in a temporary copy: the workspace
is left as it is; the targets stop before export and the comparison cells, which a finetune param would rerun
too), then `ptft exp-show --md`. The experiments are named `docs-<lr>-<freeze>` so that a rerun replaces
them; `dvc exp remove docs-...` drops them afterwards if you like.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "samples"
LINEAGE = ["ptft", "lineage", "models/finetuned"]
# The grid docs/experiments.md shows:
# dvc exp run --queue -S 'finetune.lr=1e-4,3e-4' -S 'finetune.freeze=none,embeddings'
GRID = [(lr, freeze) for lr in ("1e-4", "3e-4") for freeze in ("none", "embeddings")]
EXP_SHOW = [sys.executable, "-m", "ptft.cli", "exp-show", "--md"]  # `ptft exp-show --md`, as this interpreter runs it


def _run(command: list[str], cwd: Path | None = None, check: bool = True) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def lineage_sample(cwd: Path | None = None) -> str:
    """`ptft lineage models/finetuned` as a terminal shows it: the command, then its output."""
    command = [sys.executable, "-m", "ptft.cli", *LINEAGE[1:]]  # this interpreter's ptft, as `ptft` would run
    return f"$ {' '.join(LINEAGE)}\n{_run(command, cwd).rstrip()}\n"


def shorten_columns(table: str) -> str:
    """`reports/evaluate/metrics.json:accuracy` → `evaluate accuracy` in the table's header."""
    header, _, rest = table.partition("\n")
    header = re.sub(r"reports/(\w+)/metrics\.json:(\w+)", r"\1 \2", header)
    return f"{header}\n{rest}"


def exp_show_sample(cwd: Path | None = None) -> str:
    """The grid's experiments up to the test stage, then `dvc exp show --md` of the columns the docs keep."""
    names = [f"docs-{lr}-{freeze}" for lr, freeze in GRID]
    _run(["dvc", "exp", "remove", *names], cwd, check=False)  # an earlier run's; absent ones are fine
    for (lr, freeze), name in zip(GRID, names):
        # evaluate and test both: `test` alone would leave evaluate's (validation) scores those of the baseline.
        _run(["dvc", "exp", "run", "--temp", "evaluate", "test", "--name", name, "-S", f"finetune.lr={lr}", "-S",
              f"finetune.freeze={freeze}"], cwd)
    return shorten_columns(_run(EXP_SHOW, cwd).strip()) + "\n"


def main(argv: list[str]) -> None:
    wanted = argv or ["lineage", "exp-show"]
    unknown = set(wanted) - {"lineage", "exp-show"}
    if unknown:
        sys.exit(f"unknown sample {sorted(unknown)}; choose lineage, exp-show, or nothing for both")
    SAMPLES.mkdir(exist_ok=True)
    if "lineage" in wanted:
        (SAMPLES / "lineage.txt").write_text(lineage_sample())
        print(f"wrote {SAMPLES / 'lineage.txt'}")
    if "exp-show" in wanted:
        (SAMPLES / "exp-show.md").write_text(exp_show_sample())
        print(f"wrote {SAMPLES / 'exp-show.md'}")


if __name__ == "__main__":
    main(sys.argv[1:])
