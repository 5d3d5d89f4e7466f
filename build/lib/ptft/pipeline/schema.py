"""The typed shape of params.yaml (pydantic): every key, its type and its allowed values or range.

Each field's comment in params.yaml says what it does; this says what it may be. A whole file is
checked at the start of every stage, before any slow work, and every problem comes back as one
line naming the key: an unknown key (with the closest known one), a wrong type, a value out of
range, or a combination that cannot work (heads that do not divide hidden, a sequence longer than
the position embeddings, split fractions that leave no train split).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ptft.pipeline.sources import CORPUS_ENTRIES, FILE_FORMATS, HUB_SOURCE, RAW_DATA, SUPPORTED_SOURCES, is_under

Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


def _budget(value: Any) -> int | str:
    if value != "all" and not (type(value) is int and value > 0):
        raise ValueError(f"a budget is a positive number of labelled examples or 'all', got {value!r}")
    return value


Budget = Annotated[Any, AfterValidator(_budget)]
SPLIT_ROLES = ("train", "validation", "test")
FREEZE = re.compile(r"none|embeddings(\+\d+)?|all-but-head")
# Keys that moved: a params file written for an older ptft gets told where they went.
MOVED = {"prepare.vocab_size": "corpus.vocab_size", "prepare.min_frequency": "corpus.min_frequency"}
# Names users bring from transformers' TrainingArguments and run_mlm.py, for "did you mean".
SYNONYMS = {"learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size",
            "train_batch_size": "batch_size", "gradient_accumulation_steps": "accumulation",
            "warmup_ratio": "warmup", "max_seq_length": "max_length", "mlm_probability": "mask_prob",
            "block_size": "seq_len", "num_layers": "layers", "hidden_size": "hidden", "num_heads": "heads"}


class Block(BaseModel):
    # strict: a quoted "1e-3" or "yes" stays a string and is refused, rather than guessed at.
    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)


class Runtime(Block):
    """How the stages run: CPU threads, determinism, the launcher and the GPU speed options."""

    threads: Positive
    """CPU threads, shared by torchrun's processes; CPU results are bit-exact only for the same count"""
    kernels: Literal["avx2", "compatible", "avx512", "native"]
    """the CPU kernels, pinned for the same bytes on other CPUs: avx2 (Intel CPUs with AVX2) | compatible (Intel
    and AMD CPUs with AVX2; slower) | avx512 (CPUs with AVX-512) | native (each library picks its fastest; bytes
    then differ across CPU models)"""
    deterministic: bool
    """false: cuDNN autotuning and TF32 matmuls on GPUs (faster; reruns no longer bit-exact)"""
    launch: Annotated[str, Field(min_length=1)]
    """how pretrain and finetune start: python, or torchrun --nproc_per_node=N (data-parallel)"""
    bf16: bool
    """bf16 autocast (GPUs since A100; slow on most CPUs)"""
    compile: bool
    """torch.compile the model (a minute of compiling first; needs a C++ compiler on CPU)"""


def _text_columns(value: Any) -> str | list[str]:
    fields = [value] if isinstance(value, str) else value
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise ValueError(f"a column name or a list of column names, got {value!r}")
    if len(set(fields)) < len(fields):
        raise ValueError(f"{fields} names a column twice; list each text field once")
    return value


class SplitNames(Block):
    """The names of the source's train, validation and test splits (data.split: official)."""

    train: Annotated[str, Field(min_length=1)]
    """the source's name of its train split"""
    validation: Annotated[str, Field(min_length=1)] | None
    """the source's name of its validation split, or null to carve validation from train"""
    test: Annotated[str, Field(min_length=1)]
    """the source's name of its test split"""


