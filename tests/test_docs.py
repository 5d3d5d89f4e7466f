"""The docs: the site builds with --strict, its generated parts hold every param and the reports' own numbers, the
README's headline table is the comparison report's, no measured number in README.md or docs/*.md is typed by hand,
and the committed command samples have the shape the current code prints (end to end)."""

from __future__ import annotations

import html
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import yaml
from pydantic import AfterValidator, BaseModel, Field

from tests.conftest import ROOT, run


def _load(name: str):
    """A script under docs/ as a module (imported, so gen_pages.py does not run its build-time main)."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_pages = _load("gen_pages")
samples = _load("samples")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as CI builds it: `properdocs build --strict` from the repository root (a broken link or anchor, a
    missing page, a nav entry to nothing or a schema field without a description fails it)."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "properdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"properdocs build --strict failed:\n{result.stdout}\n{result.stderr[-5000:]}"
    # Quiet, as a user sees it: no banner from a plugin's dependency, no warning.
    assert "WARNING" not in result.stderr and "MkDocs 2" not in result.stderr, result.stderr
    return out


def page_text(site: Path, page: str) -> str:
    """A built page's text, tags dropped and whitespace collapsed."""
    text = (site / page / "index.html").read_text() if page else (site / "index.html").read_text()
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def report(path: str) -> Any:
    return json.loads((ROOT / path).read_text())


def test_the_site_builds_strict(site):
    for page in ("", "getting-started", "data", "pipeline", "experiments", "pull-requests", "reproducibility",
                 "deploy", "results", "speed", "layout", "reference/params"):
        assert (site / page / "index.html").is_file(), page
    assert (site / "generated/reports/compare/learning_curve.png").is_file()
    assert not (site / "gen_pages.py").exists() and not (site / "samples").exists()  # scripts, not pages


def leaf_keys(params: dict[str, Any], model: type[BaseModel], prefix: str = "") -> list[str]:
    """params.yaml's keys as dotted paths, down to the schema's leaves. A value the schema types as a free-form
    mapping (compare.variant_settings and the other *_settings) is one key: its entries are the user's data (arm
    names, overrides of another block's keys), documented by that key's row and default, not keys of the schema."""
    keys = []
    for name, value in params.items():
        field = model.model_fields[name]  # an unknown key would fail the schema check itself
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += leaf_keys(value, field.annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_the_params_reference_lists_every_key_of_params_yaml(site):
    from ptft.pipeline.schema import Params

    page = (site / "reference/params/index.html").read_text()
    keys = leaf_keys(yaml.safe_load((ROOT / "params.yaml").read_text()), Params)
    assert {"seed", "runtime.threads", "data.splits.validation", "compare.variant_settings"} <= set(keys)
    missing = [key for key in keys if f"<code>{key}</code>" not in page]
    assert not missing, f"the params reference lacks {missing}"


def test_the_results_numbers_are_the_reports(site):
    test = report("reports/test/metrics.json")
    results = page_text(site, "results")
    assert f"test accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f}" in results
    assert f"{test['accuracy']:.3f} test accuracy" in page_text(site, "")
    gain = report("reports/compare/metrics.json")["pretrained_minus_scratch"]["at_100"]["accuracy"]
    assert f"{gain:+.3f} with 100" in results
    # The comparison's own tables, inserted whole.
    for row in (ROOT / "reports/compare/results.md").read_text().splitlines():
        if row.startswith("| 100 |"):
            assert " ".join(row.replace("|", " ").split()) in results


def comparison_table(text: str) -> list[str]:
    """The first table after the line that names the comparison's headline table."""
    rows = text[text.index("Test accuracy by labelled train examples"):].splitlines()[1:]
    rows = rows[next(i for i, row in enumerate(rows) if row.startswith("|")):]
    return rows[:next((i for i, row in enumerate(rows) if not row.startswith("|")), None)]


def search_table(readme: str) -> list[str]:
    """README.md's table of the measured search."""
    section = readme[readme.index("**Does a hyperparameter search help?**"):]
    return [row for row in section.split("\n\n")[1].splitlines() if row.startswith("|")]


def test_the_readme_headline_is_the_comparison_report():
    """README.md copies the comparison's headline table from reports/compare/results.md; it must not drift."""
    readme = (ROOT / "README.md").read_text()
    assert comparison_table(readme) == comparison_table((ROOT / "reports/compare/results.md").read_text())
    assert "reports/compare/results.md" in readme  # says where it comes from


def test_the_readme_search_table_is_the_search_benchmark():
    """README.md copies the measured search's table from benchmarks/results/search.md; it must not drift."""
    assert search_table((ROOT / "README.md").read_text()) == \
        (ROOT / "benchmarks/results/search.md").read_text().splitlines()


# ---- every number generated ---------------------------------------------------------------------------------

# A measurement typed by hand goes stale with the next run, so the pages' numbers come from reports/ and
# benchmarks/results/ (docs/gen_pages.py's placeholders). Measurement-like: a decimal, a number with a unit of
# time, size, rate or ratio, or a ± pair. A count (2,225 articles, 3 seeds) is not; a setting is a code span.
MEASUREMENT = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?![\w.,]?\d)")  # not in a word, version or address
UNIT = re.compile(r"(?:[kM]|x(?!\s?\d)|\s?×(?!\s?\d)|\s?%|\s?(?:[A-Za-z]+/s|ms|s|seconds?|min|minutes?|hours?"
                  r"|[KMGT]i?B|points?|times))(?!\w)|\s?± ?\d+(?:,\d{3})*(?:\.\d+)?")
