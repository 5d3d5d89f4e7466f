"""The classical baseline: TF-IDF features and logistic regression (scikit-learn)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from ptft.metrics import classification_metrics

# Inverse regularisation strengths tried; the one with the best validation macro-F1 is kept.
C_GRID = (0.1, 1.0, 10.0, 100.0)


def tfidf_logreg(C: float, seed: int) -> Pipeline:
    """Word uni- and bigrams, sublinear tf, then multinomial logistic regression."""
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, strip_accents="unicode"),
        LogisticRegression(C=C, max_iter=2000, random_state=seed),
    )


def fit_tfidf(train: pd.DataFrame, validation: pd.DataFrame, labels: list[str], seed: int) -> tuple[Pipeline, dict]:
    """Fit one pipeline per C on ``train`` (the vocabulary too); keep the best on validation macro-F1."""
    label2id = {label: i for i, label in enumerate(labels)}
    y_train, y_val = train["label"].map(label2id), validation["label"].map(label2id)
    best: tuple[float, float, Pipeline] | None = None
    for C in C_GRID:
        pipeline = tfidf_logreg(C, seed).fit(train["text"], y_train)
        score = classification_metrics(y_val, pipeline.predict(validation["text"]))["macro_f1"]
        if best is None or score > best[0]:  # the first of equals: the strongest regularisation
            best = (score, C, pipeline)
    score, C, pipeline = best
    val = classification_metrics(y_val, pipeline.predict(validation["text"]))
    return pipeline, {"C": C, "validation_accuracy": val["accuracy"], "validation_macro_f1": val["macro_f1"]}
