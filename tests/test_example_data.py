"""Unit tests for ptft.example_data: the derived multi-label BBC corpus written as text,tags CSV."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import pytest

from ptft.example_data import _KEYWORDS, _tags, write_tagged_csv

TOPICS = {"business", "entertainment", "politics", "sports", "tech"}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("tags") / "tags.csv"
    return path, write_tagged_csv(path)


def test_bytes_identical_across_calls(full: tuple[Path, dict], tmp_path: Path) -> None:
    path, summary = full
    again = tmp_path / "again.csv"
    assert write_tagged_csv(again) == summary
    assert again.read_bytes() == path.read_bytes()
    assert b"\r" not in path.read_bytes()  # "\n" line ends on every platform


def test_rows_and_summary(full: tuple[Path, dict]) -> None:
    path, summary = full
    assert path.read_text(encoding="utf-8").splitlines()[0] == "text,tags"
    table = rows(path)
    assert summary["documents"] == len(table) > 2000  # 2,225 files less the ~100 repeated articles
    assert len({r["text"] for r in table}) == len(table)
    known = TOPICS | set(_KEYWORDS)
    for r in table:
        tags = r["tags"].split("|")
        assert r["text"] and "\n" not in r["text"]
        assert tags == sorted(set(tags)) and set(tags) <= known
        assert len(set(tags) & TOPICS) == 1  # every row keeps its one BBC topic, so never empty
    counted: dict[str, int] = {}
    for r in table:
        for tag in r["tags"].split("|"):
            counted[tag] = counted.get(tag, 0) + 1
    assert summary["tags"] == dict(sorted(counted.items()))
    assert sum(summary["tags_per_document"].values()) == len(table)


def test_every_tag_has_enough_documents(full: tuple[Path, dict]) -> None:
    _, summary = full
    assert set(summary["tags"]) == TOPICS | set(_KEYWORDS)
    assert min(summary["tags"].values()) >= 100


def test_multi_label_not_just_the_topic(full: tuple[Path, dict]) -> None:
    _, summary = full
    per_doc, n = summary["tags_per_document"], summary["documents"]
    assert sum(per_doc.get(k, 0) for k in (1, 2, 3)) >= 0.85 * n  # mostly 1-3 tags
    assert n - per_doc[1] >= 0.5 * n  # most articles carry a derived tag beside their topic
    # A derived tag crosses topics: "usa" is found in articles of every topic.
    usa = [r["tags"].split("|") for r in rows(full[0]) if "usa" in r["tags"].split("|")]
    assert {t for tags in usa for t in tags} >= TOPICS


def test_limit_is_a_prefix_with_every_topic(full: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = full
    small = tmp_path / "nested" / "small.csv"
    summary = write_tagged_csv(small, limit=60)
    assert summary["documents"] == 60
    assert rows(small) == rows(path)[:60]
    assert TOPICS <= set(summary["tags"])
    with pytest.raises(ValueError):
        write_tagged_csv(tmp_path / "none.csv", limit=0)


def test_written_atomically_over_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text("old\n")
    write_tagged_csv(path, limit=5)
    assert len(rows(path)) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["tags.csv"]  # no temporary file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_keyword_rule() -> None:
    # Three mentions in all make a tag; capitals must match exactly, so "us" is not "US".
    assert _tags("tech", "The US and America, said Washington.") == ["tech", "usa"]
    assert _tags("tech", "Let us go, tell us, give us.") == ["tech"]
    assert _tags("sports", "Film, films and a movie.") == ["film", "sports"]
    assert _tags("sports", "A film and a movie.") == ["sports"]


def test_an_unwritable_path_is_one_line_not_a_traceback(tmp_path, capsys):
    from ptft.cli import main

    (tmp_path / "file").write_text("x")
    assert main(["example-data", str(tmp_path / "file" / "tags.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ptft: error: cannot write {tmp_path / 'file' / 'tags.csv'}: ")
    assert len(err.splitlines()) == 1
    assert "choose a writable path" in err
