"""Choose the triage model per decision head by stratified K-fold cross-validation.

Every candidate is a scikit-learn pipeline from raw ticket text (title/subject + " " + body) to
calibrated class probabilities. Metrics are computed once over the out-of-fold (OOF) predictions of all
rows (so every row is scored exactly once, by a model that never saw it), plus the spread over folds.
Calibrators are fitted on inner folds of the training fold only, never on the evaluation fold.
Throughput is predict_proba on all rows in one batch, featurisation included, on one thread.

Candidate names are small specs, ``CLASSIFIER@FEATURES`` (see ``--list``):

* FEATURES: a key of ``FEATURES`` (e.g. ``w12`` = the baseline's word 1-2-gram TF-IDF).
* CLASSIFIER: ``family[_param...][_calibration]`` with family ``lr`` (LogisticRegression),
  ``svc`` (LinearSVC), ``sgd`` (SGDClassifier, modified Huber loss) or ``cnb`` (ComplementNB);
  params ``C<float>``, ``a<float>`` (alpha), ``bal`` (class_weight="balanced");
  calibration ``sig`` / ``iso`` / ``temp`` = CalibratedClassifierCV(method="sigmoid" / "isotonic" /
  "temperature") on ``--inner-folds`` inner folds.
* ``A+B``: the average of the probabilities of candidates A and B (a soft VotingClassifier).
* ``baseline`` = ``lr@w12``.

Rare classes. A class with fewer members than folds (e.g. category codes 9 and 12, one ticket each;
27 business_service codes) cannot be stratified. For the *outer* split they are pooled into one
"rare" stratum used only to assign folds (their labels are untouched), so every row still gets an
OOF prediction and the score honestly includes tickets whose class the model could not have learned,
as the held-back set will. For the *inner* calibration split such classes are kept in the training part
of every inner fold, so each inner model knows every class of its training fold and the calibrators
always see the same class columns.

Example::

    .venv/bin/python bench/model_selection.py --label category --candidates baseline,lr_C10@wc35
"""

from __future__ import annotations

import os

# One thread for BLAS/OpenMP, before numpy is imported: the throughput figure is per core.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.base import BaseEstimator  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.ensemble import VotingClassifier  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression, SGDClassifier  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.naive_bayes import ComplementNB  # noqa: E402
from sklearn.pipeline import FeatureUnion, Pipeline  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hitl.ml.metrics import EvaluationMetrics, brier_score, classification_report  # noqa: E402
from hitl.ml.pipelines import RareAlwaysTrainKFold  # noqa: E402  (the product's own splitter)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "endava_tickets.csv"
LEVELS = (0.90, 0.95, 0.99)


# --------------------------------------------------------------------------------------------- data


def load_tickets(path: Path, label: str) -> tuple[list[str], np.ndarray]:
    """Texts (title or subject + " " + body; a missing part is "") and the label column as strings.

    Labels are strings because CalibratedClassifierCV(method="temperature") in scikit-learn 1.9.1 only
    label-encodes string targets: integer codes that are not 0..K-1 silently give wrong probabilities.
    """
    frame = pd.read_csv(path)
    title_col = "title" if "title" in frame.columns else "subject"
    if label not in frame.columns:
        raise SystemExit(f"{path} has no column {label!r}; columns: {', '.join(frame.columns)}")
    frame = frame[frame[label].notna()]
    texts = (frame[title_col].fillna("").astype(str) + " " + frame["body"].fillna("").astype(str)).tolist()
    return texts, frame[label].astype(str).to_numpy()


def pooled_strata(y: np.ndarray, n_folds: int) -> np.ndarray:
    """Stratification key: classes with fewer than n_folds members share one "rare" stratum."""
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    key = inverse.copy()
    key[counts[inverse] < n_folds] = -1
    return key


# ----------------------------------------------------------------------------------------- features


def _word(ngram_max: int = 2, min_df: int = 2, **kw: Any) -> TfidfVectorizer:
    return TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf=True, min_df=min_df, **kw)


def _char(low: int, high: int, min_df: int = 2, **kw: Any) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="char_wb", ngram_range=(low, high), sublinear_tf=True, min_df=min_df, **kw
    )


