"""Train a BERT-style WordPiece tokenizer and save it in Hugging Face format."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# The trainer adds these first, in this order, so their ids are 0..4.
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]
PREFIX = "##"  # WordPiece's mark for a piece that continues a word


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """Train an uncased WordPiece tokenizer on `texts` and wrap it for transformers."""
    texts = list(texts)  # read twice: once for the continuation alphabet, once by the trainer
    backend = _untrained_backend()
    seeds = _continuation_alphabet(backend, texts)
    # The trainer numbers the "##x" pieces in hash-map order, which differs from run to run and
    # also breaks ties between equally frequent merges (huggingface/tokenizers#1794). Passing them
    # as special tokens fixes their ids up front, in sorted order, so training is reproducible.
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS + seeds,
        continuing_subword_prefix=PREFIX,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))
    backend = _with_vocab(backend.get_vocab(with_added_tokens=False))  # drop the seeds' special status
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        pad_token=PAD,
        cls_token=CLS,
        sep_token=SEP,
        mask_token=MASK,
        model_max_length=model_max_length,
    )


def _continuation_alphabet(backend: Tokenizer, texts: list[str]) -> list[str]:
    """Every "##x" piece the trainer would create: characters seen after a word's first one."""
    # The pre-tokenizer splits at spaces before anything else, so each distinct space-separated chunk of the
    # normalised texts, pre-tokenised once in one joined string, gives the same words as every text in turn.
    chunks: set[str] = set()
    for text in texts:
        chunks.update(backend.normalizer.normalize_str(text).split(" "))
    chars: set[str] = set()
    for word, _ in backend.pre_tokenizer.pre_tokenize_str(" ".join(sorted(chunks))):
        chars.update(word[1:])
    return [PREFIX + char for char in sorted(chars)]


def _untrained_backend(model: models.Model | None = None) -> Tokenizer:
    """The BERT pipeline: clean + lowercase + strip accents, split on whitespace/punctuation, WordPiece."""
    backend = Tokenizer(model or models.WordPiece(unk_token=UNK, continuing_subword_prefix=PREFIX))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, lowercase=True, strip_accents=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix=PREFIX)
    return backend


def _with_vocab(vocab: dict[str, int]) -> Tokenizer:
    """A fresh BERT pipeline over a trained vocab, with only the real special tokens and the template."""
    backend = _untrained_backend(models.WordPiece(vocab=vocab, unk_token=UNK, continuing_subword_prefix=PREFIX))
    backend.add_special_tokens(SPECIAL_TOKENS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    return backend


def save_tokenizer(tok: PreTrainedTokenizerFast, out_dir: Path) -> list[str]:
    """Save in the format `AutoTokenizer.from_pretrained(out_dir)` reads; return the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [str(path) for path in tok.save_pretrained(out_dir)]
