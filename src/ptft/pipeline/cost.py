"""What a run costs before it starts: each training stage's time, from measured speed and the data's size.

Work is counted in training FLOPs (:func:`ptft.pipeline.modeling.flops_per_token`: forward and backward; an
evaluation's forward pass is a third of that). Each kind of work has a speed in FLOP/s, measured:

- on this machine, from this checkout's run logs (``logs/pretrain.jsonl``, ``logs/finetune.jsonl``: each run
  records the FLOP/s it trained at) when they ran on the same device with ``runtime.threads`` threads;
- else from the committed full run (``benchmarks/results/pipeline_time.json``, by ``benchmarks/pipeline_time.py``), on
  the CPU it names;
- or as given (``ptft estimate --flops``: an accelerator's sustained FLOP/s, e.g. a share of its bf16 peak).

A stage's estimate is its FLOPs over that speed plus the stage's start-up (loading a model, writing files) as
measured. Estimates only print: no stage output depends on them, so the files they read are not DVC dependencies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptft.pipeline.flops import device_batch, finetune_flops, padded_length, predicted_fraction, run_passes
from ptft.pipeline.params import UserError
from ptft.pipeline.windows import Windows

LOGS = Path("logs")
REFERENCE = Path("benchmarks/results/pipeline_time.json")
LENGTH_SAMPLE = 2000  # documents tokenised to measure the labelled text's length
LONG = 3600  # seconds: a comparison estimated at more than this says how to run less of it


@dataclass(frozen=True)
class Speed:
    """Sustained training FLOP/s of pre-training and of fine-tuning, a stage's start-up, and where they come from."""

    pretrain: float
    finetune: float
    startup: float
    source: str


