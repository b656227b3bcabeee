"""External validation: the same model on another population, compared with its internal test set.

Pure functions over arrays (no model or data code):

* :func:`calibration_fit`: calibration-in-the-large and the calibration slope of binary
  probabilities (logistic recalibration of ``logit(p)``, Van Calster et al. 2016/2019). A slope
  below 1 means predictions that are too extreme on the new data, above 1 too timid; the
  calibration-in-the-large (the intercept with the slope fixed at 1) is 0 when the mean
  prediction matches the observed rate, negative when the model over-predicts the positive class.
* :func:`compare_sets`: metrics of the internal and the external set with patient-bootstrap CIs and
  the difference external - internal with a CI from independent bootstraps of the two sets.
* :func:`operating_points`: the stored threshold beside one re-chosen on the external labels
  (chosen on the evaluated data: optimistic, declared as such).

Example:
    >>> import numpy as np, warnings
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(0, 1.5, 20000); y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-z))).astype(int)
    >>> fit = calibration_fit(y, 1 / (1 + np.exp(-2 * z)))      # twice over-confident
    >>> round(fit.slope, 1), abs(fit.intercept_in_the_large) < 0.05
    (0.5, True)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .bootstrap import bootstrap_metrics, bootstrap_replicates, check_alpha, percentile_interval
from .calibration import apply_temperature, fit_temperature
from .metrics import ArrayLike, check_inputs, expected_calibration_error, scalar_metric
from .threshold import choose_threshold

COMPARED = ("roc_auc", "sensitivity", "specificity")  # the metrics set side by side (those defined for the task)
OPTIMISTIC = "chosen on the evaluated data, optimistic"
_EPS = 1e-7


@dataclass(frozen=True)
class CalibrationFit:
    """Logistic recalibration of binary probabilities on labelled data."""

    intercept_in_the_large: float  # a in logit P(y=1) = a + logit(p): 0 = mean prediction matches the observed rate
    slope: float  # b in logit P(y=1) = c + b logit(p): 1 = ideal, < 1 = too extreme, > 1 = too timid
    intercept: float  # c of the same fit
    observed_rate: float  # share of positives
    mean_predicted: float  # mean predicted probability

    def to_dict(self) -> dict[str, float]:
        """JSON-able fields."""
        return asdict(self)


def evaluated_label(data: dict) -> str:
    """What an evaluation was run on, in words, for titles and tables: the run's split or "external data".

    ``data`` is ``metrics.json``'s ``data`` (``source`` ``"external"`` for data given with ``--data``).

    >>> evaluated_label({"source": "external", "split": "test"}), evaluated_label({"source": "run split", "split": "test"})
    ('external data', 'test split')
    """
    return "external data" if data.get("source") == "external" else f"{data.get('split', 'test')} split"


def _logistic(X: np.ndarray, y: np.ndarray, offset: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Unpenalised maximum-likelihood coefficients of ``logit P(y=1) = X @ beta + offset`` (Newton-Raphson with
    step halving, so that far-off starts such as probabilities near 0 or 1 converge).

    NaN when the data are separable or hold one class (no finite maximum)."""

    def loglik(b: np.ndarray) -> float:
        eta = X @ b + offset
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    beta = np.zeros(X.shape[1])
    current = loglik(beta)
    for _ in range(iterations):
        mu = 1.0 / (1.0 + np.exp(-(X @ beta + offset)))
        hessian = X.T @ (X * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(hessian, X.T @ (y - mu))
        except np.linalg.LinAlgError:
            return np.full(X.shape[1], np.nan)
        for _ in range(30):  # halve the step until the likelihood does not fall
            candidate = loglik(beta + step)
            if candidate >= current - 1e-12:
                break
            step = step / 2
        beta, current = beta + step, candidate
        if not np.isfinite(beta).all() or np.abs(beta).max() > 1e3:
            return np.full(X.shape[1], np.nan)
        if np.abs(step).max() < 1e-10:
            break
    return beta


def calibration_fit(y_true: ArrayLike, p: ArrayLike) -> CalibrationFit:
    """Calibration-in-the-large and slope of positive-class probabilities ``p`` (binary; NaN with one class).

    >>> fit = calibration_fit([0, 0, 1, 1, 0, 1], [0.2, 0.6, 0.7, 0.4, 0.3, 0.8])
    >>> fit.observed_rate, round(fit.mean_predicted, 3), fit.slope > 0
    (0.5, 0.5, True)
    """
    y, P = check_inputs(y_true, p)
    if P.shape[1] != 2:
        raise ValueError(f"calibration_fit is for binary problems; got probabilities for {P.shape[1]} classes.")
    q = np.clip(P[:, 1], _EPS, 1 - _EPS)
    z = np.log(q / (1 - q))
    y = y.astype(np.float64)
    ones = np.ones((len(y), 1))
    citl = _logistic(ones, y, z)[0]
    intercept, slope = _logistic(np.column_stack([ones, z]), y, np.zeros(len(y)))
    return CalibrationFit(float(citl), float(slope), float(intercept), float(y.mean()), float(q.mean()))


def prevalence(y_true: ArrayLike, classes: Sequence[str]) -> dict[str, float]:
    """Share of each class.

    >>> prevalence([0, 1, 1, 1], ["NORMAL", "PNEUMONIA"])
    {'NORMAL': 0.25, 'PNEUMONIA': 0.75}
    """
    y = np.asarray(y_true)
    return {c: float(np.mean(y == i)) if len(y) else float("nan") for i, c in enumerate(classes)}


def compared_metrics(n_classes: int) -> list[str]:
    """The metrics :func:`compare_sets` compares for a task with ``n_classes`` classes.

    >>> compared_metrics(2), compared_metrics(3)
    (['roc_auc', 'sensitivity', 'specificity'], ['roc_auc', 'accuracy'])
    """
    return list(COMPARED) if n_classes == 2 else ["roc_auc", "accuracy"]


def _interval(values: np.ndarray, point: float, alpha: float, what: str) -> dict[str, float]:
    low, high, n_valid = percentile_interval(values, alpha, what)
    return {"value": point, "low": low, "high": high, "n_valid": n_valid}


def compare_sets(external: tuple[ArrayLike, ArrayLike, ArrayLike | None], internal: tuple[ArrayLike, ArrayLike, ArrayLike | None],
                 threshold: float, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                 metric_names: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """``{metric: {"internal", "external", "difference"}}``, each ``{"value", "low", "high", "n_valid"}``.

    ``external`` and ``internal`` are ``(y_true, probs, patient ids or None)``. Each set is resampled by
    patients on its own (independent bootstraps, different seeds); the difference external - internal
    takes one replicate of each per draw. Both sets are decided at the same ``threshold``.

    >>> import warnings
    >>> ext = ([0, 1, 0, 1], [0.4, 0.6, 0.7, 0.3], None); inn = ([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], None)
    >>> with warnings.catch_warnings():  # tiny sets: some replicates hold one class
    ...     warnings.simplefilter("ignore"); c = compare_sets(ext, inn, threshold=0.5, n_boot=50)
    >>> c["roc_auc"]["internal"]["value"], c["roc_auc"]["external"]["value"], c["roc_auc"]["difference"]["value"]
    (1.0, 0.25, -0.75)
    """
    check_alpha(alpha)
    (ye, Pe), (yi, Pi) = check_inputs(*external[:2]), check_inputs(*internal[:2])
    names = list(metric_names) if metric_names is not None else compared_metrics(Pe.shape[1])
    rep_e = bootstrap_replicates(ye, Pe, external[2], names, threshold, n_boot, seed)
    rep_i = bootstrap_replicates(yi, Pi, internal[2], names, threshold, n_boot, seed + 1)
    out = {}
    for name in names:
        pe, pi = float(scalar_metric(name, ye, Pe, threshold)), float(scalar_metric(name, yi, Pi, threshold))
        out[name] = {"internal": _interval(rep_i[name], pi, alpha, f"internal {name}"),
                     "external": _interval(rep_e[name], pe, alpha, f"external {name}"),
                     "difference": _interval(rep_e[name] - rep_i[name], pe - pi, alpha, f"difference in {name}")}
    return out


def shift_warnings(comparison: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """A sentence for each metric whose external CI lies entirely below the internal point estimate.

    >>> shift_warnings({"roc_auc": {"internal": {"value": 0.95}, "external": {"value": 0.6, "low": 0.5, "high": 0.7},
    ...                             "difference": {"value": -0.35, "low": -0.45, "high": -0.25}}})[0][:40]
    'External roc_auc 0.600 (95% CI 0.500-0.7'
    """
    out = []
    for name, c in comparison.items():
        inner, ext, diff = c["internal"]["value"], c["external"], c["difference"]
        high = ext.get("high")  # None: not estimable (too few patients of a class)
        if high is not None and np.isfinite(high) and np.isfinite(inner) and high < inner:
            out.append(f"External {name} {ext['value']:.3f} (95% CI {ext['low']:.3f}-{ext['high']:.3f}) is below the "
                       f"internal test's {inner:.3f} (difference {diff['value']:+.3f}): the model does not transfer "
                       "as it is to this population.")
    return out


def operating_points(y_true: ArrayLike, p: ArrayLike, threshold: float, rule: str) -> dict[str, dict]:
    """Sensitivity/specificity/PPV/NPV at the stored ``threshold`` and at one re-chosen by ``rule`` on these labels.

    >>> ops = operating_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.5, "youden")
    >>> ops["stored"]["sensitivity"], ops["rechosen"]["threshold"], ops["rechosen"]["declared"][:20]
    (0.5, 0.8, 'chosen on the evalua')
    """
    y, P = check_inputs(y_true, p)

    def at(t: float) -> dict[str, float]:
        return {"threshold": float(t), **{k: float(scalar_metric(k, y, P, t)) for k in ("sensitivity", "specificity", "ppv", "npv")}}

    stored = {**at(threshold), "declared": "stored in the checkpoint (chosen on the run's validation split)"}
    try:
        chosen = choose_threshold(y, P, rule or "youden")
    except ValueError as e:  # one class only
        return {"stored": stored, "rechosen": {"declared": f"not available: {e}"}}
    return {"stored": stored, "rechosen": {**at(chosen.threshold), "rule": chosen.rule, "declared": OPTIMISTIC}}


def patient_halves(groups: ArrayLike, seed: int = 0) -> np.ndarray:
    """A boolean mask of about half of the patients (all of their images), seeded; the rest is the other half.

    >>> patient_halves(["a", "a", "b", "c"], seed=0).tolist() in ([True, True, False, False], [False, False, True, True],
    ...                                                            [True, True, True, False], [False, False, False, True],
    ...                                                            [True, True, False, True], [False, False, True, False])
    True
    """
    ids, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    chosen = np.random.default_rng(seed).permutation(len(ids))[: len(ids) // 2]
    return np.isin(codes, chosen)


def recalibrate_split(y_true: ArrayLike, p: ArrayLike, groups: ArrayLike, threshold: float, rule: str,
                      n_boot: int = 1000, seed: int = 0) -> dict:
    """Declared recalibration on external data: a temperature and a threshold fitted on a patient-disjoint
    half (:func:`patient_halves`), both evaluated on the other half beside the stored threshold.

    ``p`` are the binary probabilities as the model gives them; the fitted temperature multiplies the
    checkpoint's. Returns ``{"fit": {n_images, n_patients, temperature_factor, threshold, rule}, "evaluated":
    {n_images, n_patients, "stored": {metric CIs, ece}, "recalibrated": {...}}, "declared": ...}``.
    """
    y, P = check_inputs(y_true, p)
    g = np.asarray(groups).astype(str)
    fit = patient_halves(g, seed)
    q = np.clip(P[:, 1], _EPS, 1 - _EPS)
    z = np.log(q / (1 - q))
    factor = fit_temperature(z[fit], y[fit])
    new_threshold = choose_threshold(y[fit], apply_temperature(z[fit], factor), rule or "youden").threshold
    ev = ~fit
    names = [*COMPARED, "ppv", "npv"]

    def summary(probs: np.ndarray, t: float) -> dict:
        return {"threshold": float(t), "ece": float(expected_calibration_error(y[ev], probs)),
                **bootstrap_metrics(y[ev], probs, g[ev], names, t, n_boot=max(n_boot, 1), seed=seed)}

    return {"declared": "threshold and temperature fitted on a patient-disjoint half of the external data, "
                        "evaluated on the other half (a local recalibration, not the model as shipped)",
            "fit": {"n_images": int(fit.sum()), "n_patients": int(len(set(g[fit]))),
                    "temperature_factor": float(factor), "threshold": float(new_threshold), "rule": rule or "youden"},
            "evaluated": {"n_images": int(ev.sum()), "n_patients": int(len(set(g[ev]))),
                          "stored": summary(P[ev], threshold),
                          "recalibrated": summary(apply_temperature(z[ev], factor), new_threshold)}}


__all__ = ["COMPARED", "CalibrationFit", "OPTIMISTIC", "calibration_fit", "compare_sets", "compared_metrics", "evaluated_label",
           "operating_points", "patient_halves", "prevalence", "recalibrate_split", "shift_warnings"]
