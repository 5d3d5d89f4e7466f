"""Train/validation/test splits: random (seeded, stratified) or the source's official ones, and labelled subsets.

Single-label data is stratified by label (scikit-learn); multi-label data by iterative stratification
(Sechidis et al. 2011, from the iterative-stratification package), which keeps each label's share,
and its pairs', in every part.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from ptft.pipeline.data import SPLITS, DataError, counted, has_label_lists, label_counts, listed, near_duplicates

# Held-out splits first: a text in two splits is kept where it matters most, and the test split is never altered.
PRIORITY = {"test": 0, "validation": 1, "train": 2}


def split_dataset(
    df: pd.DataFrame, validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Seeded, label-stratified train/validation/test split (test first, then validation from the rest)."""
    if not (0 < test_fraction and 0 < validation_fraction and validation_fraction + test_fraction < 1):
        raise DataError(
            f"split fractions validation={validation_fraction}, test={test_fraction} must be > 0 "
            "and sum to less than 1; fix them in params.yaml."
        )
    _check_class_sizes(df, minimum=len(SPLITS))
    rest, test = _stratified_split(df, test_fraction, seed)
    # Rescale so validation is `validation_fraction` of the whole corpus, not of what is left.
    train, validation = _stratified_split(rest, validation_fraction / (1 - test_fraction), seed)
    return {"train": train, "validation": validation, "test": test}


