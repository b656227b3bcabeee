"""Metadata baselines: does the image model know more than a logistic regression on a few metadata columns?

A model that reads the patient's position (AP vs PA), the scanner or the lesion's size can reach a high
AUC without looking at the disease. The baseline here predicts the label from the named metadata
columns alone: a scikit-learn :class:`~sklearn.pipeline.Pipeline` of a
:class:`~sklearn.compose.ColumnTransformer` (numeric columns: median imputation with a missing indicator,
then standardised; categorical columns: most-frequent imputation with a missing indicator, then one-hot,
unseen categories ignored) and a :class:`~sklearn.linear_model.LogisticRegression`. It is fitted on the
training rows only (no hyper-parameter is tuned, so nothing is cross-validated inside the training
split) and scores the evaluated rows.

The comparison is paired: every patient-bootstrap replicate (:func:`~medclass.metrics.bootstrap.resample_weights`)
scores the image model and the baseline on the same resampled patients, so the CI of the difference
``AUC(image) - AUC(baseline)`` comes from the same resamples as the two AUCs' CIs. The verdict:

* ``beats``: the difference's CI lies above 0;
* ``not_better``: it includes 0 (the image model is not shown to know more than the metadata);
* ``worse``: it lies below 0 (the metadata alone predict the label better);
* ``unconfirmed``: no CI (``n_boot=0``, or too few patients by the rule of :mod:`.rare`) and a positive
  point difference; ``not_better``/``worse`` by the point difference otherwise.

Single-label: the baseline is one multinomial regression over the classes (binary: the positive class, the
second one); with more than two classes the AUCs are the macro one-vs-rest AUC. Multi-label: one baseline
per finding, fitted on the training rows where that finding is known (masked labels take no part).

Example:
    >>> import pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 100)
    >>> train = pd.DataFrame({"view": np.where(y == 1, "AP", "PA"), "age": rng.normal(50, 10, 200)})
    >>> p = 1 / (1 + np.exp(-(y - 0.5 + rng.normal(0, 1, 200))))  # an image model with AUC about 0.76
    >>> out = metadata_baselines(train, y, train, y, np.stack([1 - p, p], axis=1), None, ["view"], ["no", "yes"], n_boot=100)
    >>> c = out.comparisons[0]
    >>> c.baseline_auc["value"], c.verdict
    (1.0, 'worse')
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .bootstrap import check_alpha, percentile_interval, resample_weights
from .metrics import ArrayLike, UndefinedMetricWarning, roc_auc
from .rare import not_estimable, positive_patients, too_few_patients

Kind = Literal["numeric", "categorical"]
Verdict = Literal["beats", "not_better", "worse", "unconfirmed"]
MODEL_DESCRIPTION = ("logistic regression (scikit-learn) on the named columns: numeric ones median-imputed with a "
                     "missing indicator and standardised, categorical ones most-frequent-imputed with a missing "
                     "indicator and one-hot encoded")
WARNED: tuple[Verdict, ...] = ("not_better", "worse")  # the verdicts that warn (console, report, model card)


def _blank_to_nan(values: pd.Series) -> pd.Series:
    """Empty or whitespace-only text is a missing value (``split.csv`` is read with blanks kept as '')."""
    text = values.astype("string").str.strip()
    return values.mask(values.isna() | (text == ""))


def column_kinds(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, Kind]:
    """``numeric`` when every non-missing value of a column parses as a number (and one does), else ``categorical``.

    >>> column_kinds(pd.DataFrame({"age": ["41", "", "7.5"], "view": ["AP", "PA", ""]}), ["age", "view"])
    {'age': 'numeric', 'view': 'categorical'}
    """
    kinds: dict[str, Kind] = {}
    for column in columns:
        values = _blank_to_nan(frame[column])
        numbers = pd.to_numeric(values, errors="coerce")
        kinds[column] = "numeric" if numbers.notna().any() and numbers.notna().sum() == values.notna().sum() else "categorical"
    return kinds


def design_frame(frame: pd.DataFrame, kinds: dict[str, Kind]) -> pd.DataFrame:
    """The named columns as the pipeline reads them: numbers as float, categories as text, missing as NaN."""
    out = {}
    for column, kind in kinds.items():
        values = _blank_to_nan(frame[column])
        out[column] = (pd.to_numeric(values, errors="coerce").astype(float) if kind == "numeric"
                       else values.map(lambda v: str(v) if pd.notna(v) else np.nan).astype(object))
    return pd.DataFrame(out, index=frame.index)


def baseline_pipeline(kinds: dict[str, Kind], seed: int = 0):
    """The unfitted scikit-learn pipeline of the baseline for columns of these kinds."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c, k in kinds.items() if k == "numeric"]
    categorical = [c for c, k in kinds.items() if k == "categorical"]
    parts = []
    if numeric:
        parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                      numeric))
    if categorical:
        parts.append(("categorical", make_pipeline(SimpleImputer(strategy="most_frequent", add_indicator=True),
                                                   OneHotEncoder(handle_unknown="ignore")), categorical))
    return Pipeline([("features", ColumnTransformer(parts)),
                     ("model", LogisticRegression(max_iter=1000, random_state=seed))])


