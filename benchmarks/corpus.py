"""The prepare_corpus stage at scale: throughput and peak memory on a generated corpus (a benchmark, not a test).

Measures, in a temporary git clone of the repository's committed HEAD (HEAD is what is benchmarked, not the
working tree): the real stage (``python stages/prepare_corpus.py``, run as DVC would) on a generated corpus at
each of two or more sizes, reporting

- wall seconds and MB/s (megabytes, 10^6 bytes, of raw document text over the stage's wall time, its start-up
  included; generating the corpus is not timed);
- peak RSS (MiB) of the stage's process: its kernel high-water mark (VmHWM), or the RSS of its process tree
  sampled every 20 ms if that is higher; and its CPU seconds, with the CPU time other processes took meanwhile
  (a busy machine slows the stage: the measurement is clean only when that is near 0);
- what the stage read back in ``reports/prepare_corpus/stats.json``: documents, tokens, and the planted exact
  repeats and copies of validation text that deduplication and decontamination removed.

The corpus is seeded: documents of 100-800 words drawn from a Zipf-Mandelbrot distribution over the words of
the BBC train split, with sentence punctuation and capitals, in gzip JSON Lines shards of about 32 MB of text
plus one plain .txt shard (a paragraph per document). The goals (the issue's): peak RSS grows by less than 20%
from the smallest size to the largest, time grows linearly, and the stage runs at 5 MB/s or more on 2 cores.

Usage:  python benchmarks/corpus.py [--sizes 50,200] [--quick] [--out benchmarks/results]
Writes corpus.json and corpus.md under --out.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("benchmarks/results")
SHARD_MB = 32  # raw text per generated shard
MIN_WORDS, MAX_WORDS = 100, 800  # words per generated document
ZIPF_S, ZIPF_Q = 1.0, 2.7  # p(rank r) ∝ 1 / (r + q)^s: Zipf-Mandelbrot, the usual fit of word frequencies
SENTENCE_END, COMMA, QUESTION = 1 / 18, 0.05, 0.05  # per word; QUESTION is the share of sentence ends
PLANTED = {"duplicates": 6, "copy": 4, "shared_ngram": 4}  # exact repeats, validation copies, quoted passages
QUOTE_WORDS = 30  # a quoted validation passage: 18 shared 13-grams, under half of its host's (not a near copy)
WARMUP_MB = 0.5
SAMPLE_SECONDS = 0.02
CHILDREN_EVERY = 25  # samples between scans for child processes: a /proc scan every 20 ms would steal CPU
RSS_GOAL, SPEED_GOAL, LINEAR_SLACK = 0.20, 5.0, 1.10
WORD = re.compile(r"\w+(?:'\w+)?")


@dataclass
class Vocabulary:
    """Word forms (8 per word: plain, comma, full stop, question mark; each also capitalised) and their odds."""

    forms: np.ndarray  # object array, (words, 8)
    p: np.ndarray
    bytes_per_word: float  # expected UTF-8 bytes a drawn word adds, its space and punctuation included


def vocabulary(train_texts: list[str]) -> Vocabulary:
    """The BBC train split's words ranked by frequency, with Zipf-Mandelbrot odds over the ranks."""
    words = [w for w, _ in Counter(w for text in train_texts for w in WORD.findall(text)).most_common()]
    p = 1.0 / (np.arange(1, len(words) + 1) + ZIPF_Q) ** ZIPF_S
    p /= p.sum()
    forms = np.empty((len(words), 8), dtype=object)
    for i, word in enumerate(words):
        capital = word[:1].upper() + word[1:]
        forms[i] = [word, word + ",", word + ".", word + "?", capital, capital + ",", capital + ".", capital + "?"]
    lengths = np.array([len(w.encode()) for w in words])
    return Vocabulary(forms, p, float(p @ lengths) + 1 + COMMA + SENTENCE_END)


