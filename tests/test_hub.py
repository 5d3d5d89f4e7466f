"""Hub sources: parsing, resolving to a commit (online, offline, from the cache), and real loads at a pinned commit
through a hand-built Hub cache (tests/hub_cache.py), with no network."""

from __future__ import annotations

import pandas as pd
import pytest

from ptft.pipeline.hub import (
    HubError,
    HubRef,
    hub_identity,
    parse_hub,
    resolve_revision,
    unpinned_warning,
)
from ptft.pipeline.params import UserError
from tests.hub_cache import answer_hub_api, dataset_repo, model_repo, use_hub_cache

OLD, NEW, TAGGED = "1" * 40, "2" * 40, "3" * 40


def frame(prefix: str, rows: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"{prefix} {i}" for i in range(rows)], "label": [i % 2 for i in range(rows)]})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An offline Hub cache: dataset org/reviews at OLD (no branch) and NEW (main), tag v1 at TAGGED."""
    use_hub_cache(monkeypatch, tmp_path)
    dataset_repo(tmp_path, "org/reviews", {"train": frame("old", 2), "test": frame("old", 1)}, OLD, branch=None)
    dataset_repo(tmp_path, "org/reviews", {"train": frame("new", 3), "test": frame("new", 2),
                                           "unsupervised": frame("new", 4)}, NEW)
    dataset_repo(tmp_path, "org/reviews", {"train": frame("tagged", 1)}, TAGGED, branch="v1")
    return tmp_path


@pytest.mark.parametrize("spec, expected", [
    ("hf:imdb", ("imdb", None, None)),
    ("hf:org/data", ("org/data", None, None)),
    ("hf:org/data:en", ("org/data", "en", None)),
    (f"hf:org/data@{OLD}", ("org/data", None, OLD)),
    ("hf:org/data.v2:plain_text@v1.0", ("org/data.v2", "plain_text", "v1.0")),
    ("hf:org/data@refs/pr/1", ("org/data", None, "refs/pr/1")),
])
def test_a_hub_spec_is_parsed_into_id_config_and_revision(spec, expected):
    ref = parse_hub(spec)
    assert (ref.id, ref.config, ref.revision) == expected and ref.spec == spec


@pytest.mark.parametrize("spec", ["org/data", "hf:", "hf:a/b/c", "hf:org/data@", "hf:org/data:@main", "hf:org data"])
def test_a_malformed_hub_spec_is_a_user_error_naming_the_form(spec):
    with pytest.raises(HubError, match=r"is not of the form hf:<id>\[:<config>\]\[@<revision>\]") as err:
        parse_hub(spec)
    assert isinstance(err.value, UserError)


def test_a_ref_built_in_code_names_itself_and_its_pinned_spelling():
    ref = HubRef("org/data", "en", "main")
    assert ref.spec == "hf:org/data:en@main" and ref.pinned(OLD) == f"hf:org/data:en@{OLD}"


def test_offline_a_branch_or_tag_resolves_from_the_cache_and_a_commit_to_itself(cache):
    assert resolve_revision(parse_hub("hf:org/reviews"), "dataset") == NEW  # None is main
    assert resolve_revision(parse_hub("hf:org/reviews@main"), "dataset") == NEW
    assert resolve_revision(parse_hub("hf:org/reviews@v1"), "dataset") == TAGGED
    assert resolve_revision(parse_hub(f"hf:org/reviews@{OLD}"), "dataset") == OLD
    assert resolve_revision(parse_hub(f"hf:org/elsewhere@{'9' * 40}"), "dataset") == "9" * 40  # pinned: exact
    assert resolve_revision(parse_hub("hf:org/reviews@dev"), "dataset") is None  # never seen: unknown
    assert resolve_revision(parse_hub("hf:org/elsewhere"), "dataset") is None
    assert resolve_revision(parse_hub("hf:org/reviews"), "model") is None  # another repo type, another folder


def test_online_the_hub_answers_and_its_missing_repo_or_revision_is_a_clear_error(cache, monkeypatch):
    requests = answer_hub_api(monkeypatch, datasets={"org/reviews": {"main": "a" * 40}},
                              models={"org/bert": {"main": "b" * 40}})
    assert resolve_revision(parse_hub("hf:org/reviews"), "dataset") == "a" * 40  # the Hub, not the cache's NEW
    assert resolve_revision(parse_hub("hf:org/bert"), "model") == "b" * 40
    assert "/api/datasets/org/reviews" in requests and "/api/models/org/bert" in requests
    with pytest.raises(HubError, match="'hf:org/nothing:en': no dataset 'org/nothing' on the Hub"):
        resolve_revision(parse_hub("hf:org/nothing:en"), "dataset")
    with pytest.raises(HubError, match="'hf:org/reviews@v9': the dataset 'org/reviews' has no revision 'v9'"):
        resolve_revision(parse_hub("hf:org/reviews@v9"), "dataset")
    with pytest.raises(HubError, match="'hf:org/reviews': no model 'org/reviews' on the Hub"):
        resolve_revision(parse_hub("hf:org/reviews"), "model")
    with pytest.raises(HubError, match="is not a valid Hub repo id"):
        resolve_revision(parse_hub("hf:org/..x"), "dataset")


def test_without_a_network_the_cache_answers(cache, monkeypatch):
    requests = answer_hub_api(monkeypatch, reachable=False)  # a lost network: httpx2.ConnectError, not an OSError
    assert resolve_revision(parse_hub("hf:org/reviews"), "dataset") == NEW
    assert resolve_revision(parse_hub(f"hf:org/other@{OLD}"), "dataset") == OLD
    assert "/api/datasets/org/reviews" in requests


def test_only_a_commit_pinned_source_is_reproducible_and_the_warning_names_the_pin(cache):
    unpinned = parse_hub("hf:org/reviews")
    assert hub_identity(unpinned, "dataset") == {"id": "org/reviews", "config": None, "revision": None,
                                                 "resolved": NEW, "reproducible": False}
    assert unpinned_warning(unpinned, NEW) == (
        "'hf:org/reviews' is not pinned to a commit, so it is not reproducible: the repo may change under the same "
        f"name. Pin it: hf:org/reviews@{NEW}")
    tagged = parse_hub("hf:org/reviews:en@v1")  # a tag can move too
    assert hub_identity(tagged, "dataset")["reproducible"] is False
    assert unpinned_warning(tagged, None).endswith("Pin it: hf:org/reviews:en@<commit sha>")
    pinned = parse_hub(f"hf:org/reviews@{OLD}")
    assert hub_identity(pinned, "dataset") == {"id": "org/reviews", "config": None, "revision": OLD,
                                               "resolved": OLD, "reproducible": True}
    assert unpinned_warning(pinned, OLD) is None


def _snapshot(ref, repo_type="dataset"):
    """The cached snapshot folder of ``ref`` at its resolved commit, as huggingface_hub finds it offline."""
    from huggingface_hub import snapshot_download

    return snapshot_download(ref.id, repo_type=repo_type, revision=resolve_revision(ref, repo_type),
                             local_files_only=True)


def test_load_dataset_reads_the_snapshot_of_the_resolved_commit_with_its_splits(cache):
    import datasets

    latest = datasets.load_dataset(_snapshot(parse_hub("hf:org/reviews")))
    assert {split: ds["text"] for split, ds in latest.items()} == {
        "train": ["new 0", "new 1", "new 2"], "test": ["new 0", "new 1"],
        "unsupervised": ["new 0", "new 1", "new 2", "new 3"]}
    pinned = datasets.load_dataset(_snapshot(parse_hub(f"hf:org/reviews@{OLD}")))
    assert set(pinned) == {"train", "test"} and pinned["train"]["text"] == ["old 0", "old 1"]
    with pytest.raises(ValueError, match=r'Unknown split "validation". Should be one of \[\'train\', \'test\'\]'):
        datasets.load_dataset(_snapshot(parse_hub(f"hf:org/reviews@{OLD}")), split="validation")
    assert not list((cache / "hub").rglob("*.arrow")) and list((cache / "datasets").rglob("*.arrow"))


def test_load_dataset_reads_a_config_from_the_readme_configs_block(cache):
    import datasets

    dataset_repo(cache, "org/multi", {"train": frame("en", 2), "test": frame("en", 1)}, OLD, config="en")
    dataset_repo(cache, "org/multi", {"train": frame("fr", 3)}, OLD, config="fr")
    folder = _snapshot(parse_hub(f"hf:org/multi:fr@{OLD}"))
    assert datasets.load_dataset(folder, "fr")["train"]["text"] == ["fr 0", "fr 1", "fr 2"]
    assert set(datasets.load_dataset(folder, "en")) == {"train", "test"}
    with pytest.raises(ValueError, match=r"BuilderConfig 'de' not found. Available: \['en', 'fr'\]"):
        datasets.load_dataset(folder, "de")


def test_offline_load_dataset_by_id_never_reads_the_hub_cache(cache):
    """Why loaders must go through the snapshot folder offline: datasets raises before looking at the cache."""
    import datasets

    with pytest.raises(ConnectionError, match="Couldn't reach 'org/reviews' on the Hub"):
        datasets.load_dataset("org/reviews", revision=NEW)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A save_pretrained folder: a 1-layer BERT (hidden 32) for sequence classification, and its tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=32, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_from_pretrained_loads_a_model_and_tokenizer_at_a_pinned_commit(cache, tiny_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_repo(cache, "org/tiny-bert", tiny_model, OLD)
    ref = parse_hub(f"hf:org/tiny-bert@{OLD}")
    assert hub_identity(ref, "model")["resolved"] == OLD
    model = AutoModelForSequenceClassification.from_pretrained(ref.id, revision=ref.revision)
    tokenizer = AutoTokenizer.from_pretrained(ref.id, revision=ref.revision)
    assert model.config.hidden_size == 32 and model.config.num_labels == 2
    assert tokenizer("good film")["input_ids"] == [2, 5, 7, 3]
    assert AutoTokenizer.from_pretrained(ref.id).vocab_size == 8  # revision None: refs/main
    with pytest.raises(OSError):  # transformers' one error for a revision it cannot find offline
        AutoModelForSequenceClassification.from_pretrained(ref.id, revision=NEW)
