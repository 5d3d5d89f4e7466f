"""Model cards (README.md in Hugging Face model-card style) for the saved models."""

from __future__ import annotations

from typing import Any

import yaml


def _table(rows: dict[str, Any]) -> str:
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| `{key}` | {value:.4g} |" if isinstance(value, float) else f"| `{key}` | {value} |"
              for key, value in rows.items()]
    return "\n".join(lines)


def _flatten(block: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in block.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def model_card(title: str, summary: str, pipeline_tag: str, params: dict[str, Any], metrics: dict[str, Any],
               usage: str) -> str:
    """A model card: front matter for the Hub, what the model is, the params that made it, its metrics."""
    front = yaml.safe_dump({"library_name": "transformers", "pipeline_tag": pipeline_tag, "tags": ["ptft"]},
                           sort_keys=False)
    return (
        f"---\n{front}---\n\n# {title}\n\n{summary}\n\n"
        f"## Usage\n\n```python\n{usage.strip()}\n```\n\n"
        f"## Params\n\n{_table(_flatten(params))}\n\n"
        f"## Metrics\n\n{_table(_flatten(metrics))}\n\n"
        "Rebuild with `dvc repro` in the ptft repository at the commit that produced this model.\n"
    )
