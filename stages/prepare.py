"""Stage prepare: load, clean and deduplicate the corpus, split it, and train the tokenizer."""

from pathlib import Path

from ptft.artifacts import atomic_dir, write_json
from ptft.data import clean, drop_duplicates, load_corpus, split_dataset, split_stats, write_splits
from ptft.params import load_params
from ptft.runtime import setup_runtime
from ptft.tokenizer import save_tokenizer, train_tokenizer

params = load_params()
data, prepare = params["data"], params["prepare"]
setup_runtime(params["seed"], params["runtime"]["threads"])

corpus, report = load_corpus(data["source"], data["text_column"], data["label_column"])
corpus, empty = clean(corpus)
# Deduplicate before splitting, so no test document reaches train or the pre-training text.
corpus, duplicates = drop_duplicates(corpus)
splits = split_dataset(corpus, prepare["validation_fraction"], prepare["test_fraction"], params["seed"])
tokenizer = train_tokenizer(splits["train"]["text"], prepare["vocab_size"], prepare["min_frequency"])

with atomic_dir("data/prepared") as out:
    write_splits(splits, out)
with atomic_dir("data/tokenizer") as out:
    save_tokenizer(tokenizer, out)
stats = split_stats(splits, report, empty, duplicates)
write_json(Path("reports/prepare/stats.json"), stats)
print(f"prepare: {sum(len(s) for s in splits.values())} documents "
      f"({duplicates} duplicates, {empty} empty, {len(report.undecodable)} non-UTF-8 files)")
