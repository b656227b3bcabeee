"""Pure metric functions over numpy arrays (MONAI-like): each metric is a function, plus :func:`compute_metrics`.

Conventions (see ``docs/architecture.md``):

* ``y_true``: int class indices, shape ``(n,)``.
* ``probs``: probabilities ``(n, n_classes)``, rows summing to 1; for binary ``[1 - p, p]`` where
  class 1 is the positive class. A 1-D ``p`` is accepted for binary everywhere.
* ``y_pred``: int class indices ``(n,)`` (see :func:`predict_labels`).
* ``sample_weight``: ``None``, ``(n,)`` or ``(B, n)``. A 2-D weight evaluates ``B`` weightings at once
  (the bootstrap passes resampling multiplicities) and the metric returns an array of ``B`` values
  instead of a float.

Undefined values (a ratio whose denominator is 0, an AUC on a set with one class) are ``NaN`` and
raise an :class:`UndefinedMetricWarning` instead of crashing.

Example:
    >>> import numpy as np
    >>> y = np.array([0, 0, 1, 1]); p = np.array([0.1, 0.6, 0.4, 0.9])
    >>> roc_auc(y, p), accuracy(y, predict_labels(p))
    (0.75, 0.5)
    >>> m = compute_metrics(y, p, threshold=0.5, class_names=["normal", "pneumonia"])
    >>> m["sensitivity"], m["per_class"]["pneumonia"]["recall"]
    (0.5, 0.5)
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import check_choice
from ._metric_inputs import (ArrayLike, Metric, UndefinedMetricWarning, _nanavg, _out, _pair, _ratio,  # noqa: F401
                             _warn_nan, _weights, as_labels, as_prob_matrix, check_inputs)

ECE_BINS = 10  # default number of equal-width bins of the ECE and the reliability curve
SCREENING_SPECIFICITY = 0.90  # specificity floor of the reported ``sensitivity_at_spec90`` (a screening operating point)


def predict_labels(probs: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """Decisions: binary ``p >= threshold`` (class 1), multi-class ``argmax`` (``threshold`` ignored).

    >>> predict_labels([0.2, 0.5, 0.7], threshold=0.5).tolist()
    [0, 1, 1]
    """
    P = as_prob_matrix(probs)
    if P.shape[1] == 2:
        return (P[:, 1] >= threshold).astype(np.int64)
    return P.argmax(1).astype(np.int64)


# ---------------------------------------------------------------------------------------------- decisions
def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None,
                     sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Counts ``C[..., i, j]`` of images of true class ``i`` predicted as ``j`` (``(k, k)`` or ``(B, k, k)``).

    >>> confusion_matrix([0, 1, 1], [0, 0, 1]).tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    y, d, k = _pair(y_true, y_pred, n_classes)
    W, scalar = _weights(sample_weight, len(y))
    onehot = np.zeros((len(y), k * k))
    onehot[np.arange(len(y)), y * k + d] = 1.0
    C = (W @ onehot).reshape(-1, k, k)
    return C[0] if scalar else C


def _per_class(y_true, y_pred, n_classes, sample_weight, which: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-class precision/recall/f1 ``(B, k)``, the class supports ``(B, k)`` and the scalar flag."""
    y, d, k = _pair(y_true, y_pred, n_classes)
    W, scalar = _weights(sample_weight, len(y))
    C = confusion_matrix(y, d, k, W)
    tp, support, predicted = np.diagonal(C, axis1=1, axis2=2), C.sum(2), C.sum(1)
    den = {"precision": predicted, "recall": support, "f1": (support + predicted) / 2}[which]
    return _ratio(tp, den), support, scalar


def _averaged(values: np.ndarray, support: np.ndarray, average: str | None, scalar: bool, what: str) -> Metric:
    check_choice("average", str(average), ["binary", "macro", "weighted", "None"])
    _warn_nan(values[:, 1] if average == "binary" and values.shape[1] == 2 else values, what)
    if average is None:
        return values[0] if scalar else values
    if average == "binary":
        if values.shape[1] != 2:
            raise ValueError(f"average='binary' needs 2 classes; got {values.shape[1]}. Use average='macro'.")
        return _out(values[:, 1], scalar)
    return _out(_nanavg(values, support if average == "weighted" else None), scalar)