def _head(chars: int = 40) -> TfidfVectorizer:
    """Word 1-2-grams of the tokens that start in the first `chars` characters: mostly the title.

    The model's input is one string (title + " " + body), so the title cannot be told apart from the
    body; the opening words carry the summary, and a block of their own lets the classifier weight them
    separately. It stays a plain TfidfVectorizer (picklable, no custom code): the first alternative
    captures a token only when fewer than `chars` characters precede it; the second swallows the rest of
    the text in one match, whose empty capture is dropped as the only stop word. (A look-behind alone
    is 6x slower, because the regex engine then tries the look-behind at every position of the body.)
    """
    return TfidfVectorizer(
        ngram_range=(1, 2),
        sublinear_tf=True,
        token_pattern=rf"(?<![\s\S]{{{chars}}})\b(\w\w+)\b|(?<=[\s\S]{{{chars}}})[\s\S]+",
        stop_words=[""],
    )


def _prefix(chars: int = 5, ngram_max: int = 2) -> TfidfVectorizer:
    """N-grams of word prefixes (the first `chars` characters of each word): a crude stemmer.

    It recovers much of what character n-grams add (inflections, compounds, typos) at the speed of the
    word analyzer, because the regex engine, not a Python loop, cuts the tokens.
    """
    return TfidfVectorizer(
        ngram_range=(1, ngram_max), sublinear_tf=True, min_df=2, token_pattern=rf"\b\w{{2,{chars}}}"
    )


def _union(*parts: tuple[str, TfidfVectorizer]) -> FeatureUnion:
    return FeatureUnion(list(parts))


FEATURES: dict[str, Callable[[], Any]] = {
    # The baseline's featurisation, scikit-learn defaults.
    "w12": lambda: TfidfVectorizer(ngram_range=(1, 2)),
    # s = sublinear_tf; the trailing digit is min_df.
    "w12s1": lambda: _word(2, min_df=1),
    "w12s2": lambda: _word(2, min_df=2),
    "w13s2": lambda: _word(3, min_df=2),
    "c35": lambda: _char(3, 5),
    "wc25": lambda: _union(("word", _word(2)), ("char", _char(2, 5))),
    "wc35": lambda: _union(("word", _word(2)), ("char", _char(3, 5))),
    # Vocabulary caps on the char block (~20k features uncapped, so 30k does not bind; 5k does).
    "wc35mf": lambda: _union(("word", _word(2)), ("char", _char(3, 5, max_features=30000))),
    "wc35mf5k": lambda: _union(("word", _word(2)), ("char", _char(3, 5, max_features=5000))),
    "wc14": lambda: _union(("word", _word(2)), ("char", _char(1, 4))),
    "wc35h40": lambda: _union(("word", _word(2)), ("char", _char(3, 5)), ("head", _head(40))),
    "w12h40": lambda: _union(("word", _word(2)), ("head", _head(40))),
    "w12h24": lambda: _union(("word", _word(2)), ("head", _head(24))),
    "w12h56": lambda: _union(("word", _word(2)), ("head", _head(56))),
    "w13h40": lambda: _union(("word", _word(3)), ("head", _head(40))),
    "p5h40": lambda: _union(("prefix", _prefix(5)), ("head", _head(40))),
    "wp4h40": lambda: _union(("word", _word(2)), ("prefix", _prefix(4)), ("head", _head(40))),
    "wp5h40": lambda: _union(("word", _word(2)), ("prefix", _prefix(5)), ("head", _head(40))),
    "wp6h40": lambda: _union(("word", _word(2)), ("prefix", _prefix(6)), ("head", _head(40))),
    "wp5": lambda: _union(("word", _word(2)), ("prefix", _prefix(5))),
}


# -------------------------------------------------------------------------------------- classifiers

_CALIBRATION = {"sig": "sigmoid", "iso": "isotonic", "temp": "temperature"}


@dataclass
class ClassifierSpec:
    family: str
    C: float = 1.0
    alpha: float | None = None
    balanced: bool = False
    calibration: str | None = None