def _stratified_split(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``fraction`` of ``df``, stratified by label (iteratively for multi-label data)."""
    from sklearn.model_selection import train_test_split

    if has_label_lists(df):
        kept, held = _multilabel_split(df, test_size=fraction, seed=seed)
        return df.iloc[kept].reset_index(drop=True), df.iloc[held].reset_index(drop=True)
    try:
        kept, held = train_test_split(df, test_size=fraction, stratify=df["label"], random_state=seed)
    except ValueError as err:  # e.g. the held-out part is smaller than the number of classes
        raise DataError(f"cannot split {len(df)} documents stratified by label: {err}") from err
    return kept.reset_index(drop=True), held.reset_index(drop=True)


def _multilabel_split(df: pd.DataFrame, seed: int, test_size: float | None = None,
                      train_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the kept and held-out rows of an iterative stratification of ``df``'s label sets.

    Iterative stratification places rows label by label, so its parts can miss the size asked for by a row or
    two; seeded random rows are then moved across, so that a budget of N labelled examples is exactly N.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
    from sklearn.preprocessing import MultiLabelBinarizer

    indicator = MultiLabelBinarizer().fit_transform(df["label"])
    kept_size = train_size if train_size is not None else len(df) - math.ceil(test_size * len(df))
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, random_state=seed, train_size=kept_size,
                                                test_size=len(df) - kept_size)
    kept, held = next(splitter.split(np.zeros(len(df)), indicator))
    rng = np.random.default_rng(seed)
    if len(kept) > kept_size:
        moved = rng.choice(kept, len(kept) - kept_size, replace=False)
        kept, held = np.setdiff1d(kept, moved), np.union1d(held, moved)
    elif len(kept) < kept_size:
        moved = rng.choice(held, kept_size - len(kept), replace=False)
        kept, held = np.union1d(kept, moved), np.setdiff1d(held, moved)
    return np.sort(kept), np.sort(held)


def _check_class_sizes(df: pd.DataFrame, minimum: int) -> None:
    counts = label_counts(df)
    small = counts[counts < minimum]
    if not small.empty:
        listed = ", ".join(f"'{label}' ({count})" for label, count in small.items())
        raise DataError(
            f"classes too small to stratify into {'/'.join(SPLITS)}: {listed}; each needs at least "
            f"{minimum} documents. Add documents or remove the class from the data."
        )


def stratified_subset(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """Seeded subset of `n` rows in the label proportions, at least one per class (single-label); None keeps all."""
    if n is None:
        return df
    if not 0 < n <= len(df):
        raise DataError(f"finetune.train_examples={n} must be between 1 and the {len(df)} training documents.")
    if has_label_lists(df):  # iterative stratification keeps each label's share
        return df if n == len(df) else df.iloc[_multilabel_split(df, seed, train_size=n)[0]].reset_index(drop=True)
    counts = df["label"].value_counts().sort_index()
    shuffled = df.sample(frac=1.0, random_state=seed)
    if n < len(counts):  # too few rows to cover every class: a plain seeded sample
        return shuffled.head(n).sort_index().reset_index(drop=True)
    quota = _class_quotas(counts, n)
    rank = shuffled.groupby("label").cumcount()
    picked = shuffled[(rank < shuffled["label"].map(quota)).to_numpy()]
    return picked.sort_index().reset_index(drop=True)


def _class_quotas(counts: pd.Series, n: int) -> pd.Series:
    """Rows per class summing to n: one each, the rest proportionally by largest remainder."""
    # Integer arithmetic so the quotas never depend on float rounding.
    spare, total_spare = n - len(counts), int(counts.sum()) - len(counts)
    whole, remainder = divmod((counts - 1) * spare, max(total_spare, 1))
    quota = 1 + whole
    missing = n - int(quota.sum())
    # Stable sort keeps label order among equal remainders, so ties resolve the same way every run.
    top = remainder.sort_values(ascending=False, kind="stable").index[:missing]
    quota[top] += 1
    return quota


def assign_splits(df: pd.DataFrame, names: dict[str, str | None], origin: str,
                  split_column: str | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Map the source's split names (``df["split"]``) to train/validation/test as ``data.splits`` names them.

    With a file's ``split_column`` (which the user wrote), a value that data.splits does not name is an
    error. Otherwise (a dataset's own splits, such as IMDB's ``unsupervised``) such splits are left out, and
    their row counts returned. A split that data.splits names but the source lacks is an error.
    """
    if "split" not in df:
        raise DataError(f"data.split is 'official' but {origin} is a folder of <label>/*.txt files, which has no "
                        "splits; set data.split to random")
    roles = {name: role for role, name in names.items() if name is not None}
    found = Counter(df["split"])
    missing = [f"data.splits.{role} '{name}'" for name, role in roles.items() if name not in found]
    if missing:
        what = f"data.split_column '{split_column}' values" if split_column else "splits"
        raise DataError(f"{', '.join(missing)} not found in {origin}, whose {what} are {listed(sorted(found))}; "
                        "set data.splits in params.yaml (validation: null carves validation from train)")
    unused = {name: count for name, count in found.items() if name not in roles}
    if split_column and unused:
        names = listed([f"'{name}' ({counted(count, 'row')})" for name, count in sorted(unused.items())])
        raise DataError(f"{origin}: the split column holds {names}, which data.splits does not name "
                        f"({', '.join(f'{r}: {n}' for n, r in roles.items())}); map them in data.splits or fix "
                        "the column")
    kept = df[df["split"].isin(list(roles))]
    return kept.assign(split=kept["split"].map(roles)), unused


def drop_cross_split_duplicates(df: pd.DataFrame, threshold: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Drop repeated and nearly repeated texts of official splits without ever altering the test split.

    A text in two splits is kept in the more held-out one (test, then validation): train copies of test
    and validation documents are dropped, and validation copies of test documents. Copies within train or
    validation are dropped as in a random split; copies within test are kept and counted. Returns the rows
    left, held-out splits first, and the counts by reason for the stats.
    """
    df = df.iloc[np.argsort(df["split"].map(PRIORITY).to_numpy(), kind="stable")].reset_index(drop=True)
    first = df.groupby("text", sort=False)["split"].transform("first")
    exact = df["text"].duplicated(keep="first").to_numpy()
    near = np.zeros(len(df), dtype=bool)
    near_of = np.array(first)
    for i, j in near_duplicates(list(df["text"]), threshold).items():
        if not exact[i]:
            near[i], near_of[i] = True, df["split"].iat[j]
    copies = pd.DataFrame({"split": df["split"], "of": near_of, "exact": exact, "near": near})
    copies = copies[(copies["exact"] | copies["near"])]
    in_test = copies["split"] == "test"
    within = copies[~in_test & (copies["split"] == copies["of"])]
    across = copies[~in_test & (copies["split"] != copies["of"])]
    removed = {
        "duplicates_removed": int(within["exact"].sum()),
        "near_duplicates_removed": int(within["near"].sum()),
        "overlap_removed": {f"{split}_{of}": int(((across["split"] == split) & (across["of"] == of)).sum())
                            for split, of in (("train", "test"), ("train", "validation"), ("validation", "test"))},
        "test_duplicates_kept": int(in_test.sum()),
    }
    return df.drop(index=copies.index[~in_test]).reset_index(drop=True), removed


def official_splits(df: pd.DataFrame, carve_validation: bool, validation_fraction: float, seed: int,
                    origin: str) -> dict[str, pd.DataFrame]:
    """The source's own splits; with ``carve_validation`` (data.splits.validation null), validation is
    ``validation_fraction`` of train, seeded and stratified (never taken from test)."""
    splits = {role: df[df["split"] == role].drop(columns="split").reset_index(drop=True) for role in SPLITS}
    if carve_validation:
        _check_class_sizes(splits["train"], minimum=2)
        splits["train"], splits["validation"] = _stratified_split(splits["train"], validation_fraction, seed)
    empty = [role for role, frame in splits.items() if frame.empty]
    if empty:
        raise DataError(f"{origin}: the official {' and '.join(empty)} split has no labelled rows left (a hidden "
                        "test set, as GLUE's, has labels -1); name another split in data.splits, e.g. test: "
                        "validation and validation: null")
    check_held_out_labels(splits, origin)
    return splits


def check_held_out_labels(splits: dict[str, pd.DataFrame], origin: str) -> None:
    """Every label of validation and test must occur in train: a classifier cannot learn a label it never sees."""
    known = set(label_counts(splits["train"]).index)
    for role in ("validation", "test"):
        counts = label_counts(splits[role])
        unknown = counts[~counts.index.isin(known)]
        if not unknown.empty:
            names = listed([f"'{label}' ({counted(int(n), 'row')})" for label, n in unknown.items()])
            raise DataError(f"{origin}: the {role} split has labels the train split lacks: {names}. A classifier "
                            f"cannot learn them; drop those rows from {role} or add train examples of them")
