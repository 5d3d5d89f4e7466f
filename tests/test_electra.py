"""``pretrain.objective: electra`` (ptft.pipeline.electra): replaced-token detection trains, resumes exactly, and
leaves an encoder that fine-tuning starts from; its cost is counted once per matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

from ptft.pipeline.cost import pretrain_flops_per_token
from ptft.pipeline.electra import DISCRIMINATOR_WEIGHT, ReplacedTokenDetection, generator_config
from ptft.pipeline.modeling import build_config, classifier, flops_per_token
from ptft.pipeline.params import load_params
from ptft.pipeline.schema import problems
from ptft.pipeline.training import encode_labelled, finetune_classifier, open_live, pretrain_lm, pretrain_trainer
from ptft.pipeline.windows import Windows
from tests.test_training import MODEL, TEXTS, tokenizer  # noqa: F401 - the fixture

PARAMS = {"objective": "electra", "generator_size": 0.5, "evals": 4, "seq_len": 16, "mask_prob": 0.25, "epochs": 2,
          "batch_size": 4, "lr": 2e-3, "warmup": 0.1, "weight_decay": 0.0}


def test_the_generator_is_a_narrower_model_of_the_same_depth(tokenizer):  # noqa: F811
    config = build_config({**MODEL, "hidden": 64, "heads": 4, "intermediate": 128}, tokenizer)
    small = generator_config(config, 0.25)
    assert (small.hidden_size, small.num_attention_heads, small.intermediate_size) == (16, 1, 32)
    assert small.num_hidden_layers == config.num_hidden_layers and small.vocab_size == config.vocab_size
    assert config.hidden_size == 64  # the discriminator's config is left as it was


def test_masked_positions_get_the_generators_samples_and_the_loss_weighs_detection(tokenizer):  # noqa: F811
    torch.manual_seed(0)
    model = ReplacedTokenDetection(build_config(MODEL, tokenizer), 0.5)
    chosen = tokenizer.convert_tokens_to_ids("market")
    with torch.no_grad():  # a generator that always predicts "market"
        model.generator.decoder.bias.fill_(-1e4)
        model.generator.decoder.bias[chosen] = 1e4
    original = torch.tensor(tokenizer(TEXTS[:2], padding="max_length", max_length=12, truncation=True)["input_ids"])
    masked = torch.zeros_like(original, dtype=torch.bool)
    masked[:, [2, 3, 7]] = True
    labels = torch.where(masked, original, -100)
    inputs = torch.where(masked, tokenizer.mask_token_id, original)
    seen = {}
    model.discriminator.register_forward_pre_hook(lambda _, args, kwargs: seen.update(kwargs), with_kwargs=True)
    out = model(input_ids=inputs, labels=labels, uniform=torch.rand(original.shape))
    corrupted = seen["input_ids"]
    assert torch.equal(corrupted[~masked], original[~masked]) and (corrupted[masked] == chosen).all()
    scores = model.discriminator(input_ids=corrupted).logits.squeeze(-1)
    detection = F.binary_cross_entropy_with_logits(scores.flatten(), (corrupted != original).float().flatten())
    assert torch.isclose(out["detection_loss"], detection)
    assert torch.isclose(out["loss"], out["generator_loss"] + DISCRIMINATOR_WEIGHT * detection)


def test_electra_pretrains_and_fine_tuning_starts_from_its_encoder(tokenizer, tmp_path):  # noqa: F811
    def run(params, name):
        torch.manual_seed(0)
        model = ReplacedTokenDetection(build_config(MODEL, tokenizer), params["generator_size"])
        live = open_live(tmp_path / name)
        result, _ = pretrain_lm(pretrain_trainer(model, tokenizer, TEXTS * 2, TEXTS[:5], params, 0, live,
                                                 tmp_path / f"work-{name}"))
        live.end()
        return model, result

    _, short = run({**PARAMS, "epochs": 0.05}, "short")
    model, result = run(PARAMS, "long")
    assert result["eval_loss"] < short["eval_loss"] and "perplexity" not in result
    model.encoder.save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    fine, tok = classifier(str(tmp_path / "encoder"), MODEL, None, ["a", "b"], "mean")
    assert isinstance(fine, AutoModelForSequenceClassification._model_mapping[type(fine.config)])
    for name, weight in model.encoder.state_dict().items():  # every encoder weight carried over
        assert torch.equal(fine.base_model.state_dict()[name], weight), name
    data = encode_labelled(TEXTS[:8], ["a", "b"] * 4, fine.config.label2id, tok, Windows(16))
    metrics, _ = finetune_classifier(fine, tok, data, data, {"batch_size": 4, "epochs": 1, "lr": 1e-3, "warmup": 0.0,
                                                             "weight_decay": 0.0}, 0, None, tmp_path / "ft")
    assert 0 <= metrics["validation_accuracy"] <= 1


def test_electra_costs_its_encoder_at_every_token_and_its_generator_as_mlm(tokenizer):  # noqa: F811
    model = ReplacedTokenDetection(build_config(MODEL, tokenizer), 0.5)
    generator = model.generator
    # The untied vocabulary projection is counted once, with the head, at the predicted share of tokens.
    head = sum(p.numel() for name, p in generator.named_parameters() if p.ndim == 2 and not name.startswith("model."))
    assert flops_per_token(generator, 16, 1.0) - flops_per_token(generator, 16, 0.0) == 6 * head
    expected = flops_per_token(model.discriminator, 16, 0.0) + flops_per_token(generator, 16, 0.25)
    assert pretrain_flops_per_token(PARAMS, model.config) == expected
    mlm = AutoModelForMaskedLM.from_config(build_config(MODEL, tokenizer))
    assert pretrain_flops_per_token({**PARAMS, "objective": "mlm"}, mlm.config) < expected


def test_electra_from_a_checkpoint_is_refused_with_what_to_do():
    params = load_params()
    params["pretrain"].update(objective="electra", init="minilm")
    assert any("pretrain.objective electra pre-trains from scratch" in line for line in problems(params))
