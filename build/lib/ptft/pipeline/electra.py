"""Replaced-token detection, ELECTRA's objective (Clark et al. 2020), ``pretrain.objective: electra``.

A small masked-LM generator fills the masked positions with tokens sampled from its predictions; the model being
pre-trained (the discriminator, of the ``model`` params' family and size) learns to tell, at every position, whether
the token is the original or a replacement. Every token gives the discriminator a training signal, not only the
masked share, which is why the paper finds it most sample-efficient at small compute. The loss is the generator's
MLM loss plus :data:`DISCRIMINATOR_WEIGHT` times the discriminator's; the generator is discarded after pre-training
and the discriminator's encoder is what fine-tuning starts from.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForMaskedLM, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel

DISCRIMINATOR_WEIGHT = 50.0  # the paper's λ: the discriminator's binary loss is much smaller than the generator's


def generator_config(config: PretrainedConfig, size: float) -> PretrainedConfig:
    """The generator's config: the discriminator's depth and vocabulary, ``size`` times its width (hidden size,
    heads, feed-forward; the paper's best generators are a quarter to a half of the discriminator)."""
    small = copy.deepcopy(config)
    heads = max(1, round(config.num_attention_heads * size))
    small.num_attention_heads = heads
    small.hidden_size = max(1, round(config.hidden_size * size / heads)) * heads
    small.intermediate_size = max(1, round(config.intermediate_size * size))
    # Untied input and output embeddings: the Trainer checkpoints a plain module's state dict, which safetensors
    # stores only without shared tensors.
    small.tie_word_embeddings = False
    return small


class ReplacedTokenDetection(nn.Module):
    """A generator and a discriminator trained together; ``forward`` takes masked inputs, their MLM labels and one
    uniform number per position (the generator's sample, drawn where the masks are, so it is seeded as they are)."""

    def __init__(self, config: PretrainedConfig, generator_size: float):
        super().__init__()
        detector = copy.deepcopy(config)
        detector.num_labels = 1  # one logit per token: replaced or original
        self.discriminator = AutoModelForTokenClassification.from_config(detector)
        self.generator = AutoModelForMaskedLM.from_config(generator_config(config, generator_size))
        self.config = self.discriminator.config  # what the Trainer reads of a model

    @property
    def encoder(self) -> PreTrainedModel:
        """What pre-training leaves for fine-tuning: the discriminator's encoder, without its per-token head."""
        return self.discriminator.base_model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, uniform: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        generated = self.generator(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        masked = labels != -100
        with torch.no_grad():
            logits = generated.logits
            if logits.dim() == 3:  # dense decoding (BERT); ModernBERT decodes the masked positions alone
                logits = logits[masked]
            cumulative = torch.softmax(logits.float(), dim=-1).cumsum(-1)
            sampled = torch.searchsorted(cumulative, uniform[masked].to(cumulative.dtype).unsqueeze(-1)).squeeze(-1)
            sampled = sampled.clamp(max=logits.shape[-1] - 1)  # a rounding error at the top of the distribution
            original = torch.where(masked, labels, input_ids)
            corrupted = original.clone()
            corrupted[masked] = sampled
            replaced = (corrupted != original).float()
        scores = self.discriminator(input_ids=corrupted, attention_mask=attention_mask).logits.squeeze(-1)
        active = attention_mask.bool() if attention_mask is not None else torch.ones_like(masked)
        detection = F.binary_cross_entropy_with_logits(scores[active], replaced[active])
        return {"loss": generated.loss + DISCRIMINATOR_WEIGHT * detection,
                "generator_loss": generated.loss.detach(), "detection_loss": detection.detach()}


def add_uniform(batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
    """``batch`` with the generator's sampling numbers, drawn from ``generator`` (the masks' own)."""
    return {**batch, "uniform": torch.rand(batch["input_ids"].shape, generator=generator).to(batch["input_ids"].device)}