class Data(Block):
    """The labelled data: where it comes from, its columns, and how it is split."""

    source: Annotated[str, Field(min_length=1)]
    """bbc | under data/raw/: a file.{csv,jsonl,parquet}, a <label>/*.txt folder or a save_to_disk folder |
    hf:<dataset id>[:<config>][@<revision>]"""
    text_column: Annotated[Any, AfterValidator(_text_columns)]
    """the text column of a file or dataset (ignored for folders), or a list of fields, joined with " [SEP] " between
    them"""
    label_column: Annotated[str, Field(min_length=1)]
    """one label per row; a list of labels per row (or label_separator) makes the task multi-label"""
    label_separator: Annotated[str, Field(min_length=1)] | None
    """e.g. "|": split a string label into several labels (multi-label tags)"""
    split: Literal["random", "official"]
    """random: pool every labelled row and split by prepare's fractions | official: the source's own splits"""
    split_column: Annotated[str, Field(min_length=1)]
    """official, for a file: the column that names each row's split"""
    splits: SplitNames
    """official: the source's names of its splits; validation null = carve it from train"""

    @model_validator(mode="after")
    def _source_is_readable(self) -> Data:
        # Checked here so that every stage, not only prepare, refuses a bad source before slow work.
        # A Hub id is checked when prepare loads it: the Hub may not be reachable now.
        if self.source.startswith("hf:") and not HUB_SOURCE.fullmatch(self.source):
            raise ValueError(f"data.source '{self.source}' is not of the form hf:<dataset id>[:<config>][@<revision>]")
        names = [name for name in self.splits.model_dump().values() if name is not None]
        if len(set(names)) < len(names):
            raise ValueError(f"data.splits names one split twice ({names}); give train, validation and test "
                             "their own splits (validation: null carves it from train)")
        if self.source == "bbc" or self.source.startswith("hf:"):
            if self.source == "bbc" and self.split == "official":
                raise ValueError("data.split is 'official' but the bbc corpus has no official splits; set data.split "
                                 "to random")
            return self
        path = Path(self.source)
        if not path.exists():
            raise ValueError(f"data.source '{self.source}' does not exist; set it to {SUPPORTED_SOURCES}")
        if path.is_file() and path.suffix.lower() not in FILE_FORMATS:
            raise ValueError(f"data.source '{self.source}' has an unsupported extension '{path.suffix}'; "
                             f"set it to {SUPPORTED_SOURCES}")
        if not is_under(path, RAW_DATA):
            raise ValueError(f"data.source '{self.source}' is outside {RAW_DATA}/, the folder prepare declares to DVC, "
                             f"so DVC would not see it change; move it there (mkdir -p {RAW_DATA} && mv "
                             f"{self.source} {RAW_DATA}/), set data.source to {RAW_DATA / path.name}, and track it "
                             f"with git add or, if large, dvc add")
        return self


class Prepare(Block):
    """How prepare cleans, deduplicates and splits the labelled data."""

    validation_fraction: Annotated[float, Field(gt=0, lt=1)]
    """of all rows (data.split random), or of train when validation is carved from it (official)"""
    test_fraction: Annotated[float, Field(gt=0, lt=1)]
    """data.split random only"""
    near_duplicate_jaccard: Annotated[float, Field(gt=0, le=1)]
    """drop a text whose word 5-gram Jaccard with an earlier one is at least this"""

    @model_validator(mode="after")
    def _leaves_a_train_split(self) -> Prepare:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError(f"prepare.validation_fraction + prepare.test_fraction is "
                             f"{self.validation_fraction + self.test_fraction:g}, which leaves no real train split; "
                             "keep the sum below 0.9")
        return self


class Model(Block):
    """The encoder that pretrain builds (and finetune.init=scratch rebuilds)."""

    family: Literal["modernbert", "bert"]
    """modernbert (pre-LN, sparse MLM decoding) | bert"""
    layers: Positive
    """transformer layers"""
    hidden: Positive
    """hidden size"""
    heads: Positive
    """attention heads (they must divide hidden)"""
    intermediate: Positive
    """feed-forward size"""
    max_position: Positive
    """position embeddings: the longest sequence the model takes"""
    dropout: Fraction
    """dropout probability (0 = off)"""

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> Model:
        if self.hidden % self.heads:
            raise ValueError(f"model.heads ({self.heads}) must divide model.hidden ({self.hidden})")
        return self


def _corpus(value: Any) -> str | list[str]:
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise ValueError(f"a source or a list of sources, got {value!r}; set it to {CORPUS_ENTRIES}")
    if not entries:
        raise ValueError(f"an empty list; set it to {CORPUS_ENTRIES}")
    for entry in entries:
        if not entry.strip():
            raise ValueError(f"an empty entry; set each entry to {CORPUS_ENTRIES}")
        if entry.startswith("hf:") and not HUB_SOURCE.fullmatch(entry):
            raise ValueError(f"'{entry}' is not of the form hf:<dataset id>[:<config>][@<revision>]")
    repeated = sorted({entry for entry in entries if entries.count(entry) > 1})
    if repeated:
        raise ValueError(f"{repeated} listed twice; list each source once")
    return value


