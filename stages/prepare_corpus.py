"""Stage prepare_corpus: the pre-training text (pretrain.corpus) cleaned, deduplicated, decontaminated against
validation and test, and tokenised into flat token arrays (data/corpus); the tokenizer trained on a seeded
sample of it (data/tokenizer)."""

import sys
from pathlib import Path

from ptft.pipeline.artifacts import atomic_dir, write_json
from ptft.pipeline.blocks import META, vocabulary_hash
from ptft.pipeline.modeling import checkpoint_tokenizer
from ptft.pipeline.pretraining_text import Reservoir, check_sources, clean_corpus, corpus_stats, tokenize_corpus
from ptft.pipeline.stage import run_stage
from ptft.pipeline.tokenizer import save_tokenizer, train_tokenizer

PREPARED = Path("data/prepared")

with run_stage("prepare_corpus") as run:
    pretrain, corpus = run.params["pretrain"], run.params["corpus"]
    sources, identities, warnings = check_sources(pretrain["corpus"], corpus)  # before the long pass
    sample = Reservoir(corpus["tokenizer_documents"], run.seed)
    with atomic_dir("data/corpus") as out:
        shards, report = clean_corpus(sources, corpus, PREPARED, out, sample)
        trained = train_tokenizer(sample.items, corpus["vocab_size"], corpus["min_frequency"])
        # Pre-training a checkpoint (pretrain.init) keeps its own tokenizer; the trained one serves the scratch arms.
        tokenizer = trained if pretrain["init"] == "scratch" else checkpoint_tokenizer(pretrain["init"])
        dtype = tokenize_corpus(out, shards, tokenizer, run.threads)
        tokens = sum(shard["token_count"] for shard in shards.shards)
        stats = corpus_stats(pretrain["corpus"], report, shards, sample, tokens, warnings)
        tokenizer_source = "data/tokenizer" if pretrain["init"] == "scratch" else pretrain["init"]
        write_json(out / META, {"dtype": dtype.name, "documents": stats["documents"], "tokens": tokens,
                                "tokenizer": {"source": tokenizer_source, "vocabulary_md5": vocabulary_hash(tokenizer)},
                                "shards": shards.shards})
        run.write_lineage(out, "data/corpus", {key: stats[key] for key in (
            "documents_read", "empty_removed", "duplicates_removed", "decontamination_removed", "documents",
            "tokens")}, corpus=identities)
        with atomic_dir("data/tokenizer") as tokenizer_out:
            save_tokenizer(trained, tokenizer_out)
    write_json(Path("reports/prepare_corpus/stats.json"), stats)
    for warning in stats["warnings"]:  # also kept in the stats
        print(f"prepare_corpus: warning: {warning}", file=sys.stderr)
    removed = stats["decontamination_removed"]
    print(f"prepare_corpus: {stats['documents']} documents, {stats['text_mb']:.1f} MB, {tokens} tokens "
          f"({stats['duplicates_removed']} repeats, {removed['total']} copies of validation or test text, "
          f"{stats['empty_removed']} empty removed)")
