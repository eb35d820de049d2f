"""Further attempts at the triage targets that bench/model_selection.py's candidate specs
cannot express, measured with the same protocol (5-fold stratified CV over the Endava tickets,
rare classes pooled for the outer split, metrics over all out-of-fold predictions).

* ``title``: the real title as a TF-IDF block of its own, next to (or instead of) the "head" block
  that approximates it with the opening 40 characters. The product's model input is one string,
  so this would need a two-field input; it is measured first to see whether that is worth it.
* ``bagging``: CalibratedClassifierCV with more inner folds (each SVM sees more of the training
  fold) and averaged over several inner-split seeds (a bagged ensemble of calibrated SVMs).
* ``confidence``: a second model for the top label's correctness ("is this prediction right?"),
  fitted on inner out-of-fold predictions of the calibrated SVM with features of the probability
  vector (top-1, top-2, their gap and logs, entropy, text length) and, in one variant, the predicted
  class. Coverage at an accuracy level depends only on how confidence *ranks* tickets, so this
  tests whether a better ranking than the calibrated top probability exists.
* ``learners``: other linear learners on the same features (Crammer-Singer multi-class SVM, hinge
  loss, ridge, logistic regression at C = 30, all isotonic-calibrated), small feature changes (word
  1-3-grams, a head block of 25 or 60 characters, a 3-character prefix block) and, with ``--mlp``,
  a one-hidden-layer perceptron (slow: about 9 minutes on category).
* ``pruning``: confident-learning style cleaning of label noise: training tickets whose given label
  gets a probability under a threshold in an inner out-of-fold prediction (while another label gets
  more than 0.5) are dropped before the final fit.
* ``recalibration``: a last one-dimensional map of the top probability (the confidence), fitted
  on inner out-of-fold predictions of the training fold and applied to the outer fold: a
  logistic map of logit(confidence) and the product's isotonic map (hitl/ml/confidence.py). Printed
  with the ECE of each outer fold, because a held-out set is the size of one fold.
* ``training-size``: the product's own pipeline for the head (hitl/ml/pipelines.py) at 5, 10 and 20
  outer folds, i.e. trained on 80, 90 and 95 % of the rows. The model `hitl train` ships is fitted
  on all of them, so the larger K is the nearer estimate of what it does on new tickets; the
  pipelines were chosen at 5 folds, not by this.
* ``views``: averages of the product pipeline with other views of the text (character 2-5-grams,
  word+char+head, logistic regression C = 10 on the product's features), and a per-class bias on
  the log-probabilities chosen for accuracy on four fifths of the out-of-fold predictions and
  applied to the fifth (the big classes 4 and 5 of category trade errors; does shifting the border
  between them pay?).
* ``auxiliary``: the head's product pipeline mixed with what a second head's pipeline implies for
  it (``--auxiliary business_service`` for category: the finer label's probabilities times the
  training fold's business_service -> category table), both fitted on the same training fold, at
  fixed weights and at a weight chosen on the other four folds.

Example::

    .venv/bin/python bench/model_experiments.py confidence --label business_service
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression, RidgeClassifier  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_selection as ms  # noqa: E402

from hitl.ml.confidence import ConfidenceMap  # noqa: E402
from hitl.ml.metrics import coverage_at_accuracy, expected_calibration_error  # noqa: E402
from hitl.ml.pipelines import RareAlwaysTrainKFold, build_pipeline, spec_for_head  # noqa: E402

LEVELS = (0.90, 0.95, 0.99)


def row(name: str, correct: np.ndarray, confidence: np.ndarray) -> str:
    cov = coverage_at_accuracy(confidence, correct, LEVELS)
    return (
        f"| `{name}` | {correct.mean():.4f} | {expected_calibration_error(confidence, correct):.4f}"
        f" | {cov['0.90']:.4f} | {cov['0.95']:.4f} | {cov['0.99']:.4f} |"
    )


HEADER = "| variant | accuracy | ECE | cov@0.90 | cov@0.95 | cov@0.99 |\n|---|---|---|---|---|---|"


class Data:
    def __init__(self, path: Path, label: str, seed: int) -> None:
        frame = pd.read_csv(path)
        frame = frame[frame[label].notna()]
        self.titles = frame["title"].fillna("").astype(str).tolist()
        self.bodies = frame["body"].fillna("").astype(str).tolist()
        self.texts = [t + " " + b for t, b in zip(self.titles, self.bodies, strict=True)]
        self.y = frame[label].astype(str).to_numpy()
        self.classes = np.unique(self.y)
        self.seed = seed

    def folds(self, k: int = 5) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        outer = StratifiedKFold(k, shuffle=True, random_state=self.seed)
        yield from outer.split(self.texts, ms.pooled_strata(self.y, k))

    def proba(self, clf: object, x: sp.spmatrix | list[str]) -> np.ndarray:
        full = np.zeros((len(x) if isinstance(x, list) else x.shape[0], self.classes.size))
        full[:, np.searchsorted(self.classes, clf.classes_)] = clf.predict_proba(x)  # type: ignore[attr-defined]
        return full

    def report(self, name: str, proba: np.ndarray, confidence: np.ndarray | None = None) -> str:
        correct = self.classes[proba.argmax(1)] == self.y
        return row(name, correct, proba.max(1) if confidence is None else confidence)


def title_blocks(d: Data, clf_spec: str) -> None:
    columns = {"text": d.texts, "title": d.titles}
    variants: dict[str, Callable[[], list[tuple[object, str]]]] = {
        "wp5h40 (chosen)": lambda: [(ms.FEATURES["wp5h40"](), "text")],
        "wp5 + title words": lambda: [(ms.FEATURES["wp5"](), "text"), (ms._word(2, min_df=1), "title")],
        "wp5h40 + title words": lambda: [
            (ms.FEATURES["wp5h40"](), "text"),
            (ms._word(2, min_df=1), "title"),
        ],
        "wp5h40 + title prefixes": lambda: [(ms.FEATURES["wp5h40"](), "text"), (ms._prefix(5), "title")],
    }
    print(HEADER)
    for name, make in variants.items():
        proba = np.zeros((d.y.size, d.classes.size))
        for train, test in d.folds():
            blocks_train, blocks_test = [], []
            for vectorizer, column in make():
                blocks_train.append(vectorizer.fit_transform([columns[column][i] for i in train]))  # type: ignore[attr-defined]
                blocks_test.append(vectorizer.transform([columns[column][i] for i in test]))  # type: ignore[attr-defined]
            clf = ms.build_classifier(clf_spec, 3, d.seed).fit(sp.hstack(blocks_train).tocsr(), d.y[train])
            proba[test] = d.proba(clf, sp.hstack(blocks_test).tocsr())
        print(row(name, d.classes[proba.argmax(1)] == d.y, proba.max(1)), flush=True)


def bagging(d: Data, clf_spec: str, variants: list[tuple[int, int]]) -> None:
    probas = {v: np.zeros((d.y.size, d.classes.size)) for v in variants}
    for train, test in d.folds():
        vectorizer = ms.FEATURES["wp5h40"]()
        x_train = vectorizer.fit_transform([d.texts[i] for i in train])
        x_test = vectorizer.transform([d.texts[i] for i in test])
        for inner, seeds in variants:
            total = np.zeros((test.size, d.classes.size))
            for s in range(seeds):
                total += d.proba(
                    ms.build_classifier(clf_spec, inner, d.seed * 100 + s).fit(x_train, d.y[train]), x_test
                )
            probas[(inner, seeds)][test] = total / seeds
    print(HEADER)
    for (inner, seeds), proba in probas.items():
        print(d.report(f"{inner} inner folds x {seeds} seed(s)", proba))


def _meta_features(proba: np.ndarray, words: np.ndarray) -> np.ndarray:
    top = np.sort(proba, axis=1)[:, ::-1]
    p1, p2 = top[:, 0], top[:, 1]
    entropy = -np.sum(np.where(proba > 0, proba * np.log(np.clip(proba, 1e-12, 1)), 0.0), axis=1)
    return np.column_stack(
        [
            p1,
            p2,
            p1 - p2,
            np.log(np.clip(p1, 1e-6, 1)),
            np.log(np.clip(p1 - p2, 1e-6, 1)),
            entropy,
            np.log1p(words),
        ]
    )


def confidence_models(d: Data, clf_spec: str) -> None:
    words = np.array([len(t.split()) for t in d.texts])
    proba = np.zeros((d.y.size, d.classes.size))
    conf = {k: np.zeros(d.y.size) for k in ("meta LR", "meta LR + predicted class", "meta gradient boosting")}
    for train, test in d.folds():
        vectorizer = ms.FEATURES["wp5h40"]()
        x_train = vectorizer.fit_transform([d.texts[i] for i in train])
        x_test = vectorizer.transform([d.texts[i] for i in test])
        y_train = d.y[train]
        inner = np.zeros((train.size, d.classes.size))  # out-of-fold within the training fold
        scored = np.zeros(train.size, dtype=bool)
        for fit_part, held in RareAlwaysTrainKFold(5, d.seed + 7).split(None, y_train):
            clf = ms.build_classifier(clf_spec, 3, d.seed).fit(x_train[fit_part], y_train[fit_part])
            inner[held] = d.proba(clf, x_train[held])
            scored[held] = True
        proba[test] = d.proba(ms.build_classifier(clf_spec, 3, d.seed).fit(x_train, y_train), x_test)
        right = (d.classes[inner.argmax(1)] == y_train)[scored]
        f_in, f_out = (
            _meta_features(inner[scored], words[train][scored]),
            _meta_features(proba[test], words[test]),
        )
        mu, sd = f_in.mean(0), f_in.std(0) + 1e-9
        z_in, z_out = (f_in - mu) / sd, (f_out - mu) / sd
        onehot_in = np.eye(d.classes.size)[inner[scored].argmax(1)]
        onehot_out = np.eye(d.classes.size)[proba[test].argmax(1)]
        lr = LogisticRegression(C=1.0, max_iter=2000).fit(z_in, right)
        conf["meta LR"][test] = lr.predict_proba(z_out)[:, 1]
        lr_cls = LogisticRegression(C=1.0, max_iter=2000).fit(np.hstack([z_in, onehot_in]), right)
        conf["meta LR + predicted class"][test] = lr_cls.predict_proba(np.hstack([z_out, onehot_out]))[:, 1]
        gb = HistGradientBoostingClassifier(
            max_depth=3, learning_rate=0.05, max_iter=200, random_state=d.seed
        )
        gb.fit(np.hstack([f_in, inner[scored].argmax(1)[:, None]]), right)
        conf["meta gradient boosting"][test] = gb.predict_proba(
            np.hstack([f_out, proba[test].argmax(1)[:, None]])
        )[:, 1]
    print(HEADER)
    print(d.report("calibrated top probability (chosen)", proba))
    for name, values in conf.items():
        print(d.report(name, proba, values))


def _isotonic(base: object, seed: int) -> CalibratedClassifierCV:
    return CalibratedClassifierCV(base, method="isotonic", cv=RareAlwaysTrainKFold(3, seed), ensemble=True)


def learners(d: Data, with_mlp: bool) -> None:
    seed = d.seed
    svc = lambda **kw: _isotonic(LinearSVC(C=0.3, random_state=seed, **kw), seed)  # noqa: E731
    variants: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "svc_C0.3_iso@wp5h40 (chosen)": (ms.FEATURES["wp5h40"], svc),
        "Crammer-Singer SVM": (ms.FEATURES["wp5h40"], lambda: svc(multi_class="crammer_singer")),
        "SVM, hinge loss": (ms.FEATURES["wp5h40"], lambda: svc(loss="hinge", max_iter=5000)),
        "ridge": (ms.FEATURES["wp5h40"], lambda: _isotonic(RidgeClassifier(alpha=1.0), seed)),
        "logistic regression C=30": (
            ms.FEATURES["wp5h40"],
            lambda: _isotonic(LogisticRegression(C=30, max_iter=3000), seed),
        ),
        "word 1-3-grams": (
            lambda: ms._union(("word", ms._word(3)), ("prefix", ms._prefix(5)), ("head", ms._head(40))),
            svc,
        ),
        "head 25 chars": (
            lambda: ms._union(("word", ms._word(2)), ("prefix", ms._prefix(5)), ("head", ms._head(25))),
            svc,
        ),
        "head 60 chars": (
            lambda: ms._union(("word", ms._word(2)), ("prefix", ms._prefix(5)), ("head", ms._head(60))),
            svc,
        ),
        "+ 3-char prefixes": (
            lambda: ms._union(
                ("word", ms._word(2)),
                ("prefix", ms._prefix(5)),
                ("head", ms._head(40)),
                ("p3", ms._prefix(3, 1)),
            ),
            svc,
        ),
    }
    if with_mlp:
        variants["MLP, 256 hidden, uncalibrated"] = (
            ms.FEATURES["wp5h40"],
            lambda: MLPClassifier((256,), alpha=1e-3, max_iter=20, random_state=seed),
        )
    print(HEADER)
    for name, (features, classifier) in variants.items():
        proba = np.zeros((d.y.size, d.classes.size))
        for train, test in d.folds():
            vectorizer = features()
            x_train = vectorizer.fit_transform([d.texts[i] for i in train])  # type: ignore[attr-defined]
            x_test = vectorizer.transform([d.texts[i] for i in test])  # type: ignore[attr-defined]
            proba[test] = d.proba(classifier().fit(x_train, d.y[train]), x_test)  # type: ignore[attr-defined]
        print(d.report(name, proba), flush=True)


def pruning(d: Data, thresholds: list[float]) -> None:
    probas = {t: np.zeros((d.y.size, d.classes.size)) for t in [0.0, *thresholds]}
    dropped = {t: 0 for t in thresholds}
    for train, test in d.folds():
        vectorizer = ms.FEATURES["wp5h40"]()
        x_train = vectorizer.fit_transform([d.texts[i] for i in train])
        x_test = vectorizer.transform([d.texts[i] for i in test])
        y_train = d.y[train]

        def fit(keep: np.ndarray, x: sp.spmatrix = x_train, y: np.ndarray = y_train) -> object:
            return _isotonic(LinearSVC(C=0.3, random_state=d.seed), d.seed).fit(x[keep], y[keep])

        inner = np.zeros((train.size, d.classes.size))
        scored = np.zeros(train.size, dtype=bool)
        for fit_part, held in RareAlwaysTrainKFold(5, d.seed + 1).split(None, y_train):
            inner[held] = d.proba(fit(fit_part), x_train[held])
            scored[held] = True
        given = inner[np.arange(train.size), np.searchsorted(d.classes, y_train)]
        probas[0.0][test] = d.proba(fit(np.arange(train.size)), x_test)
        for t in thresholds:
            keep = ~(scored & (given < t) & (inner.max(1) > 0.5))
            for label in np.unique(y_train[~keep]):  # never drop a class entirely
                if not keep[y_train == label].any():
                    keep[y_train == label] = True
            dropped[t] += int((~keep).sum())
            probas[t][test] = d.proba(fit(np.flatnonzero(keep)), x_test)
    print(HEADER)
    print(d.report("no pruning (chosen)", probas[0.0]))
    for t in thresholds:
        print(d.report(f"drop if given label < {t} ({dropped[t] / 5:.0f} per fold)", probas[t]))


def _product_proba(d: Data, head: str, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The product's pipeline for the head (hitl/ml/pipelines.py) fitted on `train`, on `test`."""
    pipeline = build_pipeline(spec_for_head(head), d.seed).fit([d.texts[i] for i in train], d.y[train])
    return d.proba(pipeline, [d.texts[i] for i in test])