def _init(value: str) -> str:
    match = HUB_SOURCE.fullmatch(value) if value.startswith("hf:") else None
    if value.startswith("hf:") and (match is None or match["config"]):
        raise ValueError(f"'{value}' is not of the form hf:<model id>[@<revision>]")
    return value


Init = Annotated[str, Field(min_length=1), AfterValidator(_init)]


class Pretrain(Block):
    """Self-supervised pre-training of models/pretrained."""

    init: Init
    """scratch | minilm | path/to/hf-checkpoint | hf:<model id>[@<revision>] (continue pre-training it)"""
    corpus: Annotated[Any, AfterValidator(_corpus)]
    """train (the labelled train split) | a file, folder or glob under corpus/ | hf:<id>[:<config>][@<revision>] | a
    list"""
    objective: Literal["mlm", "clm", "electra"]
    """mlm (masked LM, model.family) | clm (causal LM, GPT-2 of the same size) | electra (replaced-token detection)"""
    seq_len: Annotated[int, Field(ge=8)]
    """tokens per block; texts are concatenated and cut into blocks"""
    mask_prob: Annotated[float, Field(gt=0, lt=1)]
    """share of tokens masked (mlm: 80% [MASK], 10% random, 10% kept; electra: replaced by the generator)"""
    generator_size: Annotated[float, Field(gt=0, le=1)]
    """electra: the generator's width (hidden, heads, feed-forward) as a fraction of the model's"""
    epochs: PositiveFloat
    """passes over the pre-training text (a fraction is allowed)"""
    max_steps: Positive | None
    """or N optimizer steps instead of epochs (a corpus too large for an epoch)"""
    tokens: Positive | None
    """or N tokens: steps = N / (batch_size x seq_len); one budget at most"""
    batch_size: Positive
    """the global batch of one optimizer step, whatever the launch"""
    accumulation: Positive
    """micro-batches per step: each process runs batch_size / (processes x this) at once"""
    lr: PositiveFloat
    """peak learning rate (AdamW)"""
    warmup: Fraction
    """share of steps with linear warmup, then linear decay"""
    weight_decay: Annotated[float, Field(ge=0)]
    """AdamW weight decay"""
    evals: Positive
    """validation evaluations (and checkpoints to resume from) per run"""

    @model_validator(mode="after")
    def _one_budget(self) -> Pretrain:
        if self.max_steps is not None and self.tokens is not None:
            raise ValueError("pretrain.max_steps and pretrain.tokens are both set; keep one budget and set the "
                             "other to null (either replaces pretrain.epochs)")
        if self.objective == "electra" and self.init != "scratch":
            raise ValueError(f"pretrain.objective electra pre-trains from scratch (a discriminator and its generator "
                             f"together), not from pretrain.init '{self.init}'; set init: scratch, or objective: mlm "
                             "to continue a checkpoint")
        return self


class Corpus(Block):
    """How prepare_corpus turns pretrain.corpus into data/corpus (token arrays) and data/tokenizer."""

    text_column: Annotated[str, Field(min_length=1)]
    """the text field of .jsonl/.json/.parquet records and hf: rows"""
    txt_documents: Literal["paragraph", "line", "file"]
    """a document in a .txt file: paragraph (up to a blank line) | line | file"""
    hf_split: Annotated[str, Field(min_length=1)]
    """the split of an hf: corpus that is streamed"""
    decontamination_ngram: Annotated[int, Field(ge=5)]
    """words: a document sharing one such n-gram with a validation or test document is removed"""
    vocab_size: Annotated[int, Field(ge=100)]
    """WordPiece vocabulary, trained on the pre-training text (never on validation or test)"""
    min_frequency: Positive
    """a WordPiece token must occur at least this often"""
    tokenizer_documents: Positive
    """the tokenizer's sample: at most this many documents (seeded), each cut to 30,000 characters"""


