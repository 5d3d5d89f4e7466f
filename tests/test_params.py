"""Unit tests for ptft.pipeline.params: loading and merging partial configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ptft.pipeline.lineage import flatten
from ptft.pipeline.params import ParamsError, deep_merge, load_params, merge_files, read_yaml, require

ROOT = Path(__file__).resolve().parents[1]


def test_deep_merge_overrides_leaves_and_keeps_the_rest():
    base = {"seed": 1, "finetune": {"lr": 1e-4, "epochs": 3}}
    merged = deep_merge(base, {"finetune": {"lr": 5e-5}})
    assert merged == {"seed": 1, "finetune": {"lr": 5e-5, "epochs": 3}}
    assert base["finetune"]["lr"] == 1e-4  # the input is not modified


def test_deep_merge_rejects_unknown_keys():
    with pytest.raises(ParamsError, match="unknown param 'finetune.learnig_rate'"):
        deep_merge({"finetune": {"lr": 1}}, {"finetune": {"learnig_rate": 2}})


def test_smoke_config_merges_over_the_real_params(tmp_path):
    out = tmp_path / "params.yaml"
    merged = merge_files(ROOT / "params.yaml", ROOT / "configs/smoke.yaml", out)
    assert yaml.safe_load(out.read_text()) == merged
    assert merged["model"]["layers"] < load_params(ROOT / "params.yaml")["model"]["layers"]
    assert require(merged, "finetune.lr") == load_params(ROOT / "params.yaml")["finetune"]["lr"]


# configs/ holds partial params files, and search files (`ptft search`, which have a `space`)
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml") if "space" not in read_yaml(p))


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_merges_into_valid_params(config):
    from ptft.pipeline.schema import problems

    assert problems(deep_merge(load_params(ROOT / "params.yaml"), read_yaml(ROOT / "configs" / config))) == []


def _comments(node, prefix: str = "") -> dict[str, str | None]:
    """Each dotted key of a round-trip params file with its end-of-line comment (None for none), except the keys
    inside a flow mapping ({a: 1, b: 2}), which cannot carry one."""
    found: dict[str, str | None] = {}
    for key, value in node.items():
        tokens = node.ca.items.get(key) or []
        comment = next((t.value for t in tokens if t is not None and not isinstance(t, list)), None)
        found[prefix + key] = " ".join(comment.split("\n")[0].lstrip("# ").split()) if comment else None
        if isinstance(value, dict) and not value.fa.flow_style():
            found.update(_comments(value, f"{prefix}{key}."))
    return found


def test_params_yaml_comments_are_the_schema_descriptions():
    """The schema holds each key's meaning (the docs' params reference is built from it); params.yaml repeats it as
    the key's comment, word for word, so the two cannot disagree. Free-form mappings (compare.*_settings) are not
    schema keys."""
    from pydantic import BaseModel
    from ruamel.yaml import YAML

    from ptft.pipeline.schema import Params

    def meanings(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
        found = {}
        for name, field in model.model_fields.items():
            block = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation,
                                                                                         BaseModel) else None
            text = field.description or (block.__doc__ if block and block is not Params else None)
            found[prefix + name] = " ".join((text or "").split())
            if block:
                found.update(meanings(block, f"{prefix}{name}."))
        return found

    expected = meanings(Params)
    comments = _comments(YAML().load((ROOT / "params.yaml").read_text()))
    assert all(expected.values()), [key for key, text in expected.items() if not text]  # every key has a meaning
    schema_keys = {key for key in comments if key in expected}
    assert set(expected) - schema_keys == {"data.splits.train", "data.splits.validation", "data.splits.test"}
    sentence = lambda text: text[:1].lower() + text[1:].rstrip(".")  # noqa: E731 - a block's docstring is a sentence
    for key in schema_keys:
        assert comments[key] is not None and sentence(comments[key]) == sentence(expected[key]), key


def test_merge_params_keeps_the_comments_order_and_layout(tmp_path):
    out = tmp_path / "params.yaml"
    merge_files(ROOT / "params.yaml", ROOT / "configs/smoke.yaml", out)
    before, after = (ROOT / "params.yaml").read_text().splitlines(), out.read_text().splitlines()
    assert len(after) == len(before)
    changed = [(old, new) for old, new in zip(before, after) if old != new]
    smoke = flatten(read_yaml(ROOT / "configs/smoke.yaml"))
    assert changed and len(changed) <= len(smoke)  # only lines whose value the smoke config sets
    for old, new in changed:
        assert old.split(":")[0] == new.split(":")[0]  # the same key
        assert ("#" in old) == ("#" in new) and old.partition("#")[2] == new.partition("#")[2]  # the same comment
    assert "  budgets: [25, all]" in out.read_text()  # a list stays in flow style
    assert "  seed: null" in out.read_text()  # untouched values are written as they were


def test_missing_file_and_key_are_clear_errors(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    with pytest.raises(ParamsError, match="no 'finetune.lr'"):
        require({"finetune": {}}, "finetune.lr")


def test_params_are_read_as_dvc_writes_them(tmp_path):
    """`dvc exp run -S finetune.lr=1e-5` writes `lr: 1e-05`: a number in YAML 1.2 (DVC's), a string in PyYAML's 1.1."""
    path = tmp_path / "params.yaml"
    path.write_text("finetune:\n  lr: 1e-05\n  warmup: 5e-2\n")
    assert read_yaml(path) == {"finetune": {"lr": 1e-05, "warmup": 0.05}}
    path.write_text("finetune:\n  lr: [1e-05\n")
    with pytest.raises(ParamsError, match=r"params.yaml is not valid YAML: .*line 3") as err:
        read_yaml(path)
    assert "\n" not in str(err.value)


def test_cli_merge_params(tmp_path):
    from ptft.cli import main

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    assert main(["merge-params", str(ROOT / "configs/smoke.yaml"), "--params", str(params)]) == 0
    assert load_params(params)["pretrain"]["seq_len"] == 32
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune:\n  learnig_rate: 1\n")
    assert main(["merge-params", str(bad), "--params", str(params)]) == 2


def test_every_param_is_read_by_a_stage_so_dvc_exp_run_set_param_reruns_it(tmp_path):
    """`dvc exp run -S key=value` reruns exactly the stages that declare the key (or a section above it)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:  # as DVC resolves them: a grid cell declares its own item's key
        declared = {key for stage in repo.index.stages for dep in stage.deps if isinstance(dep, ParamsDependency)
                    for key in dep.params}
    leaves = set(flatten(load_params(ROOT / "params.yaml")))
    unread = {leaf for leaf in leaves if not any(leaf == key or leaf.startswith(f"{key}.") for key in declared)}
    assert not unread, f"params no stage declares in dvc.yaml: {sorted(unread)}"
    missing = {key for key in declared if not any(leaf == key or leaf.startswith(f"{key}.") for leaf in leaves)}
    assert not missing, f"dvc.yaml declares params that params.yaml lacks: {sorted(missing)}"
    for config in CONFIGS:  # every config merges cleanly over params.yaml
        merge_files(ROOT / "params.yaml", ROOT / "configs" / config, tmp_path / config)


def test_every_dvc_cached_output_is_ignored_by_git_and_not_tracked():
    """A cached output that git also tracks breaks `dvc repro` in every fresh clone ("already tracked by SCM")."""
    import subprocess

    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        paths = sorted(out.def_path for out in repo.index.outs if out.use_cache)
    assert "models/pretrained" in paths and "reports/compare/runs/scratch-25.json" in paths
    git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
    assert git("ls-files", "--", *paths).stdout == ""
    ignored = set(git("check-ignore", "--no-index", *paths).stdout.split())
    assert ignored == set(paths), sorted(set(paths) - ignored)


@pytest.mark.parametrize(("change", "message"), [
    ({"finetune": {"learnig_rate": 1e-3}}, "unknown param 'finetune.learnig_rate'; did you mean 'finetune.lr'?"),
    ({"finetuen": {}}, "unknown param 'finetuen'; did you mean 'finetune'?"),
    ({"finetune": {"lr": -1e-4}}, "finetune.lr: Input should be greater than 0 (got -0.0001)"),
    ({"pretrain": {"lr": 0.0}}, "pretrain.lr: Input should be greater than 0 (got 0.0)"),
    ({"finetune": {"lr": "1e-3"}}, "finetune.lr: Input should be a valid number (got '1e-3')"),  # PyYAML: a string
    ({"finetune": {"epochs": "ten"}}, "finetune.epochs: Input should be a valid number (got 'ten')"),
    ({"prepare": {"validation_fraction": 0.5, "test_fraction": 0.45}}, "leaves no real train split"),
    ({"prepare": {"test_fraction": 1.5}}, "prepare.test_fraction: Input should be less than 1 (got 1.5)"),
    ({"finetune": {"train_examples": 0}}, "finetune.train_examples: Input should be greater than 0 (got 0)"),
    ({"model": {"heads": 3}}, "model.heads (3) must divide model.hidden (128)"),
    ({"pretrain": {"seq_len": 1024}}, "pretrain.seq_len (1024) exceeds model.max_position (512)"),
    ({"finetune": {"max_length": 600}}, "finetune.max_length (600) exceeds model.max_position (512)"),
    ({"pretrain": {"objective": "mlmx"}}, "pretrain.objective: Input should be 'mlm', 'clm' or 'electra' (got 'mlmx')"),
    ({"model": {"family": "gpt"}}, "model.family: Input should be 'modernbert' or 'bert' (got 'gpt')"),
    ({"finetune": {"freeze": "embedings"}}, "finetune.freeze 'embedings' is not valid; choose one of: none,"),
    ({"finetune": {"pooling": "max"}}, "finetune.pooling: Input should be 'mean' or 'cls' (got 'max')"),
    ({"compare": {"budgets": [25, "al"]}}, "compare.budgets.1: a budget is a positive number of labelled examples"),
    ({"compare": {"variants": ["frozen-all"]}}, "compare.variant_settings has no entry for ['frozen-all']"),
    ({"runtime": {"threads": 0}}, "runtime.threads: Input should be greater than 0 (got 0)"),
    ({"data": {"source": "nope/reviews.csv"}}, "data.source 'nope/reviews.csv' does not exist; set it to 'bbc' ("),
    ({"data": {"source": str(ROOT / "README.md")}}, "README.md' has an unsupported extension '.md'; set it to 'bbc'"),
    ({"data": {"source": "docs"}}, "data.source 'docs' is outside data/raw/, the folder prepare declares to DVC, so "
     "DVC would not see it change; move it there (mkdir -p data/raw && mv docs data/raw/), set data.source to "
     "data/raw/docs"),
    ({"pretrain": {"corpus": []}}, "pretrain.corpus: an empty list; set it to 'train', a .txt/.jsonl"),
    ({"pretrain": {"corpus": ["train", " "]}}, "pretrain.corpus: an empty entry"),
    ({"pretrain": {"corpus": "hf:"}}, "pretrain.corpus: 'hf:' is not of the form hf:<dataset id>[:<config>]"),
    ({"pretrain": {"corpus": ["train", "corpus/a", "train"]}}, "pretrain.corpus: ['train'] listed twice"),
    ({"pretrain": {"corpus": 3}}, "pretrain.corpus: a source or a list of sources, got 3"),
    ({"pretrain": {"max_steps": 100, "tokens": 10**6}}, "pretrain.max_steps and pretrain.tokens are both set"),
    ({"pretrain": {"tokens": 0}}, "pretrain.tokens: Input should be greater than 0 (got 0)"),
    ({"corpus": {"txt_documents": "page"}}, "corpus.txt_documents: Input should be 'paragraph', 'line' or 'file'"),
    ({"corpus": {"decontamination_ngram": 3}}, "corpus.decontamination_ngram: Input should be greater than or equal"),
    ({"prepare": {"vocab_size": 8000}}, "param 'prepare.vocab_size' has moved to 'corpus.vocab_size'"),
    ({"compare": {"objective_settings": {"mlm": {"objective": "mlm", "init": "minilm"}, "clm": {"objective": "clm"}}}},
     "compare.objective_settings.mlm sets ['init'], which come from the pretrain params"),
    ({"compare": {"continued_settings": {"lr": 1e-4, "learning_rate": 1e-4}}},
     "compare.continued_settings sets ['learning_rate'], which are not pretrain params"),
    ({"compare": {"continued": ["bert-base"]}}, "compare.continued.0: Input should be 'minilm'"),
    ({"data": {"split": "official"}}, "data.split is 'official' but the bbc corpus has no official splits"),
    ({"data": {"split": "given"}}, "data.split: Input should be 'random' or 'official' (got 'given')"),
    ({"data": {"splits": {"train": "train", "validation": "train", "test": "test"}}},
     "data.splits names one split twice (['train', 'train', 'test'])"),
    ({"data": {"text_column": []}}, "data.text_column: a column name or a list of column names, got []"),
    ({"data": {"text_column": ["title", "title"]}}, "data.text_column: ['title', 'title'] names a column twice"),
    ({"data": {"label_separator": ""}}, "data.label_separator: String should have at least 1 character"),
    ({"data": {"source": "hf:org/data@v1@v2"}}, "data.source 'hf:org/data@v1@v2' is not of the form hf:<dataset id>"),
    ({"finetune": {"init": "hf:org/model:en"}}, "finetune.init: 'hf:org/model:en' is not of the form hf:<model id>"),
])
def test_every_bad_param_is_named_with_its_fix(change, message):
    from ptft.pipeline.schema import problems

    def changed(params: dict, change: dict) -> dict:  # unlike deep_merge, lets a typo in
        return {**params, **{key: changed(params[key], value) if isinstance(value, dict) and key in params else value
                             for key, value in change.items()}}

    found = problems(changed(load_params(ROOT / "params.yaml"), change))
    assert len(found) == 1 and message in found[0], found


def test_a_bad_param_stops_a_stage_before_any_work_with_one_message(tmp_path):
    """No data, no model in tmp_path: the stage must fail on params.yaml alone, with no traceback."""
    import os
    import subprocess
    import sys

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["finetune"]["learnig_rate"] = params["finetune"].pop("lr")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, str(ROOT / "stages/finetune.py")], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 2
    first, *problems = result.stderr.strip().splitlines()
    assert first == "finetune: error: params.yaml has 2 problems:"
    assert set(problems) == {
        "  unknown param 'finetune.learnig_rate'; did you mean 'finetune.lr'?",
        "  params.yaml has no 'finetune.lr': add it (params.yaml in the repository lists every key)"}


