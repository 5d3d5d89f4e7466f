"""The parts of the docs site that would go stale if typed by hand, generated at build time.

mkdocs-gen-files runs this script during `properdocs build` / `properdocs serve` (see mkdocs.yml). It

- writes ``reference/params.md``: one table per params block (key, type, default, allowed values, meaning),
  from the pydantic schema in ``src/ptft/pipeline/schema.py`` (types, ranges, choices, each field's
  ``description`` and each block's docstring) and the defaults in ``params.yaml``. A field without a
  description, or a block without a docstring, fails the build;
- expands three kinds of placeholder in every page, from the committed files, so that what a report holds is
  never copied into a page:

  ``{{ insert: PATH }}`` (alone on a line)
      a block: a report's or benchmark's Markdown (``reports/compare/results.md``, ``benchmarks/results/*.md``:
      its title becomes a source line and its headings nest under the page's current heading), a figure
      (``reports/**.png``, copied into the site), a command sample (``samples/*.txt``, a text block, or
      ``samples/*.md``, written by ``docs/samples.py``) or a table or example built here (``built/<name>``,
      see BUILT);
  ``{{ SOURCE.KEY.PATH }}`` or ``{{ SOURCE.KEY.PATH:FORMAT }}`` (inline)
      one value from a report or benchmark (SOURCES; list items by index), or a value computed from them
      (``gain.<arm>.<budget>.<metric>``: the pre-trained arm's mean test score minus that arm's;
      ``prepare.kept``: the documents in the three splits; ``finetune.parameters``: the classifier's, trainable and
      frozen); ``{{ A - B }}`` is a difference of two values.
      Floats print with 3 decimals, integers with thousands separators, ``{mean, std}`` pairs as
      ``0.922 ± 0.002`` (any FORMAT, a Python format spec, applies to the mean); FORMAT ``M`` or ``k`` writes a
      count in millions or thousands (``1.7M``, ``744k``), ``min`` and ``ms`` a number of seconds in whole minutes
      or in milliseconds;
  ``{{ params: STAGE }}`` (inline)
      the params dvc.yaml lists for STAGE, as code spans (``block.*`` for a whole block). Every stage of
      dvc.yaml must appear in some page, so the stage table cannot miss one.

  An unknown placeholder, path, key or stage fails the build with one line naming it.

README.md is shown by GitHub as it is, not built, so its measured numbers are typed, each followed by the
placeholder it equals in an HTML comment (hidden on GitHub): ``16<!-- {{ pipeline_time.minutes.main }} --> minutes``.
tests/test_docs.py fails on a number there that differs from its placeholder, and on a measurement typed anywhere
in README.md or docs/*.md without one; after a new run, ``python docs/gen_pages.py --readme`` rewrites README.md's
numbers in place.

Why not pymdownx.snippets: gen-files' pages are virtual (a temporary directory known only during the build)
while snippets reads fixed paths on disk, and the reports need reshaping (their headings nested) anyway.
"""

from __future__ import annotations

import json
import posixpath
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Inline values: {{ test.accuracy }} reads "accuracy" from reports/test/metrics.json.
SOURCES = {
    "prepare": "reports/prepare/stats.json",
    "prepare_corpus": "reports/prepare_corpus/stats.json",
    "pretrain": "reports/pretrain/metrics.json",
    "finetune": "reports/finetune/metrics.json",
    "evaluate": "reports/evaluate/metrics.json",
    "test": "reports/test/metrics.json",
    "export": "reports/export/metrics.json",
    "compare": "reports/compare/results.json",
    "gains": "reports/compare/metrics.json",
    "throughput": "benchmarks/results/throughput.json",
    "corpus_benchmark": "benchmarks/results/corpus.json",
    "serve": "benchmarks/results/serve.json",
    "serve_install": "benchmarks/results/serve_install.json",
    "pretraining_text": "benchmarks/results/pretraining_text.json",
    "search": "benchmarks/results/search.json",
    "kernels": "benchmarks/results/kernels.json",
    "cross_cpu": "benchmarks/results/cross_cpu.json",
    "pipeline_time": "benchmarks/results/pipeline_time.json",
    "recipes": "benchmarks/results/recipes.json",
    "rebuild": "benchmarks/results/rebuild.json",
    "electra_probe": "benchmarks/results/electra_probe.json",
}
# Markdown files a page may insert whole, and where figures may come from.
INSERTABLE = ("reports/", "benchmarks/results/")

