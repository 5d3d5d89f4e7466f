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
    source, env = lineage["source"], lineage["environment"]
    if source["commit"] is None:
        built = "Built outside a git checkout."
    elif source["dirty"]:
        built = f"Built from uncommitted changes to the stage's code, on top of commit `{source['commit']}`."
    else:
        built = f"Built from commit `{source['commit']}` (the last commit that changed the stage's code)."
    versions = ", ".join(f"{name} {version}" for name, version in env["packages"].items() if version)
    rebuild = (f"```bash\n{lineage['rebuild']}\n```" if lineage["rebuild"] else
               "No commit holds the code that built it; `ptft lineage` finds the commit once one does.")
    return (f"{built} Stage `{lineage['stage']}`, on {env['device']} with {env['threads']} threads, "
            f"Python {env['python']}, {versions}.\n\nRebuild it bit for bit (same hardware, software and "
            f"thread count):\n\n{rebuild}\n\n`ptft lineage <this directory>` prints the whole chain back to "
            f"the raw corpus; `lineage.json` holds the same in machine-readable form.")


def model_card(title: str, summary: str, pipeline_tag: str, usage: str, lineage: dict[str, Any]) -> str:
    """A model card: front matter for the Hub, what the model is, how to use it, and where it came from."""
    front = yaml.safe_dump({"library_name": "transformers", "pipeline_tag": pipeline_tag, "tags": ["ptft"]},
                           sort_keys=False)
    return (
        f"---\n{front}---\n\n# {title}\n\n{summary}\n\n"
        f"## Usage\n\n```python\n{usage.strip()}\n```\n\n"
        f"## Metrics\n\n{_table(('metric', 'value'), flatten(lineage['metrics']))}\n\n"
        f"## Params\n\n{_table(('param', 'value'), flatten(lineage['params']))}\n\n"
        f"## Lineage\n\n{_source(lineage)}\n\n"
        f"### Inputs (DVC md5)\n\n{_table(('path', 'md5'), lineage['deps'])}\n"
    )