def test_a_comparison_model_takes_its_own_budget_never_the_main_runs():
    from ptft.pipeline.params import comparison_pretrain

    pretrain = {**load_params(ROOT / "params.yaml")["pretrain"], "tokens": 2_000_000_000}
    objective = comparison_pretrain(pretrain, {"objective": "clm", "epochs": 1})
    assert objective["tokens"] is None and objective["max_steps"] is None and objective["epochs"] == 1
    assert {key: objective[key] for key in pretrain if key not in ("tokens", "objective", "epochs")} == \
        {key: pretrain[key] for key in pretrain if key not in ("tokens", "objective", "epochs")}
    assert comparison_pretrain(pretrain, {"max_steps": 50})["max_steps"] == 50
    continued = comparison_pretrain(pretrain, {"objective": "mlm", "lr": 5e-5}, init="minilm")
    assert continued["init"] == "minilm" and continued["tokens"] is None
    # Nor do their stages declare it: a changed main budget reruns neither (and reading it would fail the stage).
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("pretrain_objective", "pretrain_continued"):
        declared = stages[name]["do"]["params"]
        assert not {"pretrain", "pretrain.tokens", "pretrain.max_steps"} & set(declared)


def test_the_gpu_config_gives_the_objective_cells_a_tenth_of_its_token_budget(tmp_path):
    from ptft.pipeline.params import check_params, comparison_pretrain
    from ptft.pipeline.training import pretrain_steps

    params_file = tmp_path / "params.yaml"
    params_file.write_text((ROOT / "params.yaml").read_text())
    merged = merge_files(params_file, ROOT / "configs/gpu.yaml")  # a key new to an arm's settings may be added
    assert load_params(params_file) == merged
    check_params(merged)
    pretrain = merged["pretrain"]
    blocks = 10**9 // pretrain["seq_len"]  # a corpus of a billion tokens
    for name, settings in merged["compare"]["objective_settings"].items():
        objective = comparison_pretrain(pretrain, settings)
        assert pretrain_steps(objective, blocks) * 10 == pytest.approx(pretrain_steps(pretrain, blocks), rel=1e-3)
    # Outside a free-form mapping an unknown key is still refused.
    with pytest.raises(ParamsError, match="unknown param 'compare.objective_setting'"):
        deep_merge(merged, {"compare": {"objective_setting": {}}})