INSERT = re.compile(r"^\{\{ insert: (?P<path>\S+) \}\}$", re.M)
PARAMS = re.compile(r"\{\{ params: (?P<stage>[\w-]+) \}\}")
VALUE = re.compile(r"(?<!\$)\{\{ (?P<name>[A-Za-z_][\w.@+-]*)(?: - (?P<minus>[A-Za-z_][\w.@+-]*))?"
                   r"(?::(?P<format>[^\s}]+))? \}\}")
LEFTOVER = re.compile(r"(?<!\$)\{\{ [^}]*\}\}")


class DocsError(ValueError):
    """A page or the schema asks for something this script cannot generate; the message names it."""


# ---- the params reference ------------------------------------------------------------------------------------


def _is_block(annotation: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _constraints(metadata: list[Any]) -> tuple[list[str], list[str], str | None]:
    """(bounds, other notes, the type a validator returns) from a field's or an Annotated's metadata."""
    bounds, notes, returns = [], [], None
    for item in metadata:
        name = type(item).__name__
        if name == "FieldInfo":  # Annotated[int, Field(gt=0)] nested in a union or a list
            inner = _constraints(item.metadata)
            bounds, notes, returns = bounds + inner[0], notes + inner[1], returns or inner[2]
        elif name in ("Gt", "Ge", "Lt", "Le"):
            symbol = {"Gt": ">", "Ge": "≥", "Lt": "<", "Le": "≤"}[name]
            bounds.append(f"{symbol} {getattr(item, name.lower())}")
        elif name == "MinLen":
            notes.append("non-empty" if item.min_length == 1 else f"at least {item.min_length} long")
        elif name == "MaxLen":
            notes.append(f"at most {item.max_length} long")
        elif name == "AfterValidator":
            func = item.func
            returns = func.__annotations__.get("return")
            returns = returns if isinstance(returns, str) else getattr(returns, "__name__", None)
            doc = (func.__doc__ or "").strip().splitlines()
            if doc:
                notes.append(doc[0].rstrip("."))
    return bounds, notes, returns


def describe_type(annotation: Any, metadata: list[Any] = ()) -> tuple[str, str]:
    """The type of a schema field as params.yaml spells it, and its allowed values (Literal choices, bounds,
    null, a validator's docstring), looking through Annotated, unions, Literal, list and dict."""
    bounds, notes, returns = _constraints(list(metadata))
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type(args[0], [*metadata, *annotation.__metadata__])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        nullable = len(members) < len(args)
        described = [describe_type(member) for member in members]
        name = " | ".join(d[0] for d in described) + (" | null" if nullable else "")
        allowed = "; ".join(d[1] for d in described if d[1])
        notes_text = "; ".join(filter(None, [allowed, *_bounds_text(bounds), *notes]))
        if nullable:
            return name, f"{notes_text}; or `null`" if notes_text else "any, or `null`"
        return name, notes_text
    if origin is typing.Literal:
        choices = list(args)
        name = type(choices[0]).__name__
        allowed = " or ".join(f"`{c}`" for c in choices) if len(choices) <= 2 else \
            "one of " + ", ".join(f"`{c}`" for c in choices)
        return name, "; ".join([allowed, *notes])
    if origin is list:
        item_name, item_allowed = describe_type(args[0]) if args else ("any", "")
        name = f"list[{item_name}]"
        return name, "; ".join(filter(None, [*notes, f"each: {item_allowed}" if item_allowed else ""]))
    if origin is dict:
        value = describe_type(args[1])[0] if len(args) == 2 else "any"
        name = "mapping" if value == "any" else f"mapping of {value}"
        return name.replace("mapping of mapping", "mapping of mappings"), "; ".join(notes)
    if _is_block(annotation):
        return "block", ""
    if annotation is typing.Any:
        name = returns or "any"
    else:
        name = getattr(annotation, "__name__", str(annotation))
    return name, "; ".join(filter(None, [*_bounds_text(bounds), *notes]))


def _bounds_text(bounds: list[str]) -> list[str]:
    return [" and ".join(bounds)] if bounds else []


def _yaml(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def _md_text(text: str) -> str:
    """Plain text (a description, a docstring) made safe for a table cell: pipes, angle brackets and stars
    outside code spans are escaped, line breaks joined."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    escape = str.maketrans({"|": r"\|", "<": "&lt;", "*": r"\*"})
    return "".join(part if part.startswith("`") else part.translate(escape) for part in parts)


def _code(text: str) -> str:
    return f"``{text}``" if "`" in text else f"`{text}`"


def _row(key: str, field: Any, default: Any, missing: dict[str, list[str]], more: str = "") -> str:
    description = " ".join((field.description or "").split())  # a docstring may wrap
    if not description:
        missing["fields"].append(key)
    description = description or more  # a nested block (data.splits): its field's description, else its docstring
    type_name, allowed = describe_type(field.annotation, field.metadata)
    cells = [_code(key), _code(type_name), _code(_yaml(default)), allowed or "—", _md_text(description)]
    return f"| {' | '.join(cells)} |"


def _docstring(block: type, missing: dict[str, list[str]]) -> str:
    doc = " ".join((block.__doc__ or "").split())  # the class's own: __doc__ is not inherited by subclasses
    if not doc:
        missing["blocks"].append(block.__name__)
    return doc


def _rows(block: type, values: dict[str, Any], prefix: str, missing: dict[str, list[str]]) -> list[str]:
    rows = []
    for name, field in block.model_fields.items():
        default = values.get(name, "(not in params.yaml)")
        nested = _is_block(field.annotation)  # a block inside a block (data.splits): its docstring, then its keys
        rows.append(_row(f"{prefix}{name}", field, default, missing, _docstring(field.annotation, missing) if nested
                         else ""))
        if nested:
            rows += _rows(field.annotation, default if isinstance(default, dict) else {}, f"{prefix}{name}.", missing)
    return rows


HEADER = ["| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]


def params_reference(params_model: type, params: dict[str, Any], readers: dict[str, list[str]] | None = None) -> str:
    """The params reference page: a table of the top-level keys, then one table per block, in the schema's order.

    ``readers`` maps a params.yaml top-level key to the dvc.yaml stages that read some of it.
    Raises DocsError naming every field without a description and every block without a docstring.
    """
    readers = readers or {}
    missing: dict[str, list[str]] = {"fields": [], "blocks": []}
    top = {name: field for name, field in params_model.model_fields.items() if not _is_block(field.annotation)}
    lines = ["# Params reference", "",
             "Every key of `params.yaml`: its type and allowed values as the schema "
             "(`src/ptft/pipeline/schema.py`) checks them before any stage starts, its default (the value in "
             "`params.yaml`), and what it does. This page is generated from the schema and `params.yaml` when "
             "the site is built; change those, not this page. Change a key for one run with "
             "`dvc exp run -S key=value` ([Experiments](../experiments.md)); `dvc.yaml` lists per stage exactly "
             "the keys it reads ([the stage table](../pipeline.md#what-each-stage-reads-and-writes)).", ""]
    if top:
        lines += ["## Top level", ""]
        stages = list(dict.fromkeys(s for name in top for s in readers.get(name, [])))
        if stages:
            lines += [f"Read by: {', '.join(stages)}.", ""]
        lines += HEADER + [_row(name, field, params.get(name), missing) for name, field in top.items()] + [""]
    for name, field in params_model.model_fields.items():
        if name in top:
            continue
        lines += [f"## {name}", ""]
        doc = _docstring(field.annotation, missing)
        if doc:
            lines += [_md_text(doc), ""]
        if readers.get(name):
            lines += [f"Read by: {', '.join(readers[name])}.", ""]
        lines += HEADER + _rows(field.annotation, params.get(name) or {}, f"{name}.", missing) + [""]
    if missing["fields"] or missing["blocks"]:
        problems = []
        if missing["fields"]:
            problems.append(f"no description for {', '.join(missing['fields'])}: add Field(description=...) to "
                            "each field")
        if missing["blocks"]:
            problems.append(f"no docstring on {', '.join(missing['blocks'])}: add one to each block class")
        raise DocsError(f"params reference: {'; '.join(problems)} in src/ptft/pipeline/schema.py")
    return "\n".join(lines)


def stage_params(dvc_yaml: dict[str, Any]) -> dict[str, list[str]]:
    """Each dvc.yaml stage's params list, as written there ("runtime" for the whole block)."""
    listed = {}
    for stage, spec in dvc_yaml["stages"].items():
        names = []
        for entry in spec.get("do", spec).get("params", []):  # a foreach stage's lists are under do:
            names += [key for keys in entry.values() for key in keys] if isinstance(entry, dict) else [entry]
        listed[stage] = names  # ({other-file.yaml: [keys]} entries: their keys)
    return listed


def readers_by_block(listed: dict[str, list[str]]) -> dict[str, list[str]]:
    readers: dict[str, list[str]] = {}
    for stage, names in listed.items():
        for name in names:
            readers.setdefault(name.split(".")[0], [])
            if stage not in readers[name.split(".")[0]]:
                readers[name.split(".")[0]].append(stage)
    return readers


def format_params(names: list[str], params: dict[str, Any]) -> str:
    """A stage's params as code spans: a whole block as `block.*`."""
    return ", ".join(f"`{name}.*`" if isinstance(params.get(name), dict) else f"`{name}`" for name in names)


# ---- values and tables from the reports ----------------------------------------------------------------------


def _load(path: str) -> Any:
    file = ROOT / path
    if not file.is_file():
        raise DocsError(f"{path} does not exist (it is committed with the results; run the stage or benchmark)")
    return json.loads(file.read_text())


def _walk(data: Any, path: list[str], name: str) -> Any:
    for part in path:
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise DocsError(f"{{{{ {name} }}}}: no '{part}' there")
    return data


def _compare_mean(compare: dict[str, Any], arm: str, budget: str, metric: str) -> float:
    for group in ("methods", "variants", "objectives"):
        if arm in compare.get(group, {}):
            cell = compare[group][arm]
            cell = cell.get(budget, cell) if group == "methods" else cell
            return cell[f"test_{metric}"]["mean"]
    raise DocsError(f"gain: no arm '{arm}' in reports/compare/results.json")


def value(name: str) -> Any:
    """The value a ``{{ name }}`` placeholder stands for."""
    source, *path = name.split(".")
    if source == "gain":  # gain.<arm>.<budget>.<metric>: pretrained minus that arm, test split
        if len(path) != 3:
            raise DocsError(f"{{{{ {name} }}}}: write gain.<arm>.<budget>.<accuracy|macro_f1>")
        arm, budget, metric = path
        compare = _load(SOURCES["compare"])
        try:
            return _compare_mean(compare, "pretrained", budget, metric) - _compare_mean(compare, arm, budget, metric)
        except KeyError as err:
            raise DocsError(f"{{{{ {name} }}}}: no {err} in reports/compare/results.json") from None
    if source == "prepare" and path == ["kept"]:  # documents in the three splits
        return sum(split["documents"] for split in _load(SOURCES["prepare"])["splits"].values())
    if source == "finetune" and path == ["parameters"]:  # the classifier's, trainable and frozen
        finetune = _load(SOURCES["finetune"])
        return finetune["trainable_parameters"] + finetune["frozen_parameters"]
    if source not in SOURCES:
        raise DocsError(f"{{{{ {name} }}}}: unknown source '{source}'; known: gain, {', '.join(SOURCES)}")
    return _walk(_load(SOURCES[source]), path, name)


def _number(data: Any, name: str) -> float:
    if isinstance(data, dict) and "mean" in data:
        data = data["mean"]
    if not isinstance(data, int | float) or isinstance(data, bool):
        raise DocsError(f"{{{{ {name} }}}} is not a number")
    return data


# Formats of a count or a duration beside Python's: 1.7M parameters, 744k tokens; seconds as 13 minutes, as 8.8 ms.
UNIT_FORMATS = {"M": lambda n: f"{n / 1e6:.1f}M", "k": lambda n: f"{n / 1e3:.0f}k", "min": lambda s: f"{s / 60:.0f}",
                "ms": lambda s: f"{s * 1e3:.1f}"}


def format_value(data: Any, spec: str | None, name: str) -> str:
    if isinstance(data, dict) and {"mean", "std"} <= set(data):
        if spec in (None, "pm"):
            return f"{data['mean']:.3f} ± {data['std']:.3f}"
        data = data["mean"]
    if isinstance(data, dict | list):
        raise DocsError(f"{{{{ {name} }}}} is not a single value")
    if spec in UNIT_FORMATS:
        return UNIT_FORMATS[spec](_number(data, name))
    if spec:
        return format(data, spec)
    if isinstance(data, bool) or isinstance(data, str):
        return str(data)
    if isinstance(data, int):
        return f"{data:,}"
    if isinstance(data, float):
        return f"{data:.3f}"
    return str(data)


def _mean_std(cell: dict[str, Any]) -> str:
    return f"{cell['mean']:.3f} ± {cell['std']:.3f}"


def export_check_table() -> str:
    """reports/export/metrics.json as a table: each runtime against PyTorch on the validation split."""
    report = _load(SOURCES["export"])
    lines = [f"Validation split, {report['documents']:,} documents (`reports/export/metrics.json`):", "",
             "| runtime | accuracy | macro-F1 | same prediction as PyTorch | largest probability difference "
             "| accuracy change (points) | size (MB) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for runtime in ("pytorch", "onnx", "int8"):
        if runtime not in report:
            continue
        row = report[runtime]
        same = f"{row['same_prediction']:.1%}" if "same_prediction" in row else "—"
        diff = f"{row['max_probability_diff']:.2g}" if "max_probability_diff" in row else "—"
        change = f"{row['accuracy_change_points']:+.2f}" if "accuracy_change_points" in row else "—"
        name = {"pytorch": "PyTorch (`models/finetuned`)", "onnx": "ONNX (`model.onnx`)",
                "int8": "int8 ONNX (`model.int8.onnx`)"}[runtime]
        lines.append(f"| {name} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | {same} | {diff} | {change} "
                     f"| {row['size_mb']:.2f} |")
    return "\n".join(lines)


def per_class_table() -> str:
    """The test split's per-class scores (reports/test/by_label.json) and headline (reports/test/metrics.json)."""
    report = _load(SOURCES["test"])
    lines = ["| class | precision | recall | F1 | documents |", "| --- | --- | --- | --- | --- |"]
    for label, row in _load("reports/test/by_label.json").items():
        lines.append(f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} "
                     f"| {row['support']:,} |")
    lines.append(f"| **all** (accuracy {report['accuracy']:.3f}) | | | **{report['macro_f1']:.3f}** (macro) "
                 f"| {report['documents']:,} |")
    return "\n".join(lines)


def pretraining_text_table() -> str:
    """benchmarks/results/pretraining_text.json's rows, then the default pipeline's own comparison as the last row
    (the whole train split as pre-training text), all as test accuracy."""
    bench = _load(SOURCES["pretraining_text"])["size"]
    compare, corpus = _load(SOURCES["compare"]), _load(SOURCES["prepare_corpus"])
    arms, budgets = ("pretrained", "scratch", "tfidf"), ("25", "100")
    header = [f"{arm if arm != 'tfidf' else 'TF-IDF'} @{b}" for b in budgets for arm in arms]
    lines = ["| pre-training text | documents | tokens | " + " | ".join(header) + " |",
             "| --- " * (3 + len(header)) + "|"]
    for row in bench["rows"]:
        cells = [_mean_std(row["accuracy"][arm][b]) for b in budgets for arm in arms]
        lines.append(f"| {row['fraction']} of train | {row['documents']:,} | {row['tokens']:,} | "
                     + " | ".join(cells) + " |")
    cells = [_mean_std(compare["methods"][arm][b]["test_accuracy"]) for b in budgets for arm in arms]
    lines.append(f"| all of train (the default) | {corpus['documents']:,} | {corpus['tokens']:,} | "
                 + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_time_table() -> str:
    """The comparison's share of benchmarks/results/pipeline_time.json: each dvc.yaml stage's cells (a foreach
    stage's, or its one) with their summed wall time, and the total."""
    timing = _load(SOURCES["pipeline_time"])
    groups: dict[str, list[float]] = {}
    for stage, row in timing["stages"].items():
        if "@" in stage or stage.startswith("compare_"):  # the comparison's stages, as pipeline_time.py counts them
            groups.setdefault(stage.split("@")[0], []).append(row["wall_seconds"])
    total = sum(map(sum, groups.values()))
    if round(total, 2) != timing["totals"]["comparison"]:
        raise DocsError(f"{SOURCES['pipeline_time']}: the comparison's stages add up to {total:.2f} s, not its "
                        f"totals.comparison; rerun `python benchmarks/pipeline_time.py`")
    lines = ["| stage | cells | seconds | minutes |", "| --- | --- | --- | --- |"]
    lines += [f"| {stage} | {len(times)} | {sum(times):,.0f} | {sum(times) / 60:.1f} |"
              for stage, times in groups.items()]
    lines.append(f"| **all** | {sum(map(len, groups.values()))} | {total:,.0f} | {total / 60:.1f} |")
    return "\n".join(lines)


def params_error_example() -> str:
    """What a stage prints for a misspelt key, from the schema's own check: `finetune.lr` written `learnig_rate`."""
    from ptft.pipeline.params import ParamsError, check_params

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["finetune"]["learnig_rate"] = params["finetune"].pop("lr")
    try:
        check_params(params)
    except ParamsError as err:
        return f"```text\nfinetune: error: {err}\n```"  # as ptft.pipeline.stage prints a user error
    raise DocsError("params.yaml with finetune.lr misspelt passed the schema check")


BUILT = {"export-check": export_check_table, "test-per-class": per_class_table,
         "pretraining-text": pretraining_text_table, "comparison-time": comparison_time_table,
         "params-error": params_error_example}


def _nested_markdown(path: str, parent: int) -> str:
    """A committed report's Markdown, its title turned into a source line and its headings nested under a heading
    of level ``parent`` (its ``##`` becomes one level below that)."""
    text = (ROOT / path).read_text()
    lines, out = text.strip().splitlines(), []
    for line in lines:
        heading = re.match(r"^(#+) (.*)$", line)
        if heading and len(heading[1]) == 1:
            out.append(f"*From `{path}`: {heading[2]}*")
        elif heading:
            out.append(f"{'#' * min(6, len(heading[1]) - 1 + parent)} {heading[2]}")
        else:
            out.append(line)
    return "\n".join(out)


def _heading_level_before(text: str, position: int) -> int:
    """The level of the last heading above ``position`` (outside code blocks), 1 if none."""
    level, fenced = 1, False
    for line in text[:position].splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^(#+) ", line)):
            level = len(match[1])
    return level


def insert(path: str, page: str, text: str, position: int, copy_file) -> str:
    """The block that ``{{ insert: path }}`` on ``page`` stands for."""
    if path.startswith("built/"):
        if path[6:] not in BUILT:
            raise DocsError(f"{page}: {{{{ insert: {path} }}}}: nothing of that name; known: {', '.join(BUILT)}")
        return BUILT[path[6:]]()
    if path.startswith("samples/"):
        file = DOCS / path
        if not file.is_file():
            raise DocsError(f"{page}: {{{{ insert: {path} }}}}: docs/{path} does not exist; `python docs/samples.py` "
                            "writes it")
        sample = file.read_text().rstrip("\n")
        return sample if path.endswith(".md") else f"```text\n{sample}\n```"
    if not path.startswith(INSERTABLE) or not (ROOT / path).is_file():
        raise DocsError(f"{page}: {{{{ insert: {path} }}}}: not a committed file under {' or '.join(INSERTABLE)}")
    if path.endswith(".md"):
        return _nested_markdown(path, _heading_level_before(text, position))
    if path.endswith(".png"):
        target = f"generated/{path}"
        copy_file(ROOT / path, target)
        relative = posixpath.relpath(target, posixpath.dirname(page) or ".")
        return f"![{Path(path).stem.replace('_', ' ')}]({relative})"
    raise DocsError(f"{page}: {{{{ insert: {path} }}}}: only .md and .png files can be inserted")


def expand_value(match: re.Match) -> str:
    """What an inline value placeholder (a match of VALUE) stands for."""
    if match["minus"]:  # a difference of two values (of their means, for {mean, std} pairs)
        first, second = (_number(value(name), name) for name in (match["name"], match["minus"]))
        return format_value(first - second, match["format"], f"{match['name']} - {match['minus']}")
    return format_value(value(match["name"]), match["format"], match["name"])


def expand(page: str, text: str, stage_names: dict[str, str], copy_file, used_stages: set[str]) -> str:
    """A page's placeholders replaced by what they stand for."""
    def block(match: re.Match) -> str:
        return insert(match["path"], page, text, match.start(), copy_file)

    def params(match: re.Match) -> str:
        if match["stage"] not in stage_names:
            raise DocsError(f"{page}: {{{{ params: {match['stage']} }}}}: no such stage in dvc.yaml")
        used_stages.add(match["stage"])
        return stage_names[match["stage"]]

    def inline(match: re.Match) -> str:
        try:
            return expand_value(match)
        except DocsError as err:
            raise DocsError(f"{page}: {err}") from None

    text = INSERT.sub(block, text)
    text = PARAMS.sub(params, text)
    text = VALUE.sub(inline, text)
    if leftover := LEFTOVER.search(text):
        raise DocsError(f"{page}: '{leftover[0]}' is not a placeholder this script knows (see docs/gen_pages.py)")
    return text


# ---- README.md's numbers ------------------------------------------------------------------------------------

# GitHub shows README.md as it is, so a placeholder there would show: each measured number is typed, followed by
# the placeholder it must equal in an HTML comment, which GitHub hides: `16<!-- {{ pipeline_time.minutes.main }} -->`.
README_VALUE = re.compile(r"(?P<typed>[+-]?\d[\d,]*(?:\.\d+)?(?: ± \d[\d,]*(?:\.\d+)?)?[%kM]?)"
                          r"<!-- (?P<placeholder>\{\{ [^}]* \}\}) -->")


def readme_values(text: str) -> list[tuple[int, re.Match, str]]:
    """Each typed number of README.md that a placeholder comment follows: (its line, the match, what the
    placeholder expands to now)."""
    found = []
    for match in README_VALUE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        placeholder = VALUE.fullmatch(match["placeholder"])
        if placeholder is None:
            raise DocsError(f"README.md:{line}: '{match['placeholder']}' is not an inline value placeholder")
        try:
            found.append((line, match, expand_value(placeholder)))
        except DocsError as err:
            raise DocsError(f"README.md:{line}: {err}") from None
    return found


def refresh_readme(path: Path = ROOT / "README.md") -> list[str]:
    """Rewrites README.md's typed numbers to what their placeholder comments expand to; returns the changes."""
    text = path.read_text()
    changes, parts, end = [], [], 0
    for line, match, expected in readme_values(text):
        if match["typed"] != expected:
            changes.append(f"README.md:{line}: {match['typed']} -> {expected} ({match['placeholder']})")
        parts += [text[end:match.start("typed")], expected]
        end = match.end("typed")
    if changes:
        path.write_text("".join(parts) + text[end:])
    return changes


def refresh_readme_command() -> None:
    """`python docs/gen_pages.py --readme`: README.md's numbers brought up to date after a new run."""
    import argparse

    parser = argparse.ArgumentParser(prog="python docs/gen_pages.py", description=refresh_readme_command.__doc__)
    parser.add_argument("--readme", action="store_true", required=True,
                        help="rewrite each number typed before a {{ placeholder }} comment in README.md")
    parser.parse_args()
    try:
        changes = refresh_readme()
    except DocsError as err:
        raise SystemExit(f"docs/gen_pages.py: {err}") from None
    print("\n".join(changes) if changes else "README.md: every number already equals its placeholder")


def main() -> None:
    try:
        generate()
    except DocsError as err:  # one line, no traceback: gen-files reports a SystemExit as the build's error
        raise SystemExit(f"docs/gen_pages.py: {err}") from None


def generate() -> None:
    import mkdocs_gen_files

    from ptft.pipeline.schema import Params

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    listed = stage_params(dvc_yaml)
    with mkdocs_gen_files.open("reference/params.md", "w") as page:
        page.write(params_reference(Params, params, readers_by_block(listed)))

    def copy_file(source: Path, target: str) -> None:
        with mkdocs_gen_files.open(target, "wb") as out:
            out.write(source.read_bytes())

    stage_names = {stage: format_params(names, params) for stage, names in listed.items()}
    used_stages: set[str] = set()
    editor = mkdocs_gen_files.FilesEditor.current()
    pages = [f.src_uri for f in editor.files if f.is_documentation_page() and not f.inclusion.is_excluded()]
    for page in pages:
        with mkdocs_gen_files.open(page, "r") as source:
            text = source.read()
        expanded = expand(page, text, stage_names, copy_file, used_stages)
        if expanded != text:
            with mkdocs_gen_files.open(page, "w") as out:
                out.write(expanded)
    if missing := [stage for stage in listed if stage not in used_stages]:
        raise DocsError(f"dvc.yaml's stages {missing} are in no page's {{{{ params: STAGE }}}}; add them to the "
                        "stage table in docs/pipeline.md")


# mkdocs-gen-files runs this file with runpy.run_path, whose __name__ is "<run_path>"; tests import it instead.
if __name__ == "<run_path>":
    main()
elif __name__ == "__main__":
    refresh_readme_command()
