"""Model cards (README.md in Hugging Face model-card style) for the saved models."""

from __future__ import annotations

from typing import Any

import yaml

from ptft.pipeline.lineage import flatten


def _table(header: tuple[str, str], rows: dict[str, Any]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| `{key}` | {value:.4g} |" if isinstance(value, float) else f"| `{key}` | {value} |"
              for key, value in rows.items()]
    return "\n".join(lines)


def _source(lineage: dict[str, Any]) -> str:
    env = lineage["environment"]
    versions = ", ".join(f"{name} {version}" for name, version in env["packages"].items() if version)
    return (f"Built by the stage `{lineage['stage']}` with {env['threads']} threads, Python {env['python']}, "
            f"{versions}.\n\n`ptft lineage <this directory>` prints the whole chain back "
            "to the raw corpus, finds the commit (or experiment) whose `dvc.lock` records this directory's hash, "
            "and prints the command that rebuilds it bit for bit (same software and thread count; see ptft's "
            "docs/reproducibility.md for which machines agree). "
            "`lineage.json` holds the params, input hashes and environment in machine-readable form.")


def model_card(title: str, summary: str, pipeline_tag: str, usage: str, lineage: dict[str, Any],
               library_name: str = "transformers") -> str:
    """A model card: front matter for the Hub, what the model is, how to use it, and where it came from."""
    front = yaml.safe_dump({"library_name": library_name, "pipeline_tag": pipeline_tag, "tags": ["ptft"]},
                           sort_keys=False)
    return (
        f"---\n{front}---\n\n# {title}\n\n{summary}\n\n"
        f"## Usage\n\n```python\n{usage.strip()}\n```\n\n"
        f"## Metrics\n\n{_table(('metric', 'value'), flatten(lineage['metrics']))}\n\n"
        f"## Params\n\n{_table(('param', 'value'), flatten(lineage['params']))}\n\n"
        f"## Lineage\n\n{_source(lineage)}\n\n"
        f"### Inputs (DVC md5)\n\n{_table(('path', 'md5'), lineage['deps'])}\n"
    )
