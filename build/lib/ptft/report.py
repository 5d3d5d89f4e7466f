"""``ptft report``: what changed against a base revision (params, metrics, loss curves), as markdown.

The pull-request workflow posts this report as a comment; a person runs the same command locally.
The numbers come from ``dvc params diff`` and ``dvc metrics diff``; the curves are drawn from the
dvclive TSVs of both revisions, read through ``dvc.api.open`` (git- or DVC-tracked alike).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from dvc.api import open as dvc_open  # noqa: E402

from ptft.pipeline.params import UserError  # noqa: E402

# The metrics a reviewer looks at first, always shown (the rest only where they changed).
HEADLINE = {
    "reports/test/metrics.json": ("accuracy", "macro_f1"),
    "reports/evaluate/metrics.json": ("accuracy", "macro_f1"),
    "reports/pretrain/metrics.json": ("perplexity", "eval_loss"),
}
CURVES = {
    "pretrain_loss": ("Pre-training loss (masked LM)", "reports/pretrain/plots/metrics"),
    "finetune_loss": ("Fine-tuning loss", "reports/finetune/plots/metrics"),
}
CONFUSION = "reports/test/confusion.png"


class ReportError(UserError):
    """DVC could not compare the workspace with the base revision."""


def _dvc_json(*args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "dvc", *args, "--json"], capture_output=True, text=True)
    if result.returncode:
        raise ReportError(f"dvc {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return json.loads(result.stdout or "{}")


def _number(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def params_table(base: str) -> str:
    """The params that differ from ``base``: key, old, new."""
    diff = _dvc_json("params", "diff", base)
    rows = [f"| `{key}` | {_number(change.get('old'))} | {_number(change.get('new'))} |"
            for path in diff.values() for key, change in path.items()]
    if not rows:
        return "No param changed."
    return "\n".join(["| param | old | new |", "| --- | --- | --- |", *rows])


def metrics_table(base: str) -> str:
    """Headline metrics always, other metrics where they changed: old, new and the change."""
    diff = _dvc_json("metrics", "diff", base, "--all")
    headline, other = [], []
    for path, metrics in diff.items():
        for key, change in metrics.items():
            old, new, delta = change.get("old"), change.get("new"), change.get("diff")
            row = (f"| `{path.removeprefix('reports/').removesuffix('/metrics.json')}` | `{key}` | "
                   f"{_number(old)} | {_number(new)} | {'—' if delta is None else f'{delta:+.4g}'} |")
            if key in HEADLINE.get(path, ()):
                headline.append(row)
            elif delta not in (None, 0):
                other.append(row)
    header = ["| stage | metric | old | new | change |", "| --- | --- | --- | --- | --- |"]
    table = "\n".join(header + headline)
    if other:
        table += ("\n\n<details><summary>Other metrics that changed</summary>\n\n"
                  + "\n".join(header + other) + "\n\n</details>")
    return table


def _curve(path: str, rev: str | None) -> pd.DataFrame | None:
    try:
        with dvc_open(path, rev=rev) as f:
            return pd.read_csv(io.StringIO(f.read()), sep="\t")
    except Exception:  # noqa: BLE001 - missing at that revision (a new plot, or a first run)
        return None


def plot_curves(base: str, out_dir: Path) -> list[tuple[str, str]]:
    """One PNG per loss curve, base dashed and workspace solid; returns (title, file name) pairs."""
    written = []
    for name, (title, directory) in CURVES.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for split, colour in (("train", "tab:blue"), ("eval", "tab:orange")):
            for rev, style, label in ((base, "--", base), (None, "-", "this change")):
                curve = _curve(f"{directory}/{split}/loss.tsv", rev)
                if curve is not None:
                    ax.plot(curve["step"], curve["loss"], style, color=colour, label=f"{split}, {label}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / f"{name}.png", dpi=100, metadata={"Software": None})
        plt.close(fig)
        written.append((title, f"{name}.png"))
    return written


def build_report(base: str, out_dir: str | Path) -> str:
    """Write ``report.md`` and its PNGs into ``out_dir``; return the markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        f"## ptft: this change against `{base}`",
        "### Params\n\n" + params_table(base),
        "### Metrics\n\n" + metrics_table(base),
        "### Plots\n\n" + "\n\n".join(f"![{title}]({file})" for title, file in plot_curves(base, out_dir)),
    ]
    if Path(CONFUSION).is_file():
        (out_dir / "confusion.png").write_bytes(Path(CONFUSION).read_bytes())
        sections[-1] += "\n\n![Test confusion matrix](confusion.png)"
    markdown = "\n\n".join(sections) + "\n"
    (out_dir / "report.md").write_text(markdown)
    return markdown
