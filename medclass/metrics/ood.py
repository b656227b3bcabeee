"""Out-of-distribution score: Mahalanobis distance in a feature space of the model.

Lee et al. (2018): class-conditional Gaussians with one shared covariance, fitted on the training
images' features (medclass uses per-stage channel statistics, see :mod:`medclass.inference`, which
Lee et al. also found stronger than the last layer alone); an input's score is its squared Mahalanobis distance to the nearest class mean.
A multi-label model (findings overlap, an image belongs to several or none) gets one Gaussian: all
training images one group (``labels=None``), its score the distance to that single mean.
The covariance is estimated with Ledoit-Wolf shrinkage (scikit-learn), which stays invertible when
there are fewer images than feature dimensions.

**The threshold** (default: flag 5% of in-distribution images) is a split-conformal quantile of held-out
scores: the validation images' scores under the fitted Gaussians, plus every training image scored by
Gaussians fitted *without* it and without the other images of its patient (:data:`CALIBRATION_FOLDS`-fold
cross-fitting by patient; a training image's in-sample score is far lower than a new image's, so it cannot be
used as is, and one whose sibling images stay in the fit scores lower too). A few hundred calibration scores instead
of the ~100 validation images of a small run make the threshold far less noisy; the rank
``ceil((n + 1) q)`` of the ``n`` sorted scores (:func:`conformal_threshold`) is the finite-sample correction
under which a new exchangeable image is flagged with probability at most ``1 - q`` (and at least
``1 - q - 1/(n + 1)``). The rate on the test set is measured, not assumed.

**Resolution.** The scores are computed on the model input band-limited to :data:`LOWPASS` of its side
(:func:`medclass.inference.forward_with_features`), so that the same kind of image stored at another
resolution (a 224 px original and its 96 px copy, both resized to the model's input) scores alike: without
it, 24% of the originals of a run trained on the 96 px copies were flagged (bench/README_ood.md).

Pure numpy / scikit-learn: no model code.

Example:
    >>> rng = np.random.default_rng(0)
    >>> train, labels = rng.normal(size=(200, 8)), rng.integers(0, 2, 200)
    >>> ood = fit_mahalanobis(train, labels, rng.normal(size=(50, 8)))
    >>> bool(ood.flags(rng.normal(size=(1, 8)) + 20)[0])
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_QUANTILE = 0.95  # conformal quantile of the held-out scores: the threshold above which an input is flagged
CALIBRATION_FOLDS = 5  # cross-fitting folds that give every training image a held-out score for the threshold
LOWPASS = 0.5  # OOD features of the model input band-limited to this share of its side (1 = the input as is)


@dataclass(frozen=True)
class MahalanobisOOD:
    """Fitted feature statistics and the flagging threshold.

    ``means`` ``(k, d)``: one row per class seen in training (one row when fitted as one group); ``precision`` ``(d, d)``: the inverse of
    the shared (shrunk) covariance; ``threshold``: scores above it are flagged; ``quantile``: the
    conformal quantile it was set at; ``n_train`` / ``n_val``: training / validation images it was fitted
    on; ``n_calibration``: the held-out scores the threshold was set on (0 in files from before cross-fitting:
    the validation images alone); ``lowpass``: the band limit of the features (1.0 in files from before it).
    """

    means: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float = DEFAULT_QUANTILE
    n_train: int = 0
    n_val: int = 0
    n_calibration: int = 0
    lowpass: float = 1.0

    @property
    def feature_dim(self) -> int:
        """Length of the feature vectors it scores."""
        return int(self.means.shape[1])

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row to the nearest class mean, ``(n,)`` float64."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise ValueError(f"features must have shape (n, {self.feature_dim}), got {x.shape}.")
        out = np.full(len(x), np.inf)
        for mu in self.means:
            diff = x - mu
            out = np.minimum(out, np.einsum("ij,jk,ik->i", diff, self.precision, diff))
        return out

    def flags(self, features: np.ndarray) -> np.ndarray:
        """True where the score is above the threshold (looks unlike the training data)."""
        return self.scores(features) > self.threshold


def _gaussians(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the Ledoit-Wolf precision of the class-centred rows.

    The shrunk covariance is inverted through its Cholesky factor (it is positive definite whenever the shrinkage
    is above 0, i.e. nearly always): about 5x faster than scikit-learn's ``precision_`` (an eigendecomposition, pinvh)
    for 1,280 features, and the same matrix to rounding. A singular one falls back to the pseudo-inverse.
    """
    from scipy.linalg import LinAlgError, cho_factor, cho_solve, pinvh
    from sklearn.covariance import ledoit_wolf

    classes = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    covariance = ledoit_wolf(centred, assume_centered=True)[0]
    try:
        return means, cho_solve(cho_factor(covariance, lower=True), np.eye(len(covariance)))
    except LinAlgError:
        return means, pinvh(covariance)