# Not measured: spans of the raw page that are not prose (each replaced by spaces, so lines keep their numbers).
NOT_PROSE = re.compile(r"<!--.*?-->|\{\{.*?\}\}|\]\([^)]*\)|https?://\S+|(`+).+?\1", re.S)
ALLOWED = {"Python 3.11": "version"}  # each with why it is no measurement


def typed_numbers(text: str, checked: Sequence[str] = ()) -> list[tuple[int, str]]:
    """(line, number) of each measurement-like number typed in a page's raw Markdown: in prose, and in a code block's
    comments (after `# `), outside placeholders, code spans, HTML comments, link targets and the lines ``checked``
    (tables another test compares with their source)."""
    lines = []
    fenced = False
    for line in text.splitlines():
        if re.match(r"^\s*(```|~~~)", line):
            fenced, line = not fenced, ""
        elif fenced:
            line = line.split(" # ", 1)[1] if " # " in line else ""
        lines.append("" if line in checked else line)
    prose = NOT_PROSE.sub(lambda m: re.sub(r"[^\n]", " ", m[0]), "\n".join(lines))
    for phrase in ALLOWED:
        prose = prose.replace(phrase, " " * len(phrase))
    found = []
    for number, line in enumerate(prose.splitlines(), 1):
        end = 0
        for match in MEASUREMENT.finditer(line):
            unit = UNIT.match(line, match.end())
            if match.start() >= end and (unit or "." in match[0]):  # (the second of a ± pair is in the first's unit)
                found.append((number, line[match.start():unit.end() if unit else match.end()]))
                end = unit.end() if unit else match.end()
    return found


def readme_numbers(readme: str) -> tuple[list[str], str]:
    """README.md's typed numbers checked against their placeholder comments (docs/gen_pages.py): the stale ones, one
    line each, and the README with the checked numbers blanked for typed_numbers."""
    stale = [f"README.md:{line}: {match['typed']} should be {expected} ({match['placeholder']})"
             for line, match, expected in gen_pages.readme_values(readme) if match["typed"] != expected]
    blanked = gen_pages.README_VALUE.sub(lambda m: " " * len(m["typed"]) + m[0][len(m["typed"]):], readme)
    return stale, blanked


def test_every_number_in_the_readme_and_the_docs_comes_from_a_results_file():
    readme = (ROOT / "README.md").read_text()
    # The README's two copied tables are compared whole with their sources by the two tests above.
    checked = comparison_table(readme) + search_table(readme)
    problems, blanked = readme_numbers(readme)
    pages = {"README.md": blanked, **{f"docs/{p.name}": p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}}
    problems += [f"{page}:{line}: {number}" for page, text in pages.items()
                 for line, number in typed_numbers(text, checked if page == "README.md" else ())]
    assert not problems, (
        "numbers typed by hand (a results file in reports/ or benchmarks/results/ must hold each: in docs/*.md put "
        "its placeholder, {{ SOURCE.KEY }} (docs/gen_pages.py); in README.md type it followed by the placeholder in "
        "a comment, 0.966<!-- {{ test.accuracy }} -->, and refresh all of them with `python docs/gen_pages.py "
        "--readme`; or remove the number):\n" + "\n".join(problems))


def test_the_number_check_finds_typed_measurements_and_skips_generated_ones():
    text = ("The comparison took 13 minutes; MiniLM scored 0.954 ± 0.002 at 744k tokens.\n"
            "Generated: {{ pipeline_time.minutes.main }} minutes, `threshold: 0.5`, [the run](run-2.1.md), "
            "<!-- 0.7 -->, Python 3.11, torch 2.13.0, 127.0.0.1, 4×256, x86_64, 2,225 articles, 3 seeds.\n"
            "```bash\ndvc repro --threads 2.5   # 16 minutes\n```\n")
    assert typed_numbers(text) == [(1, "13 minutes"), (1, "0.954 ± 0.002"), (1, "744k"), (4, "16 minutes")]


