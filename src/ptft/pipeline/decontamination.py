"""Keep held-out documents (validation and test) and their near copies out of the pre-training text.

An index of the held-out documents is built once: a hash of each one's case-folded text, and the
hashes of its word n-grams (13 words by default, as GPT-3's decontamination used). A corpus document
is then checked in time linear in its length, so the whole pass stays linear in the corpus size,
and memory holds only the held-out set's index, whatever the corpus size. A corpus document is removed
if it is

- a ``copy``: the same text, up to case and whitespace (re-wrapped lines included);
- a ``near_copy``: at least half of its n-grams occur in held-out documents (a sentence changed);
- a ``shared_ngram``: any of its n-grams occurs in a held-out document (a held-out text quoted
  or embedded in a longer one).

Documents shorter than n words have no n-grams; they are removed only as copies.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import numpy as np
import xxhash

REASONS = ("copy", "near_copy", "shared_ngram")
NEAR_COPY = 0.5  # the share of a document's n-grams found in held-out text that makes it a near copy
WORD = re.compile(r"\w+")
PRIME = np.uint64(1099511628211)  # FNV's 64-bit prime: mixes the word ids of an n-gram
UNKNOWN = -1
# A bitmap over the low bits of the held-out n-gram hashes: most corpus n-grams miss it, and only the few
# that hit are looked up in the sorted array (2 MiB; about 2% false hits for 300,000 held-out n-grams).
FILTER_BITS = 24


def text_hash(text: str) -> int:
    """A deterministic 64-bit hash of a text (xxh3): the same in every process and on every machine."""
    return xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass"))


def words(text: str) -> list[str]:
    """The case-folded words of a text: punctuation and line breaks do not make two texts differ."""
    return WORD.findall(text.casefold())


class HeldOutIndex:
    """The held-out documents' copy hashes and n-gram hashes; :meth:`reason` checks a corpus document."""

    def __init__(self, texts: Iterable[str], n: int):
        self.n = n
        self.vocabulary: dict[str, int] = {}
        copies, grams = set(), []
        for text in texts:
            tokens = words(text)
            copies.add(text_hash(" ".join(tokens)))
            ids = np.array([self.vocabulary.setdefault(w, len(self.vocabulary)) for w in tokens], dtype=np.int64)
            grams.append(self._ngrams(ids))
        self.copies = copies
        # A sorted array, searched with searchsorted: 8 bytes per held-out n-gram.
        self.ngrams = np.unique(np.concatenate(grams)) if grams else np.zeros(0, dtype=np.uint64)
        self.mask = np.uint64(2**FILTER_BITS - 1)
        self.filter = np.zeros(2**FILTER_BITS, dtype=bool)
        self.filter[self.ngrams & self.mask] = True

    def _ngrams(self, ids: np.ndarray) -> np.ndarray:
        """The hashes of every n-gram of ``ids`` that contains no word unknown to the held-out set."""
        count = len(ids) - self.n + 1
        if count <= 0:
            return np.zeros(0, dtype=np.uint64)
        unknown = np.concatenate([[0], np.cumsum(ids == UNKNOWN)])
        known = unknown[self.n :] - unknown[:count] == 0
        values = ids.astype(np.uint64)  # -1 wraps around; those windows are dropped below
        hashes = np.zeros(count, dtype=np.uint64)
        for k in range(self.n):
            hashes = hashes * PRIME + values[k : k + count]
        return hashes[known]

    def reason(self, text: str) -> str | None:
        """Why a corpus document must be removed (one of REASONS), or None if it may be kept."""
        tokens = words(text)
        if text_hash(" ".join(tokens)) in self.copies:
            return "copy"
        if len(tokens) < self.n or not len(self.ngrams):
            return None
        ids = np.fromiter(map(self.vocabulary.get, tokens, itertools.repeat(UNKNOWN)), dtype=np.int64,
                          count=len(tokens))
        grams = self._ngrams(ids)
        grams = grams[self.filter[grams & self.mask]]
        if not len(grams):
            return None
        found = np.searchsorted(self.ngrams, grams).clip(max=len(self.ngrams) - 1)
        shared = int(np.count_nonzero(self.ngrams[found] == grams))
        if not shared:
            return None
        return "near_copy" if shared >= NEAR_COPY * (len(tokens) - self.n + 1) else "shared_ngram"