def model_flops(config: Any, seq_len: int, predicted_fraction: float) -> float:
    """:func:`flops_per_token` of a model built from ``config`` on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from ptft.pipeline.modeling import flops_per_token

    auto = AutoModelForCausalLM if config.model_type == "gpt2" else AutoModelForMaskedLM
    with torch.device("meta"):
        model = auto.from_config(config)
    return flops_per_token(model, seq_len, predicted_fraction)


def model_config(init: str, objective: str, model: dict[str, Any] | None, tokenizer_dir: Path) -> Any:
    """The config a run trains. A model of this pipeline (``scratch``, ``pretrained``, ``models/...``) is built from
    the ``model`` params when given (what the run will train), else read from its directory (a comparison cell,
    which does not read those params, runs after the model was trained); a checkpoint has its own config."""
    from transformers import AutoConfig, AutoTokenizer

    from ptft.pipeline.modeling import build_causal_config, build_config, resolve_init

    path = {"pretrained": "models/pretrained"}.get(init, init)
    if init != "scratch" and not path.startswith("models/"):
        return AutoConfig.from_pretrained(resolve_init(init))
    if model is None:
        if not Path(path).is_dir():
            raise UserError(f"{path} is not trained yet, and the stage does not read the model params")
        return AutoConfig.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    causal = objective == "clm" or path.endswith("-clm")
    return build_causal_config(model, tokenizer) if causal else build_config(model, tokenizer)


def pretrain_flops(pretrain: dict[str, Any], config: Any, corpus_tokens: int) -> tuple[float, int]:
    """(training FLOPs, tokens trained) of a pre-training run on ``corpus_tokens`` tokens of text."""
    from ptft.pipeline.training import pretrain_steps

    blocks = max(1, corpus_tokens // pretrain["seq_len"])
    tokens = pretrain_steps(pretrain, blocks) * pretrain["batch_size"] * pretrain["seq_len"]
    return tokens * pretrain_flops_per_token(pretrain, config), tokens


def pretrain_flops_per_token(pretrain: dict[str, Any], config: Any) -> float:
    """Training FLOPs of a pre-training token for a model of ``config``: the LM head decodes the share of tokens that
    :func:`predicted_fraction` says; ELECTRA's discriminator runs its encoder at every token (its one-number head
    left out) beside its generator (:func:`ptft.pipeline.electra.generator_config`), which decodes as MLM does."""
    seq_len = pretrain["seq_len"]
    if pretrain["objective"] != "electra":
        return model_flops(config, seq_len, predicted_fraction(pretrain, config))
    from ptft.pipeline.electra import generator_config

    generator = generator_config(config, pretrain["generator_size"])
    sparse = getattr(generator, "sparse_prediction", False)
    return model_flops(config, seq_len, 0.0) + model_flops(generator, seq_len, pretrain["mask_prob"] if sparse else 1.0)


def last_succeeded(log: Path, where: Callable[[dict[str, Any]], bool] = lambda entry: True) -> dict[str, Any] | None:
    """The last ``succeeded`` entry of a stage's run log (``logs/<stage>.jsonl``) for which ``where`` holds, or
    None (no such entry, or no log: a fresh clone's)."""
    if not log.is_file():
        return None
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return next((e for e in reversed(entries) if e.get("status") == "succeeded" and where(e)), None)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def measured_speed(threads: int, logs: Path = LOGS, reference: Path = REFERENCE) -> Speed | None:
    """This machine's speed from its own run logs, else the committed run's (on a CPU only), else None."""
    runs = [last_succeeded(logs / f"{stage}.jsonl") for stage in ("pretrain", "finetune")]
    if all(r and r.get("speed", {}).get("train_flops_per_second") and r["environment"]["threads"] == threads
           and r["environment"]["device"].split()[0] == _device() for r in runs):
        pretrain, finetune = (r["speed"]["train_flops_per_second"] for r in runs)
        startup = max(0.0, runs[1]["wall_seconds"] - runs[1]["speed"]["train_runtime"])
        return Speed(pretrain, finetune, startup, f"measured by this checkout's last pretrain and finetune runs "
                                                  f"({runs[1]['environment']['device']}, {threads} threads)")
    if reference.is_file() and _device() == "cpu":
        ref = json.loads(reference.read_text())
        rates = ref.get("rates")
        if not rates:
            return None
        return Speed(rates["pretrain"], rates["finetune"], rates["startup"],
                     f"measured by the committed run on {ref['machine']['cpu']}, {ref['machine']['threads']} threads "
                     f"({reference}); run pretrain and finetune here once for this machine's speed")
    return None


@dataclass(frozen=True)
class Estimate:
    """One stage's estimated time, and what it trains."""

    stage: str
    work: str  # what it trains, in words
    seconds: float


def describe_seconds(seconds: float) -> str:
    """Seconds as a person reads them: 40 s, 12 min, 3.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Sizes:
    """The sizes an estimate needs, read from a prepared checkout: labelled documents per split, the train
    texts' token lengths (a seeded sample, with data/tokenizer) and the pre-training text's tokens."""

    def __init__(self, prepared: Path = Path("data/prepared"), corpus: Path = Path("data/corpus"),
                 tokenizer_dir: Path = Path("data/tokenizer")):
        from ptft.pipeline.blocks import read_meta
        from ptft.pipeline.data import read_split

        self.tokenizer_dir = tokenizer_dir
        splits = {name: read_split(prepared, name) for name in ("train", "validation", "test")}
        self.documents = {name: len(df) for name, df in splits.items()}
        self.corpus_tokens = read_meta(corpus)["tokens"] if (corpus / "meta.json").is_file() else None
        train = splits["train"]["text"]
        sample = train.sample(min(len(train), LENGTH_SAMPLE), random_state=0).tolist()
        self._texts = sample
        self._lengths: dict[str, list[int]] = {}

    def lengths(self, init: str) -> list[int]:
        """Token lengths of the sampled train texts in ``init``'s tokenizer (a checkpoint has its own)."""
        from transformers import AutoTokenizer

        from ptft.pipeline.modeling import checkpoint_tokenizer

        key = "ours" if init in ("scratch", "pretrained") or init.startswith("models/") else init
        if key not in self._lengths:
            tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_dir) if key == "ours" else \
                checkpoint_tokenizer(init)
            # verbose=False: a text longer than the model is cut at max_length later, as fine-tuning cuts it
            self._lengths[key] = [len(ids) for ids in tokenizer(self._texts, verbose=False)["input_ids"]]
        return self._lengths[key]