def test_a_readme_number_must_equal_its_placeholder():
    minutes = gen_pages.value("pipeline_time.minutes.main")
    fresh = f"The model takes {minutes}<!-- {{{{ pipeline_time.minutes.main }}}} --> minutes."
    assert readme_numbers(fresh) == ([], fresh.replace(str(minutes), " " * len(str(minutes)), 1))
    assert typed_numbers(readme_numbers(fresh)[1]) == []
    stale, _ = readme_numbers("Intro.\n" + fresh.replace(str(minutes), str(minutes + 1), 1))
    assert stale == [f"README.md:2: {minutes + 1} should be {minutes} ({{{{ pipeline_time.minutes.main }}}})"]
    assert typed_numbers(f"The model takes {minutes} minutes.") == [(1, f"{minutes} minutes")]


# ---- the generator, on a schema of its own ------------------------------------------------------------------

Positive = Annotated[int, Field(gt=0)]


def _budget(value: Any) -> int | str:
    """A positive number of labelled examples or `all`."""
    return value


class Inner(BaseModel):
    """Names inside a block."""

    train: str = Field(description="the train split's name")
    validation: Annotated[str, Field(min_length=1)] | None = Field(description="null: carve it from train")


class Knobs(BaseModel):
    """A block of knobs."""

    rate: float = Field(gt=0, lt=1, description="a | rate")
    steps: Positive | None = Field(description="or <N> steps")
    kind: Literal["a", "b", "c"] = Field(description="which kind")
    budgets: Annotated[list[Annotated[Any, AfterValidator(_budget)]], Field(min_length=1)] = Field(
        description="label budgets")
    settings: dict[str, dict[str, Any]] = Field(description="overrides per arm")
    names: Inner = Field(description="the splits' names")


class FakeParams(BaseModel):
    seed: int = Field(description="seeds everything")
    knobs: Knobs


FAKE = {"seed": 7, "knobs": {"rate": 0.5, "steps": None, "kind": "b", "budgets": [25, "all"],
                             "settings": {"probe": {"freeze": "all-but-head"}},
                             "names": {"train": "train", "validation": None}}}


def test_the_params_reference_shows_types_ranges_defaults_and_meanings():
    page = gen_pages.params_reference(FakeParams, FAKE, {"seed": ["prepare"], "knobs": ["prepare", "finetune"]})
    rows = {line.split(" | ")[0].strip("|` "): line for line in page.splitlines() if line.startswith("| `")}
    assert rows["seed"] == "| `seed` | `int` | `7` | — | seeds everything |"
    assert rows["knobs.rate"] == r"| `knobs.rate` | `float` | `0.5` | > 0 and < 1 | a \| rate |"
    assert rows["knobs.steps"] == "| `knobs.steps` | `int | null` | `null` | > 0; or `null` | or &lt;N> steps |"
    assert "| one of `a`, `b`, `c` |" in rows["knobs.kind"]
    assert "| `list[int | str]` | `[25, all]` | non-empty; each: A positive number of labelled examples or `all` |" \
        in rows["knobs.budgets"]
    assert "| `mapping of mappings` | `{probe: {freeze: all-but-head}}` |" in rows["knobs.settings"]
    assert "| `str | null` | `null` | non-empty; or `null` |" in rows["knobs.names.validation"]
    assert rows["knobs.names"].endswith("| the splits' names |")  # the field's own description, not repeated
    assert "## knobs\n\nA block of knobs.\n\nRead by: prepare, finetune." in page
    assert gen_pages.describe_type(int | None) == ("int | null", "any, or `null`")  # not a bare "or null"


def test_a_field_without_a_description_fails_the_build(monkeypatch):
    monkeypatch.setattr(Knobs.model_fields["rate"], "description", None)
    monkeypatch.setattr(Inner, "__doc__", None)
    with pytest.raises(gen_pages.DocsError, match=r"no description for knobs\.rate: .*no docstring on Inner"):
        gen_pages.params_reference(FakeParams, FAKE)


def test_the_type_of_every_field_of_the_real_schema_is_described():
    from ptft.pipeline.schema import Params

    for block in Params.model_fields.values():
        fields = block.annotation.model_fields if gen_pages._is_block(block.annotation) else {"": block}
        for field in fields.values():
            name, _ = gen_pages.describe_type(field.annotation, field.metadata)
            assert "any" not in name.split() and "typing" not in name, (field, name)