def precision(y_true: ArrayLike, y_pred: ArrayLike, average: str | None = "binary", n_classes: int | None = None,
              sample_weight: ArrayLike | None = None) -> Metric:
    """Precision (PPV) of class 1 (``average='binary'``), ``'macro'``/``'weighted'`` means, or per class (``None``).

    Macro/weighted means skip undefined (NaN) classes, like scikit-learn with ``zero_division=np.nan``.

    >>> precision([0, 1, 1], [1, 1, 1])
    0.6666666666666666
    """
    values, support, scalar = _per_class(y_true, y_pred, n_classes, sample_weight, "precision")
    return _averaged(values, support, average, scalar, "precision")


def recall(y_true: ArrayLike, y_pred: ArrayLike, average: str | None = "binary", n_classes: int | None = None,
           sample_weight: ArrayLike | None = None) -> Metric:
    """Recall (sensitivity) of class 1, or averaged / per class like :func:`precision`.

    >>> recall([0, 1, 1], [1, 1, 0])
    0.5
    """
    values, support, scalar = _per_class(y_true, y_pred, n_classes, sample_weight, "recall")
    return _averaged(values, support, average, scalar, "recall")


def f1_score(y_true: ArrayLike, y_pred: ArrayLike, average: str | None = "binary", n_classes: int | None = None,
             sample_weight: ArrayLike | None = None) -> Metric:
    """F1 = 2 TP / (2 TP + FP + FN) of class 1, or averaged / per class like :func:`precision`.

    >>> f1_score([0, 1, 1], [1, 1, 0])
    0.5
    """
    values, support, scalar = _per_class(y_true, y_pred, n_classes, sample_weight, "f1")
    return _averaged(values, support, average, scalar, "f1")


def per_class_accuracy(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None,
                       sample_weight: ArrayLike | None = None) -> np.ndarray:
    """Share of each class's images classified correctly (= recall per class), shape ``(k,)`` or ``(B, k)``.

    >>> per_class_accuracy([0, 0, 1], [0, 1, 1]).tolist()
    [0.5, 1.0]
    """
    return recall(y_true, y_pred, None, n_classes, sample_weight)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> Metric:
    """Share of correct decisions.

    >>> accuracy([0, 1, 1, 0], [0, 1, 0, 0])
    0.75
    """
    y, d, _ = _pair(y_true, y_pred, None)
    W, scalar = _weights(sample_weight, len(y))
    return _out(_ratio(W @ (y == d), W.sum(1), "accuracy"), scalar)


def balanced_accuracy(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None,
                      sample_weight: ArrayLike | None = None) -> Metric:
    """Mean recall over the classes present in ``y_true``.

    >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
    0.5
    """
    values, _, scalar = _per_class(y_true, y_pred, n_classes, sample_weight, "recall")  # NaN: class absent
    result = _nanavg(values)
    _warn_nan(result, "balanced accuracy")
    return _out(result, scalar)


def _binary_rate(y_true, y_pred, sample_weight, which: str, cls: int) -> Metric:
    values, _, scalar = _per_class(y_true, y_pred, 2, sample_weight, which)
    _warn_nan(values[:, cls], f"{which} of class {cls}")
    return _out(values[:, cls], scalar)


