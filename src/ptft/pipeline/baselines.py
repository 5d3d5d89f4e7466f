"""The classical baseline: TF-IDF features and logistic regression (scikit-learn)."""

from __future__ import annotations

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from ptft.pipeline.metrics import classification_metrics

# Inverse regularisation strengths tried; the one with the best validation macro-F1 is kept.
C_GRID = (0.1, 1.0, 10.0, 100.0)


def fit_tfidf(train: pd.DataFrame, validation: pd.DataFrame, labels: list[str], seed: int,
              unlabelled: list[str] = ()) -> tuple[Pipeline, dict]:
    """TF-IDF (word uni- and bigrams seen in at least two documents, sublinear tf), then multinomial
    logistic regression for each C in C_GRID; keep the C with the best validation macro-F1.

    The vocabulary and IDF are fitted on ``unlabelled`` text together with ``train``'s: a semi-supervised
    TF-IDF, fair against a pre-trained model that has seen that text. Only ``train``'s labels are used.
    """
    label2id = {label: i for i, label in enumerate(labels)}
    y_train, y_val = train["label"].map(label2id), validation["label"].map(label2id)
    # min_df=2 drops n-grams of a single document: 4x fewer features, 4x faster, same validation score.
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")
    seen = set(unlabelled)  # a labelled text that is also unlabelled text counts once in the IDF
    vectorizer.fit([*unlabelled, *(text for text in train["text"] if text not in seen)])
    x_train, x_val = vectorizer.transform(train["text"]), vectorizer.transform(validation["text"])
    best: tuple[float, float, LogisticRegression] | None = None
    for C in C_GRID:
        # newton-cg: on these sparse, wide features it converges in a few iterations at every C
        # (lbfgs takes 40+ and stops short of the optimum at large C), so 4x faster and exact.
        model = LogisticRegression(C=C, solver="newton-cg", max_iter=2000, random_state=seed).fit(x_train, y_train)
        score = classification_metrics(y_val, model.predict(x_val))
        if best is None or score["macro_f1"] > best[0]["macro_f1"]:  # the first of equals: the strongest regularisation
            best = (score, C, model)
    score, C, model = best
    return make_pipeline(vectorizer, model), {"C": C, "validation_accuracy": score["accuracy"],
                                              "validation_macro_f1": score["macro_f1"]}
