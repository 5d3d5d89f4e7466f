"""End-to-end: datasets as users have them, through `dvc repro` with the smoke config.

- An AG News-like Hub dataset (title + description, official train/test, an unlabelled split, no validation
  split), pinned to a commit of a local Hub cache that the real `datasets` and `huggingface_hub` code reads;
  fine-tuned from a Hub checkpoint pinned the same way.
- A multi-label CSV (`ptft example-data`: BBC News tagged) through prepare → test, `ptft predict`,
  `transformers.pipeline` and the comparison.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ptft.pipeline.data import FIELD_SEPARATOR
from ptft.pipeline.metrics import THRESHOLDS
from tests.conftest import clone_env, copy_clone, dvc, run
from tests.hub_cache import dataset_repo, hub_dir, model_repo

NEWS, MODEL = "ptft-tests/news", "ptft-tests/tiny-encoder"
NEWS_SHA, MODEL_SHA = "a1" * 20, "b2" * 20
# Test documents also planted in train: the test split keeps them, train loses them.
PLANTED = 3


def _news_splits(smoke: Path) -> dict[str, pd.DataFrame]:
    """The smoke clone's BBC articles as an AG News-like dataset: title (first sentence) and description (the rest),
    integer labels, official train and test splits, an unlabelled split (label -1) and no validation split."""
    frames = {split: pd.read_parquet(smoke / f"data/prepared/{split}.parquet") for split in ("train", "test")}
    labels = sorted(set(frames["train"]["label"]))

    def shaped(df: pd.DataFrame) -> pd.DataFrame:
        parts = df["text"].str.partition(". ")
        return pd.DataFrame({"title": parts[0], "description": parts[2], "label": df["label"].map(labels.index)})

    train, test = shaped(frames["train"]), shaped(frames["test"])
    train = pd.concat([train, test.head(PLANTED)], ignore_index=True)  # copies of test documents in train
    unsupervised = shaped(pd.read_parquet(smoke / "data/prepared/validation.parquet")).assign(label=-1)
    return {"train": train, "test": test, "unsupervised": unsupervised}


def _hub_env(cache: Path) -> dict[str, str]:
    return {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_CACHE": str(hub_dir(cache)),
            "HF_DATASETS_CACHE": str(cache / "datasets")}


def _set_params(clone: Path, **blocks: dict) -> None:
    params = yaml.safe_load((clone / "params.yaml").read_text())
    for block, values in blocks.items():
        params[block].update(values)
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def official(smoke_run, tmp_path_factory) -> dict:
    smoke = smoke_run[0]
    root = tmp_path_factory.mktemp("official")
    cache = root / "hf"
    splits = _news_splits(smoke)
    dataset_repo(cache, NEWS, splits, NEWS_SHA)
    # The smoke run's pre-trained encoder, published as a Hub model: finetune starts from it at a pinned commit.
    model_repo(cache, MODEL, smoke / "models/pretrained", MODEL_SHA)
    clone = copy_clone(smoke, root / "ptft")
    _set_params(clone, data={"source": f"hf:{NEWS}@{NEWS_SHA}", "text_column": ["title", "description"],
                             "split": "official", "splits": {"train": "train", "validation": None, "test": "test"}},
                finetune={"init": f"hf:{MODEL}@{MODEL_SHA}"})
    output = run([sys.executable, "-m", "dvc", "repro", "test"], clone, _hub_env(cache)).stdout
    return {"clone": clone, "cache": cache, "splits": splits, "output": output}


def test_the_official_test_split_is_kept_whole_and_train_loses_its_copies(official):
    clone, splits = official["clone"], official["splits"]
    test = pd.read_parquet(clone / "data/prepared/test.parquet")
    assert len(test) == len(splits["test"])  # nothing removed from test, not even the documents copied into train
    train = set(pd.read_parquet(clone / "data/prepared/train.parquet")["text"])
    validation = set(pd.read_parquet(clone / "data/prepared/validation.parquet")["text"])
    assert not (train | validation) & set(test["text"])
    stats = json.loads((clone / "reports/prepare/stats.json").read_text())
    assert stats["overlap_removed"]["train_test"] == PLANTED
    # Validation was carved from train (prepare.validation_fraction of it), stratified: every class in both.
    sizes = {split: stats["splits"][split]["documents"] for split in ("train", "validation")}
    assert sizes["validation"] == pytest.approx(0.1 * (sizes["train"] + sizes["validation"]), abs=1)
    assert stats["splits"]["validation"]["per_class"].keys() == stats["splits"]["train"]["per_class"].keys()
    # The unlabelled split enters no labelled split; it is reported as unused.
    assert stats["unused_splits"] == {"unsupervised": len(splits["unsupervised"])}
    unlabelled = {" ".join(f"{t} {d}".split()) for t, d in zip(splits["unsupervised"]["title"],
                                                                   splits["unsupervised"]["description"])}
    everything = {text.replace(FIELD_SEPARATOR, " ") for text in train | validation | set(test["text"])}
    assert not unlabelled & everything


def test_the_text_fields_are_joined_with_the_separator_token(official):
    clone, splits = official["clone"], official["splits"]
    test = pd.read_parquet(clone / "data/prepared/test.parquet")
    first = splits["test"].iloc[0]
    assert test["text"].iloc[0] == " ".join(f"{first['title']}{FIELD_SEPARATOR}{first['description']}".split())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(clone / "models/finetuned")
    ids = tokenizer(test["text"].iloc[0])["input_ids"]
    assert ids.count(tokenizer.sep_token_id) == 2  # between the fields, and at the end


def test_the_pinned_dataset_and_checkpoint_commits_are_in_the_lineage(official):
    clone = official["clone"]
    prepared = json.loads((clone / "data/prepared/lineage.json").read_text())
    assert prepared["corpus"]["hub"] == {"id": NEWS, "config": None, "revision": NEWS_SHA, "resolved": NEWS_SHA,
                                         "reproducible": True}
    finetuned = json.loads((clone / "models/finetuned/lineage.json").read_text())
    assert finetuned["init"] == {"id": MODEL, "config": None, "revision": MODEL_SHA, "resolved": MODEL_SHA,
                                 "reproducible": True}
    stats = json.loads((clone / "reports/prepare/stats.json").read_text())
    assert not [w for w in stats["warnings"] if "not pinned" in w]
    labels = json.loads((clone / "data/prepared/labels.json").read_text())
    assert labels == [str(i) for i in range(len(labels))]  # integer labels, named by their values
    shown = run([sys.executable, "-m", "ptft.cli", "lineage", "models/finetuned"], clone,
                 _hub_env(official["cache"])).stdout
    assert f"resolved={MODEL_SHA}" in shown and f"hub.resolved={NEWS_SHA}" in shown


def test_an_unpinned_hub_source_warns_with_the_commit_to_pin(official, tmp_path):
    clone = copy_clone(official["clone"], tmp_path / "ptft")
    _set_params(clone, data={"source": f"hf:{NEWS}"})
    result = run([sys.executable, "-m", "dvc", "repro", "prepare"], clone, _hub_env(official["cache"]))
    pin = f"hf:{NEWS}@{NEWS_SHA}"
    assert "is not pinned to a commit, so it is not reproducible" in result.stderr and pin in result.stderr
    stats = json.loads((clone / "reports/prepare/stats.json").read_text())
    assert any(pin in warning for warning in stats["warnings"])
    lineage = json.loads((clone / "data/prepared/lineage.json").read_text())
    assert lineage["corpus"]["hub"]["resolved"] == NEWS_SHA and not lineage["corpus"]["hub"]["reproducible"]


def test_predict_joins_repeated_columns_as_prepare_joins_the_fields(official, tmp_path):
    clone, splits = official["clone"], official["splits"]
    rows = splits["test"].head(4)
    rows.to_csv(tmp_path / "news.csv", index=False)
    pd.DataFrame({"text": pd.read_parquet(clone / "data/prepared/test.parquet")["text"].head(4)}).to_csv(
        tmp_path / "joined.csv", index=False)
    model = str(clone / "models/finetuned")
    fields = run([sys.executable, "-m", "ptft.cli", "predict", str(tmp_path / "news.csv"), "--column", "title",
                  "--column", "description", "--model", model], clone).stdout
    joined = run([sys.executable, "-m", "ptft.cli", "predict", str(tmp_path / "joined.csv"), "--model", model],
                 clone).stdout
    assert fields == joined and len(fields.splitlines()) == 4


@pytest.mark.parametrize("data, message", [
    ({"splits": {"train": "train", "validation": "dev", "test": "test"}},
     f"data.splits.validation 'dev' not found in hf:{NEWS}@{NEWS_SHA}, whose splits are test, train, unsupervised"),
    ({"text_column": ["title", "body"]}, "data.text_column 'body' not found in"),
])
def test_a_bad_split_or_column_stops_prepare_with_one_line(official, tmp_path, data, message):
    clone = copy_clone(official["clone"], tmp_path / "ptft")
    _set_params(clone, data=data)
    result = run([sys.executable, "-m", "dvc", "repro", "prepare"], clone, _hub_env(official["cache"]), check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("prepare: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def tags(smoke_run, tmp_path_factory) -> dict:
    clone = copy_clone(smoke_run[0], tmp_path_factory.mktemp("tags") / "ptft")
    run([sys.executable, "-m", "ptft.cli", "example-data", "data/raw/tags.csv", "--limit", "600"], clone)
    _set_params(clone, data={"source": "data/raw/tags.csv", "label_column": "tags", "label_separator": "|"},
                compare={"budgets": [100], "focus_budget": 100, "variants": [], "objectives": []})
    output = dvc("repro", cwd=clone).stdout
    return {"clone": clone, "output": output}


def test_multi_label_data_is_split_stratified_with_every_tag_in_every_split(tags):
    stats = json.loads((tags["clone"] / "reports/prepare/stats.json").read_text())
    assert stats["multi_label"] is True
    per_class = {split: stats["splits"][split]["per_class"] for split in ("train", "validation", "test")}
    assert per_class["train"].keys() == per_class["validation"].keys() == per_class["test"].keys()
    assert len(per_class["train"]) == 16
    train = pd.read_parquet(tags["clone"] / "data/prepared/train.parquet")
    assert all(len(labels) >= 1 for labels in train["label"])


def test_the_multi_label_model_uses_sigmoid_and_a_threshold_chosen_on_validation(tags):
    clone = tags["clone"]
    config = json.loads((clone / "models/finetuned/config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and config["threshold"] in THRESHOLDS
    finetune = json.loads((clone / "reports/finetune/metrics.json").read_text())
    assert finetune["threshold"] == config["threshold"]
    test = json.loads((clone / "reports/test/metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "micro_f1", "subset_accuracy", "hamming_loss"):
        assert 0 <= test[key] <= 1
    assert test["threshold"] == config["threshold"]
    assert len(json.loads((clone / "reports/test/by_label.json").read_text())) == 16
    rows = json.loads((clone / "reports/test/per_label.json").read_text())
    assert {row["metric"] for row in rows} == {"precision", "recall", "f1"}
    assert (clone / "reports/test/per_label.png").read_bytes().startswith(b"\x89PNG")
    assert "(none)" in {row["actual"] for row in json.loads((clone / "reports/test/confusion.json").read_text())}


def test_predict_and_the_transformers_pipeline_return_the_label_set(tags, tmp_path):
    clone = tags["clone"]
    # Texts of one window: transformers' pipeline reads a text's first window only, where ptft averages them all.
    texts = [" ".join(text.split()[:8]) for text in
             pd.read_parquet(clone / "data/prepared/test.parquet")["text"].head(5)]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    model = clone / "models/finetuned"
    predicted = run([sys.executable, "-m", "ptft.cli", "predict", str(tmp_path / "texts.txt"), "--model", str(model)],
                    clone).stdout
    records = [json.loads(line) for line in predicted.splitlines()]
    threshold = json.loads((model / "config.json").read_text())["threshold"]
    for record in records:
        assert all(p >= threshold for p in record["labels"].values())
        assert set(record["labels"]) == {label for label, p in record["probabilities"].items() if p >= threshold}
    # The model directory carries its pipeline: no ptft needed to get the same label sets.
    script = ("import json, sys; from transformers import pipeline; "
              f"tag = pipeline(model={str(model)!r}, trust_remote_code=True); "
              "print(json.dumps(tag(json.load(sys.stdin))))")
    piped = subprocess.run([sys.executable, "-c", script], input=json.dumps(texts), capture_output=True, text=True,
                           env={**clone_env(clone), "PYTHONPATH": "", "HF_MODULES_CACHE": str(tmp_path / "modules")},
                           cwd=tmp_path, check=True)
    sets = json.loads(piped.stdout)
    assert [[item["label"] for item in found] for found in sets] == [list(record["labels"]) for record in records]


def test_the_comparison_runs_on_multi_label_data(tags):
    results = json.loads((tags["clone"] / "reports/compare/results.json").read_text())
    for method in ("pretrained", "scratch", "tfidf"):
        cell = results["methods"][method]["100"]
        assert cell["seeds"] == 2 and 0 <= cell["test_macro_f1"]["mean"] <= 1
    runs = json.loads((tags["clone"] / "reports/compare/runs/tfidf-100.json").read_text())["runs"]
    assert all(run["threshold"] in THRESHOLDS for run in runs)


def _docs_block(marker: str) -> list[str]:
    """The commands of docs/data.md's bash block after ``marker``, comments dropped."""
    text = (Path(__file__).parents[1] / "docs/data.md").read_text()
    block = text.split(marker, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_an_edited_label_reruns_the_chain_and_the_docs_route_tracks_and_queues_the_file(tags, tmp_path):
    clone = copy_clone(tags["clone"], tmp_path / "ptft")
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    csv = clone / "data/raw/tags.csv"
    rows = csv.read_text().split("\n")
    text, labels = rows[1].rsplit(",", 1)
    rows[1] = f"{text},{'music' if labels != 'music' else 'film'}"
    csv.write_text("\n".join(rows))
    status = json.loads(dvc("status", "--json", cwd=clone).stdout)
    assert status == {"prepare": [{"changed deps": {"data/raw": "modified"}}]}
    # prepare rebuilds the splits, and DVC then sees every stage after it changed (`dvc repro` would rerun them).
    assert "Running stage 'prepare'" in dvc("repro", "prepare", cwd=clone).stdout
    relocked = yaml.safe_load((clone / "dvc.lock").read_text())
    assert relocked["stages"]["prepare"]["outs"] != lock["stages"]["prepare"]["outs"]
    status = json.loads(dvc("status", "--json", cwd=clone).stdout)
    for stage in ("prepare_corpus", "pretrain", "finetune", "test"):  # each reads data/prepared or a file of it
        assert any(path.startswith("data/prepared") for change in status[stage]
                   for path in change.get("changed deps", {})), status

    commands = _docs_block("<!-- tests/test_datasets_pipeline.py runs this block -->")
    assert commands[-1].startswith("dvc queue start")
    for command in commands[:-1]:  # all but starting the queue: a whole pipeline run
        run(["bash", "-c", command], clone)
    assert "Queued" in dvc("queue", "status", cwd=clone).stdout
    # A temporary run starts from the same copy of the commit as a queued one: the DVC-tracked file is there.
    temp = commands[-2].replace("--queue", "--temp prepare")
    assert "Ran experiment(s)" in run(["bash", "-c", temp], clone).stdout