def sensitivity(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> Metric:
    """Binary TP / (TP + FN): recall of the positive class 1.

    >>> sensitivity([1, 1, 0], [1, 0, 0])
    0.5
    """
    return _binary_rate(y_true, y_pred, sample_weight, "recall", 1)


def specificity(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> Metric:
    """Binary TN / (TN + FP): recall of the negative class 0.

    >>> specificity([0, 0, 1], [0, 1, 1])
    0.5
    """
    return _binary_rate(y_true, y_pred, sample_weight, "recall", 0)


def ppv(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> Metric:
    """Binary positive predictive value TP / (TP + FP).

    >>> ppv([0, 1], [1, 1])
    0.5
    """
    return _binary_rate(y_true, y_pred, sample_weight, "precision", 1)


def npv(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> Metric:
    """Binary negative predictive value TN / (TN + FN).

    >>> npv([0, 1], [0, 0])
    0.5
    """
    return _binary_rate(y_true, y_pred, sample_weight, "precision", 0)


# ---------------------------------------------------------------------------------------------- scores
def _tied_sums(pos: np.ndarray, score: np.ndarray, W: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positives and negatives per distinct score value, in score order: two ``(B, n_distinct)``."""
    if not len(score):
        return np.zeros((len(W), 0)), np.zeros((len(W), 0))
    order = np.argsort(-score if descending else score, kind="mergesort")
    s, Wo, po = score[order], W[:, order], pos[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return np.add.reduceat(Wo * po, starts, axis=1), np.add.reduceat(Wo * ~po, starts, axis=1)


def _auc_ovr(pos: np.ndarray, score: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count 1/2) of ``score`` for ``pos`` vs the rest, one value per weighting."""
    Pw, Nw = _tied_sums(pos, score, W, descending=False)
    below = np.cumsum(Nw, 1) - Nw
    num = (Pw * (below + 0.5 * Nw)).sum(1)
    return np.divide(num, Pw.sum(1) * Nw.sum(1), out=np.full(len(W), np.nan), where=(Pw.sum(1) * Nw.sum(1)) > 0)


def _ap_ovr(pos: np.ndarray, score: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Average precision sum_k (R_k - R_{k-1}) P_k over distinct thresholds (scikit-learn's definition)."""
    Pw, Nw = _tied_sums(pos, score, W, descending=True)
    tp, fp = np.cumsum(Pw, 1), np.cumsum(Nw, 1)
    prec = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    total = Pw.sum(1)
    return np.divide((Pw * prec).sum(1), total, out=np.full(len(W), np.nan), where=total > 0)


def _sens_at_spec(pos: np.ndarray, score: np.ndarray, W: np.ndarray, min_specificity: float) -> np.ndarray:
    """Highest true-positive rate over thresholds whose false-positive rate is <= 1 - ``min_specificity``."""
    Pw, Nw = _tied_sums(pos, score, W, descending=True)
    npos, nneg = Pw.sum(1, keepdims=True), Nw.sum(1, keepdims=True)
    ok = (npos[:, 0] > 0) & (nneg[:, 0] > 0)
    tpr = np.divide(np.cumsum(Pw, 1), npos, out=np.zeros_like(Pw), where=npos > 0)
    fpr = np.divide(np.cumsum(Nw, 1), nneg, out=np.ones_like(Nw), where=nneg > 0)
    best = np.where(fpr <= 1.0 - min_specificity + 1e-12, tpr, 0.0).max(1, initial=0.0)
    return np.where(ok, best, np.nan)


def sensitivity_at_specificity(y_true: ArrayLike, probs: ArrayLike, min_specificity: float = SCREENING_SPECIFICITY,
                               sample_weight: ArrayLike | None = None) -> Metric:
    """Binary: the best sensitivity any threshold reaches while specificity stays >= ``min_specificity``.

    The ROC curve read at a fixed specificity (threshold-free, like the AUC): what a screening
    tool that may flag at most 10 % of healthy images finds. NaN (with a warning) without positives
    or negatives. Equals ``max(tpr[fpr <= 1 - s])`` of ``sklearn.metrics.roc_curve``.

    >>> sensitivity_at_specificity([0, 0, 0, 1, 1], [0.1, 0.2, 0.7, 0.6, 0.9], min_specificity=0.6)
    1.0
    >>> sensitivity_at_specificity([0, 0, 0, 1, 1], [0.1, 0.2, 0.7, 0.6, 0.9], min_specificity=0.9)
    0.5
    """
    y, P = check_inputs(y_true, probs)
    if P.shape[1] != 2:
        raise ValueError(f"sensitivity_at_specificity is a binary metric; probs has {P.shape[1]} classes.")
    if not 0.0 <= min_specificity <= 1.0:
        raise ValueError(f"min_specificity must lie in [0, 1]; got {min_specificity}.")
    W, scalar = _weights(sample_weight, len(y))
    values = _sens_at_spec(y == 1, P[:, 1], W, float(min_specificity))
    if np.isnan(values).any():
        warnings.warn("sensitivity at specificity is undefined without positive and negative images; returning NaN.",
                      UndefinedMetricWarning, stacklevel=2)
    return _out(values, scalar)


def _score_metric(core: Callable, name: str, y_true, probs, average, sample_weight) -> Metric:
    y, P = check_inputs(y_true, probs)
    W, scalar = _weights(sample_weight, len(y))
    k = P.shape[1]
    check_choice("average", str(average), ["macro", "None"])
    classes = [1] if (k == 2 and average is not None) else range(k)
    values = np.stack([core(y == c, P[:, c], W) for c in classes], axis=1)
    if np.isnan(values).any():
        warnings.warn(f"{name} is undefined where a class has no positive or no negative images "
                      f"({int(np.isnan(values).any(1).sum())} of {len(W)} set(s)); returning NaN.",
                      UndefinedMetricWarning, stacklevel=3)
    if average is None:
        return values[0] if scalar else values
    return _out(values.mean(1), scalar)


def roc_auc(y_true: ArrayLike, probs: ArrayLike, average: str | None = "macro",
            sample_weight: ArrayLike | None = None) -> Metric:
    """ROC AUC: binary AUC of class 1; multi-class one-vs-rest, ``'macro'`` mean or per class (``average=None``).

    NaN with an :class:`UndefinedMetricWarning` when a class has no positives or no negatives.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    return _score_metric(_auc_ovr, "ROC AUC", y_true, probs, average, sample_weight)


def pr_auc(y_true: ArrayLike, probs: ArrayLike, average: str | None = "macro",
           sample_weight: ArrayLike | None = None) -> Metric:
    """Average precision (PR AUC): binary for class 1; multi-class one-vs-rest, ``'macro'`` or per class.

    >>> round(pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    """
    return _score_metric(_ap_ovr, "PR AUC", y_true, probs, average, sample_weight)


def brier_score(y_true: ArrayLike, probs: ArrayLike, sample_weight: ArrayLike | None = None) -> Metric:
    """Brier score as scikit-learn: binary ``mean (p - y)^2``; multi-class ``mean sum_k (p_k - [y = k])^2``.

    >>> round(brier_score([0, 1], [0.2, 0.6]), 6)
    0.1
    """
    y, P = check_inputs(y_true, probs)
    W, scalar = _weights(sample_weight, len(y))
    sq = ((P - np.eye(P.shape[1])[y]) ** 2).sum(1) * (0.5 if P.shape[1] == 2 else 1.0)
    return _out(_ratio(W @ sq, W.sum(1), "Brier score"), scalar)


def calibration_kind(n_classes: int, kind: str = "auto") -> str:
    """Resolve the calibration ``kind``: ``'auto'`` is ``'positive'`` for 2 classes, ``'top_label'`` otherwise.

    >>> calibration_kind(2), calibration_kind(3)
    ('positive', 'top_label')
    """
    kind = check_choice("kind", kind, ["auto", "positive", "top_label"])
    if kind == "auto":
        return "positive" if n_classes == 2 else "top_label"
    if kind == "positive" and n_classes != 2:
        raise ValueError(f"kind='positive' needs binary probs; got {n_classes} classes. Use kind='top_label'.")
    return kind


def calibration_bins(y_true: ArrayLike, probs: ArrayLike, n_bins: int = ECE_BINS, kind: str = "auto",
                     sample_weight: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width bins over [0, 1]: per bin the (weighted) count, sum of confidences and sum of hits.

    ``kind='positive'`` (binary): confidence = p of class 1, hit = label is 1 (a risk calibration curve);
    ``kind='top_label'``: confidence = largest probability, hit = argmax is right (Guo et al. 2017).
    ``'auto'`` is ``positive`` for binary and ``top_label`` otherwise. Bin ``i`` holds ``(i/B, (i+1)/B]``
    (bin 0 also holds 0), as ``sklearn.calibration.calibration_curve``. Each output is ``(n_bins,)``
    or ``(B, n_bins)`` for 2-D weights.
    """
    y, P = check_inputs(y_true, probs)
    kind = calibration_kind(P.shape[1], kind)
    if not (isinstance(n_bins, int | np.integer) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}.")
    conf, hit = (P[:, 1], y == 1) if kind == "positive" else (P.max(1), P.argmax(1) == y)
    idx = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], conf, side="left")
    W, scalar = _weights(sample_weight, len(y))
    onehot = np.zeros((len(y), n_bins))
    onehot[np.arange(len(y)), idx] = 1.0
    sums = W @ onehot, W @ (onehot * conf[:, None]), W @ (onehot * hit[:, None])
    return tuple(s[0] for s in sums) if scalar else sums  # type: ignore[return-value]


def expected_calibration_error(y_true: ArrayLike, probs: ArrayLike, n_bins: int = ECE_BINS, kind: str = "auto",
                               sample_weight: ArrayLike | None = None) -> Metric:
    """ECE = sum over equal-width bins of (share of images) * |hit rate - mean confidence|.

    Binning as :func:`calibration_bins` (binary: positive-class risk; multi-class: top-label confidence).

    >>> round(expected_calibration_error([0, 1, 1, 1], [0.05, 0.95, 0.95, 0.95], n_bins=10), 4)
    0.05
    """
    counts, conf, hit = (np.atleast_2d(a) for a in calibration_bins(y_true, probs, n_bins, kind, sample_weight))
    scalar = sample_weight is None or np.ndim(sample_weight) == 1
    return _out(_ratio(np.abs(hit - conf).sum(1), counts.sum(1), "ECE"), scalar)


# ---------------------------------------------------------------------------------------------- all at once
def _decided(fn: Callable, **kw) -> Callable:
    return lambda y, P, d, w: fn(y, d, sample_weight=w, **kw)


def _scored(fn: Callable) -> Callable:
    return lambda y, P, d, w: fn(y, P, sample_weight=w)


_COMMON = {
    "accuracy": _decided(accuracy), "balanced_accuracy": lambda y, P, d, w: balanced_accuracy(y, d, P.shape[1], w),
    "macro_precision": lambda y, P, d, w: precision(y, d, "macro", P.shape[1], w),
    "macro_recall": lambda y, P, d, w: recall(y, d, "macro", P.shape[1], w),
    "macro_f1": lambda y, P, d, w: f1_score(y, d, "macro", P.shape[1], w),
    "roc_auc": _scored(roc_auc), "pr_auc": _scored(pr_auc), "brier": _scored(brier_score),
    "ece": _scored(expected_calibration_error),
}
_BINARY = {"sensitivity": _decided(sensitivity), "specificity": _decided(specificity), "ppv": _decided(ppv),
           "npv": _decided(npv), "f1": _decided(f1_score),
           "sensitivity_at_spec90": lambda y, P, d, w: sensitivity_at_specificity(y, P, SCREENING_SPECIFICITY, w)}


def metric_names(n_classes: int) -> list[str]:
    """Names of the scalar metrics :func:`compute_metrics` reports (and :func:`scalar_metric` accepts).

    >>> metric_names(3)[:3]
    ['accuracy', 'balanced_accuracy', 'macro_precision']
    """
    return list(_COMMON) + (list(_BINARY) if n_classes == 2 else [])


def best_mode(monitor: str) -> str:
    """``'min'`` when lower values of ``monitor`` are better (any loss), else ``'max'``.

    The one rule that picks a best epoch, a best trial and a best run.

    >>> best_mode("val_loss"), best_mode("val_auc")
    ('min', 'max')
    """
    return "min" if monitor.endswith("loss") else "max"


def scalar_metric(name: str, y_true: ArrayLike, probs: ArrayLike, threshold: float = 0.5,
                  sample_weight: ArrayLike | None = None) -> Metric:
    """One metric by name (see :func:`metric_names`), decisions as :func:`predict_labels`.

    >>> scalar_metric("sensitivity", [0, 1, 1], [0.2, 0.7, 0.4])
    0.5
    """
    y, P = check_inputs(y_true, probs)
    name = check_choice("metric", name, metric_names(P.shape[1]))
    return {**_COMMON, **_BINARY}[name](y, P, predict_labels(P, threshold), sample_weight)


def classification_report_dict(y_true: ArrayLike, y_pred: ArrayLike, class_names: Sequence[str] | None = None,
                               n_classes: int | None = None) -> dict:
    """Like ``sklearn.metrics.classification_report(output_dict=True, zero_division=np.nan)``.

    >>> classification_report_dict([0, 1, 1], [0, 1, 0], ["a", "b"])["b"]["recall"]
    0.5
    """
    y, d, k = _pair(y_true, y_pred, n_classes or (len(class_names) if class_names else None))
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names but there are {k} classes.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        rows = {m: fn(y, d, None, k) for m, fn in (("precision", precision), ("recall", recall), ("f1-score", f1_score))}
    support = np.bincount(y, minlength=k).astype(float)
    report: dict = {name: {m: float(rows[m][i]) for m in rows} | {"support": float(support[i])}
                    for i, name in enumerate(names)}
    report["accuracy"] = accuracy(y, d)
    for avg, w in (("macro avg", None), ("weighted avg", support)):
        report[avg] = {m: float(_nanavg(rows[m], w)) for m in rows} | {"support": float(support.sum())}
    return report


def compute_metrics(y_true: ArrayLike, probs: ArrayLike, threshold: float = 0.5,
                    class_names: Sequence[str] | None = None) -> dict:
    """Every metric at once, JSON-able (floats and lists; NaN where undefined).

    Decisions: binary ``p >= threshold``; multi-class argmax. Keys: ``n``, ``classes``, ``threshold``,
    the names of :func:`metric_names` (``ece`` with ``ECE_BINS`` bins), ``confusion_matrix`` (rows = true class) and ``per_class``:
    ``{class name: {precision, recall, accuracy (= recall), f1, support, roc_auc, pr_auc}}`` (one-vs-rest).

    >>> m = compute_metrics([0, 1, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    >>> m["accuracy"], m["confusion_matrix"]
    (0.5, [[1, 1], [1, 1]])
    """
    y, P = check_inputs(y_true, probs)
    k = P.shape[1]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names but probs has {k} columns.")
    d = predict_labels(P, threshold)
    out: dict = {"n": int(len(y)), "classes": names, "threshold": float(threshold) if k == 2 else None,
                 "decision": "p >= threshold" if k == 2 else "argmax"}
    out |= {name: scalar_metric(name, y, P, threshold) for name in metric_names(k)}
    out["ece_bins"] = ECE_BINS
    out["confusion_matrix"] = confusion_matrix(y, d, k).astype(int).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        per = {"precision": precision(y, d, None, k), "recall": recall(y, d, None, k), "f1": f1_score(y, d, None, k),
               "roc_auc": roc_auc(y, P, None), "pr_auc": pr_auc(y, P, None)}
    support = np.bincount(y, minlength=k)
    out["per_class"] = {name: {m: float(v[i]) for m, v in per.items()} | {"accuracy": float(per["recall"][i]),
                                                                          "support": int(support[i])}
                        for i, name in enumerate(names)}
    return out