def fit_predict(train: pd.DataFrame, y_train: ArrayLike, test: pd.DataFrame, kinds: dict[str, Kind],
                n_classes: int, seed: int = 0) -> np.ndarray:
    """Fit the baseline on ``train`` (labels ``0..n_classes-1``) and return the ``(len(test), n_classes)`` probabilities
    of ``test``; a class absent from the training rows gets probability 0.

    Raises ``ValueError`` when the training rows hold fewer than two classes (nothing to fit).
    """
    y = np.asarray(y_train, dtype=np.int64)
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError(f"the training rows hold only class {present.tolist()}: a baseline needs two classes")
    model = baseline_pipeline(kinds, seed).fit(design_frame(train, kinds), y)
    probs = np.zeros((len(test), n_classes))
    probs[:, model.classes_] = model.predict_proba(design_frame(test, kinds))
    return probs


@dataclass
class BaselineComparison:
    """The image model vs the metadata baseline for one target (the positive class, all classes or a finding)."""

    target: str  # the positive class of a binary model, "all classes (macro one-vs-rest)", or a finding
    n_train: int  # training rows the baseline was fitted on
    n_test: int  # evaluated rows both were scored on
    test_patients: int
    baseline_auc: dict[str, Any]  # {"value", "low", "high", "n_valid"} (or not estimable: low/high None and the reason)
    image_auc: dict[str, Any]
    difference: dict[str, Any]  # AUC(image) - AUC(baseline), from the same patient resamples
    verdict: Verdict
    message: str  # the verdict in plain words

    @property
    def warned(self) -> bool:
        return self.verdict in WARNED


@dataclass
class BaselinesReport:
    """``metrics.json["baselines"]``: the columns, how the baseline was built and fitted, one comparison per target."""

    columns: list[str]
    kinds: dict[str, Kind]
    model: str
    fitted_on: str  # which rows (e.g. "the run's training split: 700 images of 390 patients")
    ci_method: str
    comparisons: list[BaselineComparison]
    skipped: dict[str, str] = field(default_factory=dict)  # target -> why it has no baseline (one class in training)

    @property
    def warnings(self) -> list[str]:
        return [c.message for c in self.comparisons if c.warned]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = self.warnings
        for c, d in zip(self.comparisons, out["comparisons"]):
            d["warning"] = c.warned
        return out


def _ci(values: np.ndarray, point: float, alpha: float, what: str, reason: str) -> dict[str, Any]:
    if reason:
        return not_estimable(point, reason)
    low, high, n_valid = percentile_interval(values, alpha, what)
    return {"value": float(point), "low": low, "high": high, "n_valid": n_valid}