def conformal_threshold(scores: np.ndarray, quantile: float) -> float:
    """The ``ceil((n + 1) quantile)``-th smallest of ``n`` held-out scores (the largest when that rank exceeds ``n``).

    A new image exchangeable with the calibration images scores above it with probability at most
    ``1 - quantile`` (split conformal prediction; Vovk et al. 2005, Angelopoulos & Bates 2021).

    >>> conformal_threshold(np.arange(1.0, 101.0), 0.95)  # rank ceil(101 * 0.95) = 96
    96.0
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    rank = int(np.ceil((len(s) + 1) * quantile))
    return float(s[min(rank, len(s)) - 1])


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray | None, val_features: np.ndarray,
                    quantile: float = DEFAULT_QUANTILE, folds: int = CALIBRATION_FOLDS,
                    lowpass: float = 1.0, groups: np.ndarray | None = None) -> MahalanobisOOD:
    """Class means and Ledoit-Wolf shared covariance on ``features``; the threshold at the conformal ``quantile`` of the
    validation scores and the ``folds``-fold cross-fitted scores of the training rows (``folds < 2``: validation only).

    ``labels``: one class per row, or None for one Gaussian over every row (multi-label models). ``groups``: the
    patient of each row: a patient's images are held out together (``GroupKFold``), as a new patient's images
    are new; without them each image is its own group. ``lowpass`` only records how the features were computed
    (see :data:`LOWPASS`).

    Raises:
        ValueError: fewer than 2 training or 1 validation image, or a quantile outside (0, 1).
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.zeros(len(x), np.int64) if labels is None else np.asarray(labels)
    if y.shape != (len(x),):
        raise ValueError(f"labels must hold one class per feature row ({len(x)},), got shape {y.shape}; "
                         "pass labels=None to fit one Gaussian over every row (multi-label models).")
    if len(x) < 2 or len(val_features) < 1:
        raise ValueError(f"Fitting OOD statistics needs >= 2 training and >= 1 validation images, got "
                         f"{len(x)} and {len(val_features)}.")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}.")
    means, precision = _gaussians(x, y)
    fitted = MahalanobisOOD(means, precision, np.inf, quantile)
    held_out = [fitted.scores(val_features)]
    if folds >= 2 and len(x) >= 2 * folds:
        for fit_rows, out_rows in _folds(x, groups, folds):
            fold = MahalanobisOOD(*_gaussians(x[fit_rows], y[fit_rows]), np.inf)
            held_out.append(fold.scores(x[out_rows]))
    scores = np.concatenate(held_out)
    return MahalanobisOOD(means, precision, conformal_threshold(scores, quantile), quantile, len(x), len(val_features),
                          len(scores), lowpass)


def _folds(x: np.ndarray, groups: np.ndarray | None, folds: int):
    """Cross-fitting folds of the training rows: each patient's rows in one held-out fold (when ``groups`` name at least
    ``folds`` patients), else seeded image-level folds.

    Holding out single images of a patient whose other images stay in the fit made them look familiar: on the
    sample's main-job model the threshold came out 926 instead of 965 (mean over fold assignments) and flagged
    10.5% instead of 8.3% of the test images (bench/README_ood.md).
    """
    from sklearn.model_selection import GroupKFold, KFold

    if groups is not None and len(groups) == len(x) and len(np.unique(groups)) >= folds:
        return GroupKFold(folds, shuffle=True, random_state=0).split(x, groups=np.asarray(groups))
    return KFold(folds, shuffle=True, random_state=0).split(x)


def threshold_text(ood: dict) -> str:
    """How the threshold of an evaluation's ``ood`` section (or a checkpoint's spec as a dict) was set, in words.

    >>> threshold_text({"threshold": 933.57, "quantile": 0.95, "n_calibration": 516, "n_val": 91})
    '933.6, the conformal 95% quantile of 516 held-out scores (91 validation images and the training images, cross-fitted)'
    >>> threshold_text({"threshold": 933.57, "quantile": 0.95, "n_val": 91})
    "933.6, the 95th percentile of the validation images' scores"
    """
    head = f"{score_text(ood['threshold'])}, the "
    n_cal, n_val = ood.get("n_calibration") or 0, ood.get("n_val")  # both absent in evaluations before cross-fitting
    if n_cal:
        return (head + f"conformal {100 * ood['quantile']:.0f}% quantile of {n_cal} held-out scores ({n_val} validation "
                "images and the training images, cross-fitted)")
    return head + f"{100 * ood['quantile']:.0f}th percentile of the validation images' scores"


def score_text(value: float) -> str:
    """An OOD score or threshold as every output prints it (console, report, model card, web app): one decimal.

    >>> score_text(933.5714), score_text(12.04)
    ('933.6', '12.0')
    """
    return f"{value:.1f}"


def false_alarm_sentence(ood: dict) -> str:
    """'' for external data; else the held-out false-alarm rate with its CI beside the rate the threshold aims at."""
    fa = ood.get("false_alarm_rate")
    if not fa:
        return ""
    return (f"On these held-out images of the training distribution every flag is a false alarm: "
            f"{100 * fa['value']:.1f}% ({100 * fa['low']:.1f}-{100 * fa['high']:.1f}%, 95% Wilson CI) against the "
            f"{100 * fa['expected']:.0f}% the threshold was set for.")


__all__ = ["CALIBRATION_FOLDS", "DEFAULT_QUANTILE", "LOWPASS", "MahalanobisOOD", "conformal_threshold", "false_alarm_sentence",
           "fit_mahalanobis", "score_text", "threshold_text"]