def finetune_run_flops(settings: dict[str, Any], params: dict[str, Any], sizes: Sizes, train_examples: int,
                       evaluated: int) -> tuple[float, str]:
    """(FLOPs, what it trains in words) of one fine-tuning run from its finetune ``settings``, scoring ``evaluated``
    documents on the way."""
    init, pretrain = settings["init"], params.get("pretrain")
    if init == "pretrained" and pretrain and pretrain["init"] != "scratch":  # continued: the checkpoint's shape
        init = pretrain["init"]
    config = model_config(init, "mlm", params.get("model"), sizes.tokenizer_dir)
    texts = sizes.lengths(init)
    pieces = Windows.from_params(settings).lengths(texts)
    per_text = len(pieces) / max(1, len(texts))  # a long text is read in several windows (finetune.windows)
    length = padded_length(pieces, device_batch(settings), settings["max_length"],
                           settings.get("group_by_length", False))
    passes = run_passes(round(train_examples * per_text), settings)
    per_token = model_flops(config, max(1, round(length)), 0.0)  # a classifier: no vocabulary projection
    flops = finetune_flops(per_token, length, passes, round(evaluated * per_text))
    return flops, f"{passes:,} {'windows' if per_text > 1 else 'examples'} of {length:.0f} tokens"


def finetune_estimate(stage: str, settings: dict[str, Any], params: dict[str, Any], sizes: Sizes, speed: Speed,
                      train_examples: int, runs: int = 1) -> Estimate:
    """A fine-tuning stage (finetune, or a comparison cell of ``runs`` seeds): each run evaluates validation
    ``evals`` times (finetune: every epoch) and scores test once."""
    evals = settings.get("evals", settings["epochs"])
    evaluated = evals * sizes.documents["validation"] + sizes.documents["test"]
    flops, work = finetune_run_flops(settings, params, sizes, train_examples, evaluated)
    return Estimate(stage, f"{runs} runs × " * (runs > 1) + work, runs * (flops / speed.finetune + speed.startup))


def pretrain_estimate(stage: str, pretrain: dict[str, Any], params: dict[str, Any], sizes: Sizes,
                      speed: Speed) -> Estimate:
    if sizes.corpus_tokens is None:
        raise UserError("data/corpus/meta.json not found: run `dvc repro prepare_corpus` first")
    config = model_config(pretrain["init"], pretrain["objective"], params.get("model"), sizes.tokenizer_dir)
    flops, tokens = pretrain_flops(pretrain, config, sizes.corpus_tokens)
    return Estimate(stage, f"{tokens:,} tokens", flops / speed.pretrain + speed.startup)


def speed_for(params: dict[str, Any], flops: float | None = None) -> Speed:
    """``flops`` as given, else the measured speed for ``runtime.threads``; one line saying what to do if none."""
    if flops:
        return Speed(flops, flops, 0.0, f"at {flops:.3g} FLOP/s, as given")
    speed = measured_speed(params["runtime"]["threads"])
    if speed is None:
        raise UserError(f"no measured speed for this {_device()} at runtime.threads={params['runtime']['threads']}: "
                        "run pretrain and finetune once here (their run logs record it), or pass --flops with "
                        "the training FLOP/s this device sustains")
    return speed


def announce(stage: str, params: dict[str, Any], estimate_of: Any) -> None:
    """Print a stage's estimate before it trains: ``estimate_of(sizes, speed)`` gives it. Silent when no speed is
    measured for this device (nothing to scale) or the data it needs is not there: an estimate never stops a run.
    Under torchrun, the first process alone prints it."""
    from ptft.pipeline.runtime import is_main_process

    if not is_main_process():
        return
    try:
        speed = measured_speed(params["runtime"]["threads"])
        if speed is None:
            return
        found = estimate_of(Sizes(), speed)
    except (UserError, OSError):
        return
    if found is None:
        return
    print(f"{stage}: {found.work}, estimated {describe_seconds(found.seconds)} ({speed.source})")
    if found.seconds > LONG and stage.startswith("compare_"):
        print(comparison_advice(found.seconds))


def comparison_advice(seconds: float) -> str:
    return (f"The comparison is long ({describe_seconds(seconds)}): `dvc repro export` builds the model without it, "
            "and `dvc repro compare_report` runs it later; `-S 'compare.budgets=[25,100]'` drops its largest cells, "
            "`-S 'compare.seeds=[1]'` runs one seed instead of three (no error bars).")