def test_placeholders_expand_from_the_reports_and_unknown_ones_fail():
    stages = {"finetune": "`seed`, `finetune.*`"}
    used: set[str] = set()
    text = "{{ params: finetune }} | {{ test.accuracy }} | {{ test.documents }} | {{ gain.scratch.100.accuracy:+.2f }}"
    test = report("reports/test/metrics.json")
    compare = report("reports/compare/results.json")["methods"]
    gain = compare["pretrained"]["100"]["test_accuracy"]["mean"] - compare["scratch"]["100"]["test_accuracy"]["mean"]
    assert gen_pages.expand("p.md", text, stages, None, used) == \
        f"`seed`, `finetune.*` | {test['accuracy']:.3f} | {test['documents']:,} | {gain:+.2f}"
    assert used == {"finetune"}
    text = ("{{ prepare_corpus.tokens:k }}, {{ pipeline_time.stages.pretrain.wall_seconds:min }}, "
            "{{ pipeline_time.stages.compare_scratch@25.wall_seconds:.0f }}")  # unit formats; a foreach cell's name
    timing = report("benchmarks/results/pipeline_time.json")["stages"]
    assert gen_pages.expand("p.md", text, stages, None, used) == \
        f"{report('reports/prepare_corpus/stats.json')['tokens'] / 1e3:.0f}k, " \
        f"{timing['pretrain']['wall_seconds'] / 60:.0f}, {timing['compare_scratch@25']['wall_seconds']:.0f}"
    for bad, says in (("{{ test.nothing }}", "no 'nothing'"), ("{{ params: nope }}", "no such stage"),
                      ("{{ insert: built/nope }}", "nothing of that name"), ("{{ what is this }}", "not a placeholder"),
                      ("{{ insert: src/ptft/cli.py }}", "not a committed file under")):
        with pytest.raises(gen_pages.DocsError, match=says):
            gen_pages.expand("p.md", bad, stages, None, set())
    assert gen_pages.expand("p.md", "${{ secrets.TOKEN }}", stages, None, set()) == "${{ secrets.TOKEN }}"


# ---- command samples --------------------------------------------------------------------------------------


def lineage_shape(text: str) -> list[tuple[str, ...]]:
    """What `ptft lineage` prints, less its values: each step, each field's label and keys, each input's path."""
    shape: list[tuple[str, ...]] = []
    field: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("$ ") or not line.strip():
            continue
        if re.match(r"^ {16}\S", line) and field is not None:  # a wrapped field goes on
            field.append(line.strip())
            continue
        if field is not None:
            label, *items = field
            shape.append((label, *re.findall(r"(?:^|, )([\w.\-]+)=", " ".join(items))))
            field = None
        if match := re.match(r"^(\S+): md5 \S+, ", line):
            shape.append(("artifact", match[1]))
        elif match := re.match(r"^(\S+)  <- stage (\S+?)(?::|\s|$)", line):
            shape.append(("step", match[1], match[2]))
        elif match := re.match(r"^    (built with|built on|params|metrics|corpus|init)\s+(.*)$", line):
            field = [match[1], *([] if match[1].startswith("built") else [match[2]])]
        elif match := re.match(r"^      [=!] (\S+)", line):
            shape.append(("input", match[1]))
        elif match := re.match(r"^(    inputs|recorded by|environment|machine)\b", line):
            shape.append((match[1].strip(),))
        elif re.match(r"^    \S", line):  # the restore and rebuild commands, the environment's drift: values
            continue
        else:
            raise AssertionError(f"a line of ptft lineage this test does not know: {line!r}")
    if field is not None:
        label, *items = field
        shape.append((label, *re.findall(r"(?:^|, )([\w.\-]+)=", " ".join(items))))
    return shape


def test_the_lineage_shape_reader_sees_steps_fields_and_inputs():
    sample = (ROOT / "docs/samples/lineage.txt").read_text()
    shape = lineage_shape(sample)
    assert [s[1:] for s in shape if s[0] == "step"] == [
        ("models/finetuned", "finetune"), ("models/pretrained", "pretrain"), ("data/corpus", "prepare_corpus"),
        ("data/prepared", "prepare")]
    params = next(s for s in shape if s[0] == "params")
    assert params[1:3] == ("seed", "runtime.threads") and "finetune.layer_lr_decay" in params
    assert ("input", "models/pretrained") in shape and ("recorded by",) in shape and ("environment",) in shape


def test_the_committed_lineage_sample_has_the_shape_the_code_prints(smoke_run):
    """docs/samples/lineage.txt is written by `python docs/samples.py lineage` on the default run; the smoke run
    differs in its values only. A new param, metric, field or step fails this until the sample is rewritten."""
    clone = smoke_run[0]
    output = run([sys.executable, "-m", "ptft.cli", *samples.LINEAGE[1:]], clone).stdout
    committed = (ROOT / "docs/samples/lineage.txt").read_text()
    assert committed.startswith(f"$ {' '.join(samples.LINEAGE)}\n")
    assert lineage_shape(committed) == lineage_shape(output), (
        "docs/samples/lineage.txt no longer has the shape `ptft lineage` prints: run `python docs/samples.py "
        "lineage` on the committed default run and commit it")