def _verdict(diff: dict[str, Any]) -> Verdict:
    if diff.get("low") is not None and diff.get("high") is not None and np.isfinite(diff["low"]):
        return "beats" if diff["low"] > 0 else "worse" if diff["high"] < 0 else "not_better"
    return "unconfirmed" if diff["value"] > 0 else "worse" if diff["value"] < 0 else "not_better"


def verdict_message(verdict: Verdict, columns: Sequence[str], target: str, image: dict, base: dict, diff: dict) -> str:
    """The verdict of one comparison in plain words, with the numbers.

    >>> verdict_message("worse", ["view"], "pneumonia", {"value": 0.7}, {"value": 0.8},
    ...                 {"value": -0.1, "low": -0.2, "high": -0.01})[:58]
    'pneumonia: the image model is WORSE than a baseline that s'
    """
    seen = " + ".join(columns)
    interval = (f" (95% CI {diff['low']:+.3f} to {diff['high']:+.3f})" if diff.get("low") is not None else " (no CI)")
    numbers = (f"AUC {image['value']:.3f} vs {base['value']:.3f} for {seen} alone, difference "
               f"{diff['value']:+.3f}{interval}")
    if verdict == "beats":
        return f"{target}: the image model beats a baseline that sees only {seen}: {numbers}."
    if verdict == "unconfirmed":
        return (f"{target}: the image model scores above a baseline that sees only {seen}, but without a CI it is not "
                f"shown to beat it: {numbers}.")
    if verdict == "worse":
        return (f"{target}: the image model is WORSE than a baseline that sees only {seen}: {numbers}. The metadata "
                "alone predict the label better than the images do.")
    return (f"{target}: the image model does NOT beat a baseline that sees only {seen}: {numbers}. Its AUC may rest on "
            f"what {seen} already tells (a shortcut, unless {seen} is the disease itself), not on more in the image.")


def _paired(targets: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], groups: np.ndarray | None,
            n_boot: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per target ``(image AUCs, baseline AUCs)`` over the same ``n_boot`` patient resamples of all evaluated rows."""
    out: list[tuple[list, list]] = [([], []) for _ in targets]
    n = len(groups) if groups is not None else len(targets[0][1])
    with warnings.catch_warnings():  # one-class replicates are NaN, counted by percentile_interval
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for W in resample_weights(n, groups, n_boot, seed):
            for (_, keep, y, image, base), (a, b) in zip(targets, out):
                a.append(roc_auc(y, image, sample_weight=W[:, keep]))
                b.append(roc_auc(y, base, sample_weight=W[:, keep]))
    return [(np.concatenate(a), np.concatenate(b)) for a, b in out]


def _targets(y_test: np.ndarray, p_image: np.ndarray, p_base: dict[str, np.ndarray], names: Sequence[str],
             multi_label: bool) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(target, evaluated rows it is scored on, labels, image probs, baseline probs)`` per target with a baseline."""
    if not multi_label:
        target = _single_target(names)
        keep = np.ones(len(y_test), dtype=bool)
        return [(target, keep, y_test.astype(np.int64), p_image, p_base[target])] if target in p_base else []
    out = []
    for k, finding in enumerate(names):
        keep = ~np.isnan(y_test[:, k])
        if finding in p_base:
            out.append((finding, keep, y_test[keep, k].astype(np.int64), np.stack([1 - p_image[keep, k], p_image[keep, k]], 1),
                        p_base[finding][keep]))
    return out