class Finetune(Block):
    """Fine-tuning of models/finetuned."""

    init: Init
    """pretrained | scratch | minilm | path/to/hf-checkpoint | hf:<model id>[@<revision>]"""
    lr: PositiveFloat
    """peak learning rate (AdamW; the head's, with layer_lr_decay)"""
    epochs: PositiveFloat
    """epochs; the one with the best validation macro-F1 is kept"""
    batch_size: Positive
    """the global batch, as for pretrain"""
    accumulation: Positive
    """micro-batches per step, as for pretrain"""
    max_length: Annotated[int, Field(ge=8)]
    """tokens per window (a document's first window, unless windows > 1); batches are padded to their longest"""
    windows: Positive
    """1 = truncate at max_length; N = read a longer document as up to N overlapping windows, their logits averaged"""
    window_overlap: Annotated[int, Field(ge=0)]
    """tokens that consecutive windows share (windows > 1), at most half of max_length"""
    group_by_length: bool
    """batch documents of similar length: 15% faster at max_length 512 here, nothing at 128"""
    train_examples: Positive | None
    """null = all labelled train examples, or N (seeded, stratified)"""
    seed: int | None
    """null = the global seed; set it to reseed fine-tuning alone"""
    freeze: str
    """none | embeddings | embeddings+N | all-but-head"""
    pooling: Literal["mean", "cls"]
    """mean | cls (ModernBERT); BERT checkpoints use [CLS] and their pooler"""
    warmup: Fraction
    """share of steps with linear warmup, then linear decay"""
    weight_decay: Annotated[float, Field(ge=0)]
    """AdamW weight decay"""
    layer_lr_decay: Annotated[float, Field(gt=0, le=1)]
    """1.0 = off; d < 1: each layer d times the rate of the one above (head: lr)"""

    @model_validator(mode="after")
    def _windows_fit(self) -> Finetune:
        if self.windows > 1 and self.window_overlap > self.max_length // 2:
            raise ValueError(f"finetune.window_overlap ({self.window_overlap}) is more than half of "
                             f"finetune.max_length ({self.max_length}): each window would add little new text; "
                             "lower it")
        return self

    @model_validator(mode="after")
    def _freeze_is_known(self) -> Finetune:
        if not FREEZE.fullmatch(self.freeze):
            raise ValueError(f"finetune.freeze '{self.freeze}' is not valid; choose one of: none, embeddings, "
                             "embeddings+N (N lowest layers too), all-but-head")
        return self


class Evaluate(Block):
    """Scoring the fine-tuned model (evaluate, test, and export's checks)."""

    batch_size: Positive
    """texts per forward pass"""


class Export(Block):
    """How export writes models/exported: the fine-tuned classifier as ONNX (and int8), checked on validation."""

    opset: Annotated[int, Field(ge=18)]  # torch.onnx's exporter writes opset 18 and up
    """ONNX opset (18 or later); an older runtime may need a lower one"""
    quantize: bool
    """also write model.int8.onnx: int8 weights (ONNX Runtime's dynamic quantisation)"""
    max_probability_diff: PositiveFloat
    """ONNX vs PyTorch: a larger difference, or any changed prediction, fails the stage"""
    int8_max_accuracy_drop: Annotated[float, Field(ge=0, le=100)]
    """points of validation accuracy int8 may lose; more fails the stage"""