def recalibration(d: Data, head: str) -> None:
    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))[:, None]

    names = ("none", "logistic map of logit(confidence)", "isotonic map (hitl/ml/confidence.py)")
    confidence = {n: np.zeros(d.y.size) for n in names}
    correct = np.zeros(d.y.size, dtype=bool)
    per_fold: dict[str, list[float]] = {n: [] for n in names}
    for train, test in d.folds():
        inner_conf, inner_right = np.zeros(train.size), np.zeros(train.size, dtype=bool)
        scored = np.zeros(train.size, dtype=bool)
        for fit_part, held in RareAlwaysTrainKFold(5, d.seed + 11).split(None, d.y[train]):
            proba = _product_proba(d, head, train[fit_part], train[held])
            inner_conf[held] = proba.max(1)
            inner_right[held] = d.classes[proba.argmax(1)] == d.y[train][held]
            scored[held] = True
        proba = _product_proba(d, head, train, test)
        right = d.classes[proba.argmax(1)] == d.y[test]
        logistic = LogisticRegression(C=100.0).fit(logit(inner_conf[scored]), inner_right[scored])
        mapping = ConfidenceMap.fit(inner_conf[scored], inner_right[scored])
        raw = proba.max(1)
        outs = {
            names[0]: raw,
            names[1]: logistic.predict_proba(logit(raw))[:, 1],
            names[2]: mapping.apply(proba).max(1) if mapping else raw,
        }
        correct[test] = right
        for name, values in outs.items():
            confidence[name][test] = values
            per_fold[name].append(expected_calibration_error(values, right))
    print("| variant | accuracy | ECE | cov@0.90 | cov@0.95 | cov@0.99 | ECE per outer fold | mean |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        folds = per_fold[name]
        print(
            row(name, correct, confidence[name])
            + f" {' '.join(f'{e:.4f}' for e in folds)} | {np.mean(folds):.4f} |"
        )


def training_size(d: Data, head: str, ks: list[int]) -> None:
    print(HEADER)
    for k in ks:
        proba = np.zeros((d.y.size, d.classes.size))
        for train, test in d.folds(k):
            proba[test] = _product_proba(d, head, train, test)
        print(d.report(f"{k} folds (trained on {100 - 100 // k} %)", proba), flush=True)


def _accuracy_bias(log_proba: np.ndarray, truth: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class additive biases by coordinate ascent on accuracy (ties go to the smaller shift)."""
    bias = np.zeros(log_proba.shape[1])
    for _ in range(rounds):
        for k in range(bias.size):
            best_acc, best_shift = -1.0, 0.0
            for shift in np.linspace(-1.5, 1.5, 31):
                trial = bias.copy()
                trial[k] = shift
                acc = float(((log_proba + trial).argmax(1) == truth).mean())
                if acc > best_acc + 1e-12 or (abs(acc - best_acc) < 1e-12 and abs(shift) < abs(best_shift)):
                    best_acc, best_shift = acc, shift
            bias[k] = best_shift
    return bias


def views(d: Data, head: str) -> None:
    seed = d.seed
    svc = lambda: _isotonic(LinearSVC(C=0.3, random_state=seed), seed)  # noqa: E731
    others: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "char_wb 2-5": (lambda: ms._char(2, 5), svc),
        "word+char 3-5+head": (ms.FEATURES["wc35h40"], svc),
        "LR C=10 on wp5h40": (ms.FEATURES["wp5h40"], lambda: LogisticRegression(C=10, max_iter=3000)),
    }
    probas = {"product": np.zeros((d.y.size, d.classes.size))}
    probas.update({name: np.zeros((d.y.size, d.classes.size)) for name in others})
    for train, test in d.folds():
        probas["product"][test] = _product_proba(d, head, train, test)
        for name, (features, classifier) in others.items():
            vectorizer = features()
            x_train = vectorizer.fit_transform([d.texts[i] for i in train])  # type: ignore[attr-defined]
            x_test = vectorizer.transform([d.texts[i] for i in test])  # type: ignore[attr-defined]
            probas[name][test] = d.proba(classifier().fit(x_train, d.y[train]), x_test)  # type: ignore[attr-defined]
    print(HEADER)
    for name, proba in probas.items():
        print(d.report(name, proba))
    for name in others:
        for weight in (0.5, 0.7):
            mixed = weight * probas["product"] + (1 - weight) * probas[name]
            print(d.report(f"{weight} product + {1 - weight:.1f} {name}", mixed))
    print(d.report("mean of all four", sum(probas.values()) / len(probas)))
    truth = np.searchsorted(d.classes, d.y)
    log_proba = np.log(np.clip(probas["product"], 1e-9, 1.0))
    shifted = np.zeros_like(log_proba)
    splitter = StratifiedKFold(5, shuffle=True, random_state=seed + 7)
    for fit_part, held in splitter.split(log_proba, ms.pooled_strata(d.y, 5)):
        shifted[held] = log_proba[held] + _accuracy_bias(log_proba[fit_part], truth[fit_part])
    shifted = np.exp(shifted - shifted.max(1, keepdims=True))
    print(d.report("product + per-class accuracy bias", shifted / shifted.sum(1, keepdims=True)))


def auxiliary(d: Data, head: str, aux_label: str, path: Path) -> None:
    frame = pd.read_csv(path)
    aux = frame[frame[head].notna()][aux_label].astype(str).to_numpy()
    aux_classes = np.unique(aux)
    main = np.zeros((d.y.size, d.classes.size))
    implied = np.zeros_like(main)
    folds = list(d.folds())
    for train, test in folds:
        main[test] = _product_proba(d, head, train, test)
        pipeline = build_pipeline(spec_for_head(aux_label), d.seed).fit(
            [d.texts[i] for i in train], aux[train]
        )
        aux_proba = np.zeros((test.size, aux_classes.size))
        aux_proba[:, np.searchsorted(aux_classes, pipeline.classes_)] = pipeline.predict_proba(
            [d.texts[i] for i in test]
        )
        table = np.full((aux_classes.size, d.classes.size), 0.01)  # smoothed counts, training fold only
        np.add.at(
            table, (np.searchsorted(aux_classes, aux[train]), np.searchsorted(d.classes, d.y[train])), 1
        )
        implied[test] = aux_proba @ (table / table.sum(1, keepdims=True))
    print(HEADER)
    print(d.report(f"{head} alone (product pipeline)", main))
    for weight in (0.9, 0.8, 0.7):
        print(
            d.report(
                f"{weight} {head} + {1 - weight:.1f} implied by {aux_label}",
                weight * main + (1 - weight) * implied,
            )
        )
    truth = np.searchsorted(d.classes, d.y)
    nested, chosen = np.zeros_like(main), []
    grid = np.linspace(0.5, 1.0, 11)
    for train, test in folds:
        accuracy = [
            ((w * main[train] + (1 - w) * implied[train]).argmax(1) == truth[train]).mean() for w in grid
        ]
        weight = float(grid[int(np.argmax(accuracy))])
        chosen.append(f"{weight:.2f}")
        nested[test] = weight * main[test] + (1 - weight) * implied[test]
    print(d.report(f"weight chosen on the other four folds ({', '.join(chosen)})", nested))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "experiment",
        choices=[
            "title",
            "bagging",
            "confidence",
            "learners",
            "pruning",
            "recalibration",
            "training-size",
            "views",
            "auxiliary",
        ],
    )
    parser.add_argument(
        "--data", type=Path, default=ms.DEFAULT_DATA, help="Endava tickets CSV (read in place)"
    )
    parser.add_argument("--label", default="category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier", default="svc_C0.3_iso")
    parser.add_argument("--mlp", action="store_true", help="learners: add the (slow) perceptron")
    parser.add_argument("--auxiliary", default="business_service", help="auxiliary: the second head's label")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    d = Data(args.data, args.label, args.seed)
    print(
        "`.venv/bin/python bench/model_experiments.py"
        f" {args.experiment} --label {args.label} --seed {args.seed}{' --mlp' if args.mlp else ''}"
        f"{' --auxiliary ' + args.auxiliary if args.experiment == 'auxiliary' else ''}`\n"
    )
    if args.experiment == "title":
        title_blocks(d, args.classifier)
    elif args.experiment == "bagging":
        bagging(d, args.classifier, [(3, 1), (5, 1), (10, 1), (3, 3), (5, 3)])
    elif args.experiment == "confidence":
        confidence_models(d, args.classifier)
    elif args.experiment == "learners":
        learners(d, args.mlp)
    elif args.experiment == "pruning":
        pruning(d, [0.05, 0.1, 0.2])
    elif args.experiment == "recalibration":
        recalibration(d, args.label)
    elif args.experiment == "views":
        views(d, args.label)
    elif args.experiment == "auxiliary":
        auxiliary(d, args.label, args.auxiliary, args.data)
    else:
        training_size(d, args.label, [5, 10, 20])


if __name__ == "__main__":
    main()
