"""Stage prepare_corpus: the pre-training text (pretrain.corpus) cleaned, deduplicated, decontaminated against
validation and test, and tokenised into flat token arrays (data/corpus); the tokenizer trained on a seeded
sample of it (data/tokenizer)."""

import sys
from pathlib import Path

from ptft.pipeline.artifacts import atomic_dir, write_json
from ptft.pipeline.blocks import META, token_dtype, vocabulary_hash
from ptft.pipeline.pretraining_text import (
    build_corpus,
    check_sources,
    corpus_stats,
    held_out_index,
    token_encoder,
    tokenizer_sample,
    use_tokenizer_threads,
)
from ptft.pipeline.stage import run_stage
from ptft.pipeline.tokenizer import save_tokenizer, train_tokenizer

PREPARED = Path("data/prepared")

with run_stage("prepare_corpus") as run:
    pretrain, corpus = run.params["pretrain"], run.params["corpus"]
    sources, identities, warnings = check_sources(pretrain["corpus"], corpus)  # before the long passes
    use_tokenizer_threads(run.threads)
    index = held_out_index(sources, PREPARED, corpus["decontamination_ngram"])
    sample = tokenizer_sample(sources, corpus, PREPARED, index, run.seed)
    trained = train_tokenizer(sample, corpus["vocab_size"], corpus["min_frequency"])
    # Pre-training a checkpoint (pretrain.init) keeps its own tokenizer; the trained one serves the scratch arms.
    if pretrain["init"] == "scratch":
        tokenizer = trained
    else:
        from ptft.pipeline.modeling import checkpoint_tokenizer  # transformers' models: seconds to import

        tokenizer = checkpoint_tokenizer(pretrain["init"])
    dtype = token_dtype(len(tokenizer))
    with atomic_dir("data/corpus") as out:
        shards, report = build_corpus(sources, corpus, PREPARED, index, out, token_encoder(tokenizer), dtype)
        stats = corpus_stats(pretrain["corpus"], report, shards, sample, warnings)
        write_json(out / META, {"dtype": dtype.name, "documents": stats["documents"], "tokens": stats["tokens"],
                                "tokenizer": {"source": "data/tokenizer" if pretrain["init"] == "scratch"
                                              else pretrain["init"], "vocabulary_md5": vocabulary_hash(tokenizer)},
                                "shards": shards})
        run.write_lineage(out, "data/corpus", {key: stats[key] for key in (
            "documents_read", "empty_removed", "duplicates_removed", "decontamination_removed", "documents",
            "tokens")}, corpus=identities)
        with atomic_dir("data/tokenizer") as tokenizer_out:
            save_tokenizer(trained, tokenizer_out)
    write_json(Path("reports/prepare_corpus/stats.json"), stats)
    for warning in stats["warnings"]:  # also kept in the stats
        print(f"prepare_corpus: warning: {warning}", file=sys.stderr)
    removed = stats["decontamination_removed"]
    print(f"prepare_corpus: {stats['documents']} documents, {stats['text_mb']:.1f} MB, {stats['tokens']} tokens "
          f"({stats['duplicates_removed']} repeats, {removed['total']} copies of validation or test text, "
          f"{stats['empty_removed']} empty removed)")