class Compare(Block):
    """The evidence in reports/compare: what does pre-training buy, per label budget?."""

    budgets: Annotated[list[Budget], Field(min_length=1)]
    """labelled train examples per run (all = the whole train split)"""
    minilm_budgets: list[Budget]
    """all-MiniLM-L6-v2 (the minilm extra): 13x our model's compute, so off by default"""
    minilm_settings: dict[str, Any]
    """finetune overrides for it (a pre-trained BERT wants a smaller rate)"""
    seeds: Annotated[list[int], Field(min_length=1)]
    """one run per seed, each on its own stratified subset: the error bars"""
    epochs: Positive
    """fine-tuning epochs of every run, or min_steps optimizer steps if that is longer"""
    min_steps: Annotated[int, Field(ge=0)]
    """so that 25 examples (2 batches an epoch) still get a real training run"""
    evals: Positive
    """validation evaluations per run; the best one is kept (never the test split)"""
    focus_budget: Budget
    """the budget the variants run at"""
    variants: list[str]
    """run at focus_budget"""
    variant_settings: dict[str, dict[str, Any]]
    """the finetune overrides of each variant (fine-tuning the pre-trained model)"""
    objectives: list[str]
    """which objective? Each pre-trains its own model, fine-tuned at focus_budget"""
    objective_settings: dict[str, dict[str, Any]]
    """merged over the pretrain params less their budget (tokens, max_steps): each its own, epochs unless set"""
    continued: list[Literal["minilm"]]
    """[minilm]: all-MiniLM-L6-v2 pre-trained further on the pre-training text (13 min an epoch of BBC train here),
    then fine-tuned (4 min a cell)"""
    continued_budgets: list[Budget]
    """at these budgets, beside minilm itself at minilm_budgets (domain-adaptive pre-training)"""
    continued_settings: dict[str, Any]
    """pretrain overrides for it (its budget too: never the main run's tokens or max_steps)"""

    @model_validator(mode="after")
    def _settings_for_every_arm(self) -> Compare:
        for names, settings, key in ((self.variants, self.variant_settings, "variant_settings"),
                                     (self.objectives, self.objective_settings, "objective_settings")):
            missing = [name for name in names if name not in settings]
            if missing:
                raise ValueError(f"compare.{key} has no entry for {missing}; add one (the overrides of that arm)")
        # Every objective reads the main run's token arrays, and a continued checkpoint is the init: they share
        # the pretrain params' corpus (and init), and override the rest.
        blocks = {f"objective_settings.{name}": s for name, s in self.objective_settings.items()}
        for key, settings in {**blocks, "continued_settings": self.continued_settings}.items():
            shared = sorted({"init", "corpus"} & set(settings))
            if shared:
                raise ValueError(f"compare.{key} sets {shared}, which come from the pretrain params (and "
                                 "compare.continued); set them there")
            unknown = sorted(set(settings) - set(Pretrain.model_fields))
            if unknown:
                raise ValueError(f"compare.{key} sets {unknown}, which are not pretrain params")
        return self


class Params(Block):
    seed: int
    """python, numpy, torch, data order, masking, splits"""
    runtime: Runtime
    data: Data
    prepare: Prepare
    model: Model
    pretrain: Pretrain
    corpus: Corpus
    finetune: Finetune
    evaluate: Evaluate
    export: Export
    compare: Compare

    @model_validator(mode="after")
    def _fits_the_model(self) -> Params:
        if self.pretrain.init == "scratch" and self.pretrain.seq_len > self.model.max_position:
            raise ValueError(f"pretrain.seq_len ({self.pretrain.seq_len}) exceeds model.max_position "
                             f"({self.model.max_position}), the position embeddings; lower it or raise max_position")
        if self.finetune.init in ("pretrained", "scratch") and self.finetune.max_length > self.model.max_position:
            raise ValueError(f"finetune.max_length ({self.finetune.max_length}) exceeds model.max_position "
                             f"({self.model.max_position}), the position embeddings; lower it or raise max_position")
        return self


def problems(params: dict[str, Any]) -> list[str]:
    """Every problem with ``params`` (a whole params.yaml), one line each naming its key; empty if it is valid."""
    try:
        Params.model_validate(params)
    except ValidationError as err:
        return [_describe(error) for error in err.errors()]
    return []


def _describe(error: dict[str, Any]) -> str:
    path = [str(part) for part in error["loc"]]
    key = ".".join(path)
    if error["type"] == "extra_forbidden" and key in MOVED:
        return f"param '{key}' has moved to '{MOVED[key]}': rename it in params.yaml"
    if error["type"] == "extra_forbidden":
        known = _fields_at(path[:-1])
        match = difflib.get_close_matches(path[-1], [*known, *SYNONYMS], n=1)
        if match:
            return f"unknown param '{key}'; did you mean '{'.'.join([*path[:-1], SYNONYMS.get(match[0], match[0])])}'?"
        return f"unknown param '{key}'; the keys here are: {', '.join(known)}"
    if error["type"] == "missing":
        return f"params.yaml has no '{key}': add it (params.yaml in the repository lists every key)"
    if error["type"] == "value_error":  # the checks above; those across keys name them
        message = error["msg"].removeprefix("Value error, ")
        return message if not path or message.startswith(f"{path[0]}.") else f"{key}: {message}"
    value = error.get("input")
    shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
    return f"{key}: {error['msg']}{shown}"


def _fields_at(path: list[str]) -> list[str]:
    """The known keys of the block at ``path`` (top level for an empty path)."""
    model: type[BaseModel] = Params
    for part in path:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