def parse_classifier(spec: str) -> ClassifierSpec:
    tokens = spec.split("_")
    parsed = ClassifierSpec(family=tokens[0])
    if parsed.family not in {"lr", "svc", "sgd", "cnb"}:
        raise SystemExit(f"unknown classifier family in {spec!r}")
    for token in tokens[1:]:
        if token == "bal":
            parsed.balanced = True
        elif token in _CALIBRATION:
            parsed.calibration = _CALIBRATION[token]
        elif re.fullmatch(r"C[0-9.e-]+", token):
            parsed.C = float(token[1:])
        elif re.fullmatch(r"a[0-9.e-]+", token):
            parsed.alpha = float(token[1:])
        else:
            raise SystemExit(f"unknown token {token!r} in classifier {spec!r}")
    return parsed


def build_classifier(spec: str, inner_folds: int, seed: int) -> BaseEstimator:
    p = parse_classifier(spec)
    class_weight = "balanced" if p.balanced else None
    base: BaseEstimator
    if p.family == "lr":
        base = LogisticRegression(C=p.C, class_weight=class_weight, max_iter=3000)
    elif p.family == "svc":
        base = LinearSVC(C=p.C, class_weight=class_weight)
    elif p.family == "sgd":
        base = SGDClassifier(
            loss="modified_huber",
            alpha=p.alpha if p.alpha is not None else 1e-4,
            class_weight=class_weight,
            max_iter=50,
            tol=1e-4,
            random_state=seed,
        )
    else:
        base = ComplementNB(alpha=p.alpha if p.alpha is not None else 1.0)
    if p.calibration is None:
        if p.family == "svc":
            raise SystemExit(f"{spec!r}: LinearSVC has no probabilities; add _sig, _iso or _temp")
        return base
    return CalibratedClassifierCV(
        base, method=p.calibration, cv=RareAlwaysTrainKFold(inner_folds, seed), ensemble=True
    )


# ------------------------------------------------------------------------------------- candidates

ALIASES = {"baseline": "lr@w12"}


@dataclass(frozen=True)
class Single:
    name: str
    classifier: str
    features: str


def parse_candidate(name: str) -> list[Single]:
    """One Single, or the members of an ``A+B`` average."""
    members = []
    for part in name.split("+"):
        spec = ALIASES.get(part, part)
        if "@" not in spec:
            raise SystemExit(f"candidate {part!r} is not CLASSIFIER@FEATURES")
        clf, feats = spec.split("@", 1)
        if feats not in FEATURES:
            raise SystemExit(f"unknown features {feats!r}; known: {', '.join(FEATURES)}")
        parse_classifier(clf)
        members.append(Single(name=part, classifier=clf, features=feats))
    return members


def build_pipeline(name: str, inner_folds: int, seed: int) -> BaseEstimator:
    """The production-shaped estimator for a candidate: raw texts in, probabilities out."""
    members = parse_candidate(name)
    if len(members) == 1:
        m = members[0]
        return Pipeline(
            [("features", FEATURES[m.features]()), ("clf", build_classifier(m.classifier, inner_folds, seed))]
        )
    if len({m.features for m in members}) == 1:  # one featurisation shared by the members
        voters = [(f"m{i}", build_classifier(m.classifier, inner_folds, seed)) for i, m in enumerate(members)]
        return Pipeline(
            [("features", FEATURES[members[0].features]()), ("clf", VotingClassifier(voters, voting="soft"))]
        )
    voters = [(f"m{i}", build_pipeline(m.name, inner_folds, seed)) for i, m in enumerate(members)]
    return VotingClassifier(voters, voting="soft")


# ------------------------------------------------------------------------------------------ CV run


@dataclass
class FoldOutput:
    fold: int
    test: np.ndarray
    train_classes: np.ndarray
    proba: dict[str, np.ndarray]  # single candidate name -> (n_test, n_global_classes)
    fit_seconds: dict[str, float]