def generate_documents(vocab: Vocabulary, target_bytes: int, rng: np.random.Generator) -> list[str]:
    """About ``target_bytes`` of documents, every word drawn at once (vectorised): a Python loop per word would
    take minutes for 200 MB."""
    words_needed = int(1.02 * target_bytes / vocab.bytes_per_word)  # a little over, cut to size below
    lengths = rng.integers(MIN_WORDS, MAX_WORDS + 1, size=words_needed // MIN_WORDS + 1)
    ends = np.cumsum(lengths)
    count = int(np.searchsorted(ends, words_needed)) + 1
    lengths, ends = lengths[:count], ends[:count]
    total = int(ends[-1])
    ids = rng.choice(len(vocab.p), size=total, p=vocab.p)
    sentence_end = rng.random(total) < SENTENCE_END
    sentence_end[ends - 1] = True  # a document ends a sentence
    variant = np.where(rng.random(total) < COMMA, 1, 0)
    variant[sentence_end] = np.where(rng.random(int(sentence_end.sum())) < QUESTION, 3, 2)
    start = np.roll(sentence_end, 1)  # the word after a sentence end (and a document's first) is capitalised
    variant += 4 * start
    tokens = vocab.forms[ids, variant].tolist()
    documents = [" ".join(tokens[a:b]) for a, b in zip((ends - lengths).tolist(), ends.tolist())]
    sizes = np.cumsum([len(text.encode()) for text in documents])
    return documents[: int(np.searchsorted(sizes, target_bytes)) + 1]  # the first that reach target_bytes


def free_slot(shards: list[list[str]], shard: int, used: set[tuple[int, int]], rng: np.random.Generator) -> int:
    """A random document of ``shard`` to replace with a planted one: not one planted already, and not one of the
    first shard's documents that are repeated."""
    while True:
        slot = int(rng.integers(PLANTED["duplicates"], len(shards[shard])))
        if (shard, slot) not in used:
            used.add((shard, slot))
            return slot


def quoted(host: str, passage: list[str], rng: np.random.Generator) -> str:
    """``host`` with ``passage`` (validation words, verbatim) inserted in its middle: a quote, as in a news digest."""
    words = host.split()
    at = int(rng.integers(len(words) // 4, 3 * len(words) // 4))
    return " ".join([*words[:at], *passage, *words[at:]])


def write_shard(path: Path, documents: list[str]) -> int:
    """Write a JSON Lines .gz or a .txt shard (a paragraph per document); return its raw text bytes."""
    if path.suffix == ".gz":
        # Level 1: generation stays fast; decompression speed hardly depends on the level.
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
            f.writelines(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in documents)
    else:
        path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return sum(len(text.encode()) for text in documents)


def generate_corpus(folder: Path, mb: float, vocab: Vocabulary, validation: list[str],
                    seed: int) -> dict[str, Any]:
    """A seeded corpus of ``mb`` MB of text under ``folder``, with the PLANTED repeats and validation copies.

    Planted documents replace generated ones, so the corpus keeps its size. Repeats copy documents of the first
    shard into the last (a .txt: deduplication works across formats); validation documents are copied whole
    (``copy``) or quoted, 30 words in a generated host (``shared_ngram``).
    """
    rng = np.random.default_rng(seed)
    count = max(2, math.ceil(mb / SHARD_MB))  # two at least: one of each format
    shards = [generate_documents(vocab, int(mb * 1e6 / count), rng) for _ in range(count)]
    chosen = rng.choice(len(validation), size=PLANTED["copy"] + PLANTED["shared_ngram"], replace=False)
    used: set[tuple[int, int]] = set()
    for text in shards[0][: PLANTED["duplicates"]]:
        shards[-1][free_slot(shards, count - 1, used, rng)] = text
    for i in chosen[: PLANTED["copy"]]:
        shard = int(rng.integers(0, count))
        shards[shard][free_slot(shards, shard, used, rng)] = validation[i]
    for i in chosen[PLANTED["copy"] :]:
        words = validation[i].split()
        at = int(rng.integers(0, len(words) - QUOTE_WORDS + 1))
        shard = int(rng.integers(0, count))
        slot = free_slot(shards, shard, used, rng)
        shards[shard][slot] = quoted(shards[shard][slot], words[at : at + QUOTE_WORDS], rng)
    folder.mkdir(parents=True)
    written = 0
    for i, documents in enumerate(shards):
        suffix = ".txt" if i == count - 1 else ".jsonl.gz"
        written += write_shard(folder / f"shard-{i:03d}{suffix}", documents)
    return {"mb": written / 1e6, "documents": sum(len(s) for s in shards), "shards": count,
            "planted": dict(PLANTED)}


class PeakRss:
    """The peak memory of a process and its children, read every SAMPLE_SECONDS in a thread.

    For the process itself, its kernel high-water mark (VmHWM): exact, whatever happens between two reads. Not
    ``wait4``'s ru_maxrss, which also counts the parent's memory at spawn (vfork shares the parent's pages until
    exec). Children, if any, add their RSS as sampled.
    """

    def __init__(self, pid: int):
        self.pid, self.hwm, self.tree, self._stop = pid, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return
        children: list[psutil.Process] = []
        sample = 0
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                if sample % CHILDREN_EVERY == 0:
                    children = process.children(recursive=True)
                rss = process.memory_info().rss
                self.hwm = max(self.hwm, _high_water_mark(self.pid))
            except (psutil.Error, OSError):  # ended
                return
            for child in children:
                try:
                    rss += child.memory_info().rss
                except psutil.Error:
                    pass
            self.tree = max(self.tree, rss)
            sample += 1

    def stop(self) -> int:
        """Stop reading; the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return max(self.hwm, self.tree)


def _high_water_mark(pid: int) -> int:
    """VmHWM of ``pid`` in bytes (0 where /proc does not say, as for a zombie)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def clone_env(clone: Path) -> dict[str, str]:
    """This interpreter first on PATH, and the clone's own library (the code that DVC would hash and run)."""
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(clone / "src"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_measured(script: str, clone: Path, log: Path) -> dict[str, float]:
    """Run ``python <script>`` in the clone; its wall seconds and peak RSS. Fails with the log's tail."""
    with log.open("w") as out:
        busy_before = _busy_seconds()
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, script], cwd=clone, env=clone_env(clone), stdout=out,
                                   stderr=subprocess.STDOUT)
        sampler = PeakRss(process.pid)
        # wait4 reaps this very child and returns its own CPU times (RUSAGE_CHILDREN would add up every child).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        busy = _busy_seconds() - busy_before
        process.returncode = os.waitstatus_to_exitcode(status)
        peak = sampler.stop()
    if process.returncode:
        raise SystemExit(f"{script} failed ({process.returncode}):\n{log.read_text()[-5000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak / 2**20,
            "high_water_mark_mb": sampler.hwm / 2**20, "sampled_tree_rss_mb": sampler.tree / 2**20,
            # CPU time the rest of the machine took meanwhile, as a share of all CPUs: a busy machine slows the stage.
            "other_load": max(0.0, busy - cpu) / (seconds * (os.cpu_count() or 1))}


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting for I/O) since boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def set_corpus(clone: Path, corpus: str) -> None:
    """Point the clone's ``pretrain.corpus`` at ``corpus``."""
    path = clone / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["pretrain"]["corpus"] = corpus
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def texts(clone: Path, split: str) -> list[str]:
    return pq.read_table(clone / f"data/prepared/{split}.parquet", columns=["text"]).column(0).to_pylist()


def measure_size(clone: Path, mb: float, vocab: Vocabulary, validation: list[str], seed: int,
                 logs: Path) -> dict[str, Any]:
    """Generate ``mb`` MB under corpus/gen-<mb>/, run the stage on it, and read back its stats."""
    name = f"gen-{mb:g}"
    folder = clone / "corpus" / name
    started = time.perf_counter()
    row = generate_corpus(folder, mb, vocab, validation, seed)
    row["generate_seconds"] = time.perf_counter() - started
    set_corpus(clone, f"corpus/{name}")
    row.update(run_measured("stages/prepare_corpus.py", clone, logs / f"{name}.log"))
    row["mb_per_s"] = row["mb"] / row["seconds"]
    stats = json.loads((clone / "reports/prepare_corpus/stats.json").read_text())
    removed = stats["decontamination_removed"]
    row.update({"documents_kept": stats["documents"], "tokens": stats["tokens"],
                "removed": {"duplicates": stats["duplicates_removed"], "empty": stats["empty_removed"],
                            **{reason: removed[reason] for reason in ("copy", "near_copy", "shared_ngram")}}})
    shutil.rmtree(folder)  # the next size's run hashes only its own corpus (corpus/ is a dependency)
    return row


def machine(clone: Path) -> dict[str, Any]:
    """CPUs, the stage's threads, the versions that set its speed, and the commit measured."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    versions = {}
    for package in ("torch", "tokenizers", "transformers", "pyarrow", "dvc"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "threads": yaml.safe_load((clone / "params.yaml").read_text())["runtime"]["threads"],
            "python": platform.python_version(), **versions, "commit": commit}


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's three goals, smallest size against largest: RSS growth, time against size, MB/s."""
    small, large = rows[0], rows[-1]
    rss_growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
    size_ratio, time_ratio = large["mb"] / small["mb"], large["seconds"] / small["seconds"]
    slope = (large["seconds"] - small["seconds"]) / (large["mb"] - small["mb"])
    return {
        "rss_growth": rss_growth, "rss_met": rss_growth < RSS_GOAL,
        "size_ratio": size_ratio, "time_ratio": time_ratio, "linear_met": time_ratio <= LINEAR_SLACK * size_ratio,
        "fixed_seconds": small["seconds"] - slope * small["mb"], "seconds_per_mb": slope,
        "mb_per_s": large["mb_per_s"], "speed_met": large["mb_per_s"] >= SPEED_GOAL,
    }


def markdown(result: dict[str, Any]) -> str:
    """The table and one line per goal, each marked met or NOT met."""
    m, g = result["machine"], result["goals"]
    mark = lambda met: "met" if met else "**NOT met**"  # noqa: E731
    lines = [f"# prepare_corpus at scale: a generated corpus (commit {m['commit'][:10]})\n",
             f"{m['cpu']}, {m['cpus_usable']} of {m['cpu_count']} CPUs usable, runtime.threads {m['threads']}; "
             f"Python {m['python']}, torch {m['torch']}, tokenizers {m['tokenizers']}, "
             f"transformers {m['transformers']}.\n",
             "| text MB | shards | documents | seconds | CPU seconds | MB/s | peak RSS (MiB) | tokens | "
             "repeats removed | copies / near copies / shared n-grams removed | other load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["sizes"]:
        removed = r["removed"]
        lines.append(f"| {r['mb']:.1f} | {r['shards']} | {r['documents']:,} | {r['seconds']:.1f} | "
                     f"{r['cpu_seconds']:.1f} | {r['mb_per_s']:.2f} | {r['peak_rss_mb']:,.0f} | {r['tokens']:,} | "
                     f"{removed['duplicates']} of {r['planted']['duplicates']} | {removed['copy']} of "
                     f"{r['planted']['copy']} / {removed['near_copy']} of 0 / {removed['shared_ngram']} of "
                     f"{r['planted']['shared_ngram']} | {r['other_load']:.0%} |")
    small, large = result["sizes"][0]["mb"], result["sizes"][-1]["mb"]
    lines += ["\nGoals (smallest size against largest):\n",
              f"- Peak RSS: {100 * g['rss_growth']:+.1f}% from {small:.0f} to {large:.0f} MB "
              f"(goal: under +{100 * RSS_GOAL:.0f}%): {mark(g['rss_met'])}",
              f"- Time: {g['time_ratio']:.2f}x for {g['size_ratio']:.2f}x the text (linear: at most "
              f"{LINEAR_SLACK:.1f} x the size ratio); fit {g['fixed_seconds']:.1f} s + {g['seconds_per_mb']:.2f} s "
              f"per MB: {mark(g['linear_met'])}",
              f"- Throughput: {g['mb_per_s']:.2f} MB/s at {large:.0f} MB, {1 / g['seconds_per_mb']:.2f} MB/s at the "
              f"margin (goal: at least {SPEED_GOAL:g} MB/s on {m['threads']} threads): {mark(g['speed_met'])}",
              "\nSeconds are the stage's whole run (start-up and input hashing included); MB are 10^6 bytes of raw "
              "document text; peak RSS is the stage process's high-water mark (MiB); CPU seconds are the stage's "
              "user + system time; other load is the CPU time other processes took during the run, as a share of all "
              "CPUs (near 0% for a clean measurement)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,200", help="MB of raw text, comma-separated (ascending)")
    parser.add_argument("--quick", action="store_true", help="2 and 8 MB: checks that the benchmark runs")
    parser.add_argument("--seed", type=int, default=0, help="the corpus generator's seed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = [2.0, 8.0] if args.quick else sorted(float(s) for s in args.sizes.split(","))
    if len(sizes) < 2:
        parser.error("--sizes needs two sizes at least")
    dirty = subprocess.run(["git", "status", "--porcelain", "src", "stages"], cwd=ROOT, capture_output=True,
                           text=True).stdout
    if dirty:
        print(f"note: uncommitted changes in src/ or stages/ are not measured (HEAD is):\n{dirty}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ptft-corpus-bench-") as tmp:
        clone, logs = Path(tmp) / "ptft", Path(tmp) / "logs"
        logs.mkdir()
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        run_measured("stages/prepare.py", clone, logs / "prepare.log")
        vocab, validation = vocabulary(texts(clone, "train")), texts(clone, "validation")
        # An unmeasured first run: bytecode compiled and libraries in the page cache, as for every later run.
        measure_size(clone, WARMUP_MB, vocab, validation, args.seed, logs)
        rows = []
        for mb in sizes:
            rows.append(measure_size(clone, mb, vocab, validation, args.seed, logs))
            print(f"{mb:g} MB: {rows[-1]['seconds']:.1f} s, {rows[-1]['mb_per_s']:.2f} MB/s, "
                  f"peak RSS {rows[-1]['peak_rss_mb']:.0f} MiB", file=sys.stderr)
        result = {"machine": machine(clone), "uncommitted_changes_not_measured": dirty.splitlines(),
                  "sizes": rows, "goals": goals(rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "corpus.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "corpus.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
