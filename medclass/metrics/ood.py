"""Out-of-distribution score: Mahalanobis distance in a feature space of the model.

Lee et al. (2018): class-conditional Gaussians with one shared covariance, fitted on the training
images' features (medclass uses per-stage channel statistics, see :mod:`medclass.inference`, which
Lee et al. also found stronger than the last layer alone); an input's score is its squared Mahalanobis distance to the nearest class mean.
A multi-label model (findings overlap, an image belongs to several or none) gets one Gaussian: all
training images one group (``labels=None``), its score the distance to that single mean.
The covariance is estimated with Ledoit-Wolf shrinkage (scikit-learn), which stays invertible when
there are fewer images than feature dimensions. The flagging threshold is a quantile of the scores
of the run's *validation* images (default 0.95: about 5% of in-distribution images are flagged by
construction; the rate on the test set is measured, not assumed).

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

DEFAULT_QUANTILE = 0.95  # of the validation scores: the threshold above which an input is flagged


@dataclass(frozen=True)
class MahalanobisOOD:
    """Fitted feature statistics and the flagging threshold.

    ``means`` ``(k, d)``: one row per class seen in training (one row when fitted as one group); ``precision`` ``(d, d)``: the inverse of
    the shared (shrunk) covariance; ``threshold``: scores above it are flagged; ``quantile``: the
    validation quantile it was set at; ``n_train`` / ``n_val``: images it was fitted / set on.
    """

    means: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float = DEFAULT_QUANTILE
    n_train: int = 0
    n_val: int = 0

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


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray | None, val_features: np.ndarray,
                    quantile: float = DEFAULT_QUANTILE) -> MahalanobisOOD:
    """Class means and Ledoit-Wolf shared covariance on ``features``; threshold at ``quantile`` of ``val_features``' scores.

    ``labels``: one class per row, or None for one Gaussian over every row (multi-label models).

    Raises:
        ValueError: fewer than 2 training or 1 validation image, or a quantile outside (0, 1).
    """
    from sklearn.covariance import LedoitWolf

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
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    fitted = MahalanobisOOD(means, precision, np.inf, quantile, len(x), len(val_features))
    threshold = float(np.quantile(fitted.scores(val_features), quantile))
    return MahalanobisOOD(means, precision, threshold, quantile, len(x), len(val_features))


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
            f"{100 * fa['expected']:.0f}% the threshold was fitted for on validation.")


__all__ = ["DEFAULT_QUANTILE", "MahalanobisOOD", "false_alarm_sentence", "fit_mahalanobis", "score_text"]
