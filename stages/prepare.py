"""Stage prepare: load, clean and deduplicate the labelled corpus, and split it into train/validation/test."""

import sys
from pathlib import Path

from ptft.pipeline.artifacts import atomic_dir, write_json
from ptft.pipeline.data import (
    clean,
    drop_duplicates,
    drop_near_duplicates,
    load_corpus,
    split_dataset,
    split_stats,
    write_splits,
)
from ptft.pipeline.lineage import corpus_identity
from ptft.pipeline.stage import run_stage

with run_stage("prepare") as run:
    data, prepare = run.params["data"], run.params["prepare"]
    corpus, report = load_corpus(data["source"], data["text_column"], data["label_column"])
    raw = corpus_identity(data["source"], corpus)
    corpus, empty = clean(corpus, report)
    for warning in report.warnings:  # also kept in reports/prepare/stats.json
        print(f"prepare: warning: {warning}", file=sys.stderr)
    # Deduplicate before splitting, so no test document, nor a near copy of one, reaches train or the
    # pre-training text.
    corpus, duplicates = drop_duplicates(corpus)
    corpus, near = drop_near_duplicates(corpus, prepare["near_duplicate_jaccard"])
    splits = split_dataset(corpus, prepare["validation_fraction"], prepare["test_fraction"], run.seed)

    stats = split_stats(splits, report, empty, duplicates, near)
    with atomic_dir("data/prepared") as out:
        write_splits(splits, out)
        run.write_lineage(out, "data/prepared", {key: stats[key] for key in
                                                 ("documents_read", "empty_removed", "duplicates_removed",
                                                  "near_duplicates_removed")},
                          corpus=raw)
    write_json(Path("reports/prepare/stats.json"), stats)
    print(f"prepare: {sum(len(s) for s in splits.values())} documents "
          f"({duplicates} duplicates, {near} near-duplicates, {empty} empty, "
          f"{len(report.undecodable)} non-UTF-8 files)")