def run_fold(
    fold: int,
    train: np.ndarray,
    test: np.ndarray,
    texts: list[str],
    y: np.ndarray,
    classes: np.ndarray,
    singles: list[Single],
    inner_folds: int,
    seed: int,
) -> FoldOutput:
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    x_train = [texts[i] for i in train]
    x_test = [texts[i] for i in test]
    out = FoldOutput(fold, test, np.unique(y[train]), {}, {})
    by_features: dict[str, list[Single]] = {}
    for s in singles:
        by_features.setdefault(s.features, []).append(s)
    for feats, members in by_features.items():
        t0 = time.perf_counter()
        vectorizer = FEATURES[feats]()
        xf_train = vectorizer.fit_transform(x_train)
        xf_test = vectorizer.transform(x_test)
        feature_seconds = time.perf_counter() - t0
        for s in members:
            t0 = time.perf_counter()
            clf = build_classifier(s.classifier, inner_folds, seed).fit(xf_train, y[train])
            p = clf.predict_proba(xf_test)
            out.fit_seconds[s.name] = feature_seconds + time.perf_counter() - t0
            full = np.zeros((len(test), classes.size))
            full[:, np.searchsorted(classes, clf.classes_)] = p  # classes not in training: 0
            out.proba[s.name] = full
    return out


@dataclass
class Result:
    name: str
    oof: EvaluationMetrics
    folds: list[EvaluationMetrics]
    fit_seconds: float
    tickets_per_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def evaluate(
    name: str, folds: list[FoldOutput], y: np.ndarray, classes: np.ndarray
) -> tuple[EvaluationMetrics, list[EvaluationMetrics]]:
    """OOF metrics over all rows plus per-fold metrics; Brier is over each fold model's own classes."""
    members = [m.name for m in parse_candidate(name)]
    proba = np.zeros((y.size, classes.size))
    per_fold = []
    brier_sum = 0.0
    for f in folds:
        p = np.mean([f.proba[m] for m in members], axis=0)
        proba[f.test] = p
        known = np.searchsorted(classes, f.train_classes)
        y_f = y[f.test]
        pred_f = classes[np.argmax(p, axis=1)]
        report = classification_report(y_f, pred_f, p[:, known], f.train_classes, LEVELS)
        per_fold.append(report)
        brier_sum += brier_score(p[:, known], f.train_classes, y_f) * f.test.size
    pred = classes[np.argmax(proba, axis=1)]
    oof = classification_report(y, pred, proba, classes, LEVELS)
    oof = EvaluationMetrics(**{**oof.model_dump(), "brier": brier_sum / y.size})
    return oof, per_fold