def metadata_baselines(train: pd.DataFrame, y_train: ArrayLike, test: pd.DataFrame, y_test: ArrayLike,
                       p_image: ArrayLike, groups: ArrayLike | None, columns: Sequence[str], names: Sequence[str],
                       multi_label: bool = False, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                       fitted_on: str = "the training rows") -> BaselinesReport:
    """Fit the metadata baseline on ``train`` and compare it with the image model on ``test``, paired per patient.

    Args:
        train, test: frames holding the metadata ``columns`` (training rows; evaluated rows).
        y_train, y_test: single-label class indices ``(n,)``; multi-label ``(n, K)`` of 1 / 0 / NaN (masked).
        p_image: the image model's probabilities of the evaluated rows, ``(n, n_classes)`` or ``(n, K)``.
        groups: patient id of every evaluated row (``None``: rows are independent).
        names: the class names (single-label) or findings (multi-label).
        n_boot: patient-bootstrap replicates (0 = point estimates only).
        fitted_on: how the training rows are described in the result.
    """
    check_alpha(alpha)
    y_tr, y_te, P = np.asarray(y_train), np.asarray(y_test), np.asarray(p_image, dtype=np.float64)
    g = None if groups is None else np.asarray(groups).astype(str)
    kinds = column_kinds(train, columns)
    p_base, n_train, skipped = _fit_all(train, y_tr, test, kinds, names, multi_label, seed)
    targets = _targets(y_te, P, p_base, names, multi_label)
    reps = _paired(targets, g, n_boot, seed) if n_boot > 0 and targets else [(np.array([]), np.array([]))] * len(targets)
    comparisons = []
    for (target, keep, y, image, base), (a, b) in zip(targets, reps):
        tg = None if g is None else g[keep]
        reason = "" if n_boot > 0 else "no bootstrap (n_boot=0)"
        if not reason and (len(names) == 2 or multi_label):  # the rare rule is one of positive vs negative patients
            reason = too_few_patients(*positive_patients(y, tg))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            ai, ab = float(roc_auc(y, image)), float(roc_auc(y, base))
        image_ci = _ci(a, ai, alpha, f"{target} image AUC", reason)
        base_ci = _ci(b, ab, alpha, f"{target} baseline AUC", reason)
        diff_ci = _ci(a - b, ai - ab, alpha, f"{target} AUC difference", reason)
        verdict = _verdict(diff_ci)
        n_patients = int(len(np.unique(tg))) if tg is not None else int(keep.sum())
        comparisons.append(BaselineComparison(target, n_train[target], int(keep.sum()), n_patients, base_ci, image_ci,
                                              diff_ci, verdict,
                                              verdict_message(verdict, columns, target, image_ci, base_ci, diff_ci)))
    ci_method = "none" if n_boot <= 0 else (f"{round((1 - alpha) * 100)}% percentile bootstrap, {n_boot} replicates "
                                            f"resampling {'patients' if g is not None else 'images'}; both models on "
                                            "the same replicates")
    return BaselinesReport(list(columns), kinds, MODEL_DESCRIPTION, fitted_on, ci_method, comparisons, skipped)


def _fit_all(train: pd.DataFrame, y_train: np.ndarray, test: pd.DataFrame, kinds: dict[str, Kind], names: Sequence[str],
             multi_label: bool, seed: int) -> tuple[dict[str, np.ndarray], dict[str, int], dict[str, str]]:
    """Per target: the baseline's probabilities of the evaluated rows, its training rows, or why it has none."""
    p_base: dict[str, np.ndarray] = {}
    n_train: dict[str, int] = {}
    skipped: dict[str, str] = {}
    if not multi_label:
        jobs = [(_single_target(names), np.ones(len(train), dtype=bool), y_train, len(names))]
    else:
        jobs = [(f, ~np.isnan(y_train[:, k].astype(float)), y_train[:, k], 2) for k, f in enumerate(names)]
    for target, known, y, n_classes in jobs:
        try:
            probs = fit_predict(train[known], y[known], test, kinds, n_classes, seed)
        except ValueError as e:
            skipped[target] = str(e)
            continue
        p_base[target] = probs
        n_train[target] = int(known.sum())
    return p_base, n_train, skipped


def _single_target(names: Sequence[str]) -> str:
    """The target of a single-label model: its positive class (binary), or all classes."""
    return names[1] if len(names) == 2 else "all classes (macro one-vs-rest)"

__all__ = ["BaselineComparison", "BaselinesReport", "MODEL_DESCRIPTION", "WARNED", "baseline_pipeline", "column_kinds",
           "design_frame", "fit_predict", "metadata_baselines", "verdict_message"]
