"""Keep held-out documents (validation and test) and their near copies out of the pre-training text.

An index of the held-out documents is built once: a hash of each one's sequence of case-folded words,
and the hashes of its word n-grams (13 words by default, as GPT-3's decontamination used). A corpus
document is then checked in time linear in its length, so the whole pass stays linear in the corpus
size, and memory holds only the held-out set's index, whatever the corpus size. A corpus document is
removed if it is

- a ``copy``: the same words, up to case, punctuation and whitespace (re-wrapped lines included);
- a ``near_copy``: at least half of its n-grams occur in held-out documents (a sentence changed);
- a ``shared_ngram``: any of its n-grams occurs in a held-out document (a held-out text quoted
  or embedded in a longer one).

Documents shorter than n words have no n-grams; they are removed only as copies.

A word is a run of letters and digits (any non-ASCII character counts as one, except the typographic
quotes, dashes and spaces of Unicode's General Punctuation block). Words and n-grams are hashed with
numpy over the text's UTF-8 bytes, a few array operations a document rather than Python work a word:
this check runs on every document of the corpus.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xxhash

REASONS = ("copy", "near_copy", "shared_ngram")
NEAR_COPY = 0.5  # the share of a document's n-grams found in held-out text that makes it a near copy
PRIME = np.uint64(1099511628211)  # FNV's 64-bit prime; arithmetic wraps modulo 2**64
PRIME_INVERSE = np.uint64(pow(int(PRIME), -1, 2**64))
# A bitmap over the low bits of the held-out n-gram hashes: most corpus n-grams miss it, and only the few
# that hit are looked up in the sorted array (2 MiB; about 2% false hits for 300,000 held-out n-grams).
FILTER_BITS = 24
WORD_BYTES = np.zeros(256, dtype=bool)
WORD_BYTES[[*range(ord("0"), ord("9") + 1), *range(ord("a"), ord("z") + 1), *range(ord("A"), ord("Z") + 1)]] = True
WORD_BYTES[128:] = True  # the bytes of non-ASCII characters
GENERAL_PUNCTUATION = (0xE2, 0x80)  # the UTF-8 lead bytes of U+2000..U+203F: ’ “ ” – — … and special spaces


def text_hash(text: str) -> int:
    """A deterministic 64-bit hash of a text (xxh3): the same in every process and on every machine."""
    return xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass"))


class _Powers:
    """PRIME**k and PRIME_INVERSE**k modulo 2**64 for k below a length that grows as documents need."""

    def __init__(self) -> None:
        self.up = self.down = np.ones(1, dtype=np.uint64)

    def get(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < length:
            size = max(length, 2 * len(self.up))
            one = np.ones(1, dtype=np.uint64)
            self.up = np.concatenate([one, np.cumprod(np.full(size - 1, PRIME, dtype=np.uint64))])
            self.down = np.concatenate([one, np.cumprod(np.full(size - 1, PRIME_INVERSE, dtype=np.uint64))])
        return self.up[:length], self.down[:length]


_POWERS = _Powers()


def word_hashes(text: str) -> np.ndarray:
    """A 64-bit hash of each case-folded word of ``text``, in order."""
    data = np.frombuffer(text.casefold().encode("utf-8", "surrogatepass"), dtype=np.uint8)
    if not len(data):
        return np.zeros(0, dtype=np.uint64)
    is_word = WORD_BYTES[data]
    lead = np.flatnonzero((data[:-2] == GENERAL_PUNCTUATION[0]) & (data[1:-1] == GENERAL_PUNCTUATION[1]))
    for offset in range(3):
        is_word[lead + offset] = False
    edges = np.flatnonzero(np.diff(np.concatenate([[False], is_word, [False]]).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    # Polynomial prefix hashes of the bytes, vectorised: prefix[k] = P**(k-1) * sum_j data[j] * P**-j, so the
    # hash of data[s:e] is prefix[e] - prefix[s] * P**(e-s), all modulo 2**64.
    up, down = _POWERS.get(len(data) + 1)
    weighted = np.cumsum(data.astype(np.uint64) * down[: len(data)])
    prefix = np.concatenate([[np.uint64(0)], up[: len(data)] * weighted])
    return prefix[ends] - prefix[starts] * up[ends - starts]


def ngram_hashes(words: np.ndarray, n: int) -> np.ndarray:
    """The hash of every run of ``n`` consecutive word hashes."""
    count = len(words) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    hashes = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        hashes = hashes * PRIME + words[k : k + count]
    return hashes


class HeldOutIndex:
    """The held-out documents' copy hashes and n-gram hashes; :meth:`reason` checks a corpus document."""

    def __init__(self, texts: Iterable[str], n: int):
        self.n = n
        copies, grams = set(), []
        for text in texts:
            words = word_hashes(text)
            copies.add(xxhash.xxh3_64_intdigest(words.tobytes()))
            grams.append(ngram_hashes(words, n))
        self.copies = copies
        # A sorted array, searched with searchsorted: 8 bytes per held-out n-gram.
        self.ngrams = np.unique(np.concatenate(grams)) if grams else np.zeros(0, dtype=np.uint64)
        self.mask = np.uint64(2**FILTER_BITS - 1)
        self.filter = np.zeros(2**FILTER_BITS, dtype=bool)
        self.filter[self.ngrams & self.mask] = True

    def reason(self, text: str) -> str | None:
        """Why a corpus document must be removed (one of REASONS), or None if it may be kept."""
        words = word_hashes(text)
        if xxhash.xxh3_64_intdigest(words.tobytes()) in self.copies:
            return "copy"
        grams = ngram_hashes(words, self.n)
        if not len(grams) or not len(self.ngrams):
            return None
        candidates = grams[self.filter[grams & self.mask]]
        if not len(candidates):
            return None
        found = np.searchsorted(self.ngrams, candidates).clip(max=len(self.ngrams) - 1)
        shared = int(np.count_nonzero(self.ngrams[found] == candidates))
        if not shared:
            return None
        return "near_copy" if shared >= NEAR_COPY * len(grams) else "shared_ngram"
