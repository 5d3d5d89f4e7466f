"""Stage prepare: load, clean and deduplicate the labelled corpus, and split it into train/validation/test
(at random, or as the source's official splits)."""

import sys
from pathlib import Path

from ptft.pipeline.artifacts import atomic_dir, write_json
from ptft.pipeline.data import (
    clean,
    drop_duplicates,
    drop_near_duplicates,
    drop_unlabelled,
    load_corpus,
    split_stats,
    write_splits,
)
from ptft.pipeline.lineage import corpus_identity
from ptft.pipeline.sources import is_local
from ptft.pipeline.splits import assign_splits, drop_cross_split_duplicates, official_splits, split_dataset
from ptft.pipeline.stage import run_stage
from ptft.pipeline.tracked import untracked_problem

with run_stage("prepare") as run:
    data, prepare = run.params["data"], run.params["prepare"]
    official = data["split"] == "official"
    # A file's split column is read only for official splits; a dataset's own splits always come with it.
    corpus, report = load_corpus(data["source"], data["text_column"], data["label_column"],
                                 data["label_separator"], data["split_column"] if official else None)
    raw = corpus_identity(data["source"], corpus, report.hub)
    removed = {}
    if official:
        corpus, removed["unused_splits"] = assign_splits(corpus, data["splits"], data["source"], report.split_column)
    corpus, removed["unlabelled_removed"] = drop_unlabelled(corpus, report)
    corpus, removed["empty_removed"] = clean(corpus, report)
    for warning in report.warnings:  # also kept in reports/prepare/stats.json
        print(f"prepare: warning: {warning}", file=sys.stderr)
    if is_local(data["source"]):  # git state: printed, never kept in an output
        untracked = untracked_problem("data.source", Path(data["source"]), Path.cwd())
        if untracked:
            print(f"prepare: warning: {untracked}", file=sys.stderr)
    if official:  # the test split is never altered; train and validation lose their copies of it
        corpus, found = drop_cross_split_duplicates(corpus, prepare["near_duplicate_jaccard"])
        removed.update(found)
        splits = official_splits(corpus, data["splits"]["validation"] is None, prepare["validation_fraction"],
                                 run.seed, data["source"])
    else:
        # Deduplicate before splitting, so no test document, nor a near copy of one, reaches train or the
        # pre-training text.
        corpus, removed["duplicates_removed"] = drop_duplicates(corpus.drop(columns="split", errors="ignore"))
        corpus, removed["near_duplicates_removed"] = drop_near_duplicates(corpus, prepare["near_duplicate_jaccard"])
        splits = split_dataset(corpus, prepare["validation_fraction"], prepare["test_fraction"], run.seed)

    stats = split_stats(splits, report, removed)
    with atomic_dir("data/prepared") as out:
        write_splits(splits, out)
        run.write_lineage(out, "data/prepared", {key: stats[key] for key in
                                                 ("documents_read", "empty_removed", "duplicates_removed",
                                                  "near_duplicates_removed")},
                          corpus=raw)
    write_json(Path("reports/prepare/stats.json"), stats)
    overlap = removed.get("overlap_removed", {})
    print(f"prepare: {sum(len(s) for s in splits.values())} documents "
          f"({removed['duplicates_removed']} duplicates, {removed['near_duplicates_removed']} near-duplicates, "
          f"{removed['empty_removed']} empty, {removed['unlabelled_removed']} unlabelled, "
          f"{len(report.undecodable)} non-UTF-8 files"
          + (f"; {overlap['train_test']} train copies of test documents removed" if official else "") + ")")