def throughput(
    name: str, texts: list[str], y: np.ndarray, inner_folds: int, seed: int, repeats: int
) -> float:
    """Tickets per second of predict_proba on all rows in one batch (featurisation included), one thread."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_pipeline(name, inner_folds, seed).fit(texts, y)
    with threadpool_limits(limits=1):
        model.predict_proba(texts[:100])  # warm-up
        timings = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.predict_proba(texts)
            timings.append(time.perf_counter() - t0)
    return len(texts) / statistics.median(timings)


def near_duplicate_agreement(
    texts: list[str], y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
) -> list[tuple[float, int, float]]:
    """For each row, its most similar ticket in the other folds (word TF-IDF cosine): how often they agree.

    A ceiling check, not a model: if near-identical tickets carry different labels, no text model can be
    right on all of them, and the confident top of the ranking (coverage at 95 %) is capped by that noise.
    Returns (threshold, rows whose nearest neighbour is at least that similar, share with the same label).
    """
    similarity = np.zeros(y.size)
    same = np.zeros(y.size, dtype=bool)
    for train, test in splits:
        vectorizer = FEATURES["w12s2"]()
        a = vectorizer.fit_transform([texts[i] for i in train])
        b = vectorizer.transform([texts[i] for i in test])
        sims = (b @ a.T).toarray()
        similarity[test] = sims.max(axis=1)
        same[test] = y[train][sims.argmax(axis=1)] == y[test]
    rows = []
    for threshold in (0.5, 0.7, 0.8, 0.9):
        mask = similarity >= threshold
        rows.append((threshold, int(mask.sum()), float(same[mask].mean()) if mask.any() else float("nan")))
    return rows


# ------------------------------------------------------------------------------------------ report


def _spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown(results: list[Result]) -> str:
    lines = [
        "| candidate | accuracy | macro-F1 | ECE | Brier | cov@0.90 | cov@0.95 | cov@0.99 | tickets/s"
        " | fit s/fold |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r.oof.coverage_at_accuracy
        tps = f"{r.tickets_per_s:,.0f}" if r.tickets_per_s else "-"
        m = r.oof
        lines.append(
            f"| `{r.name}` | {m.accuracy:.4f} | {m.macro_f1:.4f} | {m.ece:.4f} | {m.brier:.4f}"
            f" | {c['0.90']:.4f} | {c['0.95']:.4f} | {c['0.99']:.4f} | {tps} | {r.fit_seconds:.1f} |"
        )
    lines += [
        "",
        "Fold spread (mean ± sd over folds):",
        "",
        "| candidate | accuracy | macro-F1 | ECE | cov@0.95 | cov@0.95 min-max |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        cov = [f.coverage_at_accuracy["0.95"] for f in r.folds]
        acc, f1, ece = ([getattr(f, key) for f in r.folds] for key in ("accuracy", "macro_f1", "ece"))
        lines.append(
            f"| `{r.name}` | {_spread(acc)} | {_spread(f1)} | {_spread(ece)} | {_spread(cov)}"
            f" | {min(cov):.3f}-{max(cov):.3f} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="tickets CSV (read in place)")
    parser.add_argument("--label", default="category", help="label column (decision head)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--inner-folds", type=int, default=3, help="calibration folds inside a training fold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", default="baseline", help="comma-separated candidate names")
    parser.add_argument("--jobs", type=int, default=2, help="outer folds run in parallel (at most 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed predict_proba batches (median)")
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput measurement")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--list", action="store_true", help="list feature sets and exit")
    parser.add_argument(
        "--duplicates", action="store_true", help="also report label agreement of near-duplicate tickets"
    )
    args = parser.parse_args(argv)
    if args.list:
        for key, make in FEATURES.items():
            print(f"{key}: {make()!r}")
        return

    started = time.perf_counter()
    texts, y = load_tickets(args.data, args.label)
    classes = np.unique(y)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    singles = list({s.name: s for n in names for s in parse_candidate(n)}.values())
    skf = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
    strata = pooled_strata(y, args.folds)
    with warnings.catch_warnings():  # the pooled "rare" stratum may itself have < folds members
        warnings.simplefilter("ignore", UserWarning)
        splits = list(skf.split(np.zeros(y.size), strata))
    fold_outputs = Parallel(n_jobs=max(1, min(args.jobs, 2)))(
        delayed(run_fold)(i, tr, te, texts, y, classes, singles, args.inner_folds, args.seed)
        for i, (tr, te) in enumerate(splits)
    )
    results = []
    for name in names:
        oof, per_fold = evaluate(name, fold_outputs, y, classes)
        fit_s = sum(
            statistics.mean(f.fit_seconds[m.name] for f in fold_outputs) for m in parse_candidate(name)
        )
        results.append(Result(name, oof, per_fold, fit_s))
    if not args.no_throughput:
        for r in results:
            r.tickets_per_s = throughput(r.name, texts, y, args.inner_folds, args.seed, args.repeats)

    counts = pd.Series(y).value_counts()
    command = "python bench/model_selection.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"# {args.data.name} · label `{args.label}` · {y.size} rows · {classes.size} classes")
    print(
        f"{args.folds}-fold stratified CV (seed {args.seed}, inner calibration folds {args.inner_folds}); "
        f"classes with < {args.folds} members: {int((counts < args.folds).sum())} "
        f"({int(counts[counts < args.folds].sum())} rows); majority class share {counts.iloc[0] / y.size:.3f}"
    )
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {machine()} · scikit-learn {_sklearn_version()}")
    print(f"`{command}` ({time.perf_counter() - started:.0f} s)\n")
    print(markdown(results))
    if args.duplicates:
        print("\nNearest ticket in the other folds (word TF-IDF cosine) and label agreement:\n")
        print("| cosine >= | rows | same label |\n|---|---|---|")
        for threshold, n, share in near_duplicate_agreement(texts, y, splits):
            print(f"| {threshold:.1f} | {n} | {share:.3f} |")
    if args.json:
        payload = {
            "data": str(args.data),
            "label": args.label,
            "folds": args.folds,
            "seed": args.seed,
            "command": command,
            "results": [
                {
                    "name": r.name,
                    "oof": r.oof.model_dump(),
                    "folds": [f.model_dump() for f in r.folds],
                    "fit_seconds_per_fold": r.fit_seconds,
                    "tickets_per_s": r.tickets_per_s,
                }
                for r in results
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2))


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


if __name__ == "__main__":
    main()
