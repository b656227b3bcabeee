"""Dataset shift between two sets of images (training vs external): pure computations.

- :func:`domain_auc`: a domain classifier (standardised logistic regression) cross-validated at
  telling the two sets apart from the model's penultimate features; 0.5 = indistinguishable,
  1.0 = perfectly separable (Zech et al. 2018 found ~1.0 between hospitals). The CI resamples the
  out-of-fold predictions (percentile bootstrap).
- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to the two feature sets
  (as in FID), and the same for the reference set against itself split in halves as a scale.
- :func:`pixel_summary` / :func:`image_statistics`: per-image intensity statistics and their
  side-by-side summary.

Example:
    >>> rng = np.random.default_rng(0)
    >>> same = domain_auc(rng.normal(size=(100, 5)), rng.normal(size=(100, 5)), n_boot=0)
    >>> 0.3 < same.auc < 0.7
    True
    >>> domain_auc(rng.normal(size=(100, 5)), rng.normal(size=(100, 5)) + 5, n_boot=0).auc
    1.0
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

LARGE_DOMAIN_AUC = 0.8  # above it the two sets are easy to tell apart: the shift is large
LARGE_OOD_SHARE = 0.25  # share of external images flagged out-of-distribution that counts as large


@dataclass(frozen=True)
class DomainAUC:
    """Cross-validated AUC of a classifier telling reference (0) from other (1) images."""

    auc: float
    low: float  # 95% percentile bootstrap CI of the out-of-fold predictions
    high: float
    n_reference: int
    n_other: int
    n_splits: int

    def to_dict(self) -> dict:
        """JSON-able."""
        return asdict(self)


def domain_auc(reference: np.ndarray, other: np.ndarray, n_splits: int = 5, n_boot: int = 500,
               seed: int = 0) -> DomainAUC:
    """Out-of-fold AUC of a logistic regression on standardised features telling ``other`` from ``reference``.

    Raises:
        ValueError: fewer than ``n_splits`` rows in either set.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if min(len(a), len(b)) < n_splits:
        raise ValueError(f"domain_auc needs >= {n_splits} rows in each set, got {len(a)} and {len(b)}.")
    x, y = np.concatenate([a, b]), np.r_[np.zeros(len(a)), np.ones(len(b))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    p = cross_val_predict(clf, x, y, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, p))
    low = high = auc
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        ia, ib = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        boots = []
        for _ in range(n_boot):  # stratified: both sets keep their sizes
            rows = np.concatenate([rng.choice(ia, len(ia)), rng.choice(ib, len(ib))])
            boots.append(roc_auc_score(y[rows], p[rows]))
        low, high = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
    return DomainAUC(auc, low, high, len(a), len(b), n_splits)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance ``|mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))`` between Gaussian fits of two feature sets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # Tr((C_a C_b)^(1/2)) = sum of sqrt(eigenvalues of C_a^(1/2) C_b C_a^(1/2)), a symmetric PSD matrix:
    # stable for the singular covariances of fewer images than feature dimensions (scipy's sqrtm is not)
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cb @ root_a), 0, None)).sum()
    value = float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * cross)
    return max(value, 0.0)


def pixel_summary(image: np.ndarray) -> dict[str, float]:
    """Intensity statistics of one unit image (float in [0, 1]): mean, sd and percentiles 1/50/99."""
    x = np.asarray(image, np.float64).ravel()
    p1, p50, p99 = np.percentile(x, [1, 50, 99])
    return {"mean": float(x.mean()), "sd": float(x.std()), "p1": float(p1), "p50": float(p50), "p99": float(p99)}


STAT_ROWS = ("width", "height", "mean", "sd", "p1", "p50", "p99")


def image_statistics(rows: Sequence[dict]) -> dict:
    """Summary of per-image records (``width``, ``height``, ``mode``, ``channels`` and :func:`pixel_summary` keys).

    Returns ``{"n": .., "modes": {mode: share}, "channels": {c: share}, "<stat>": {"median", "q1", "q3"}}``.
    """
    out: dict = {"n": len(rows)}
    for key, name in (("mode", "modes"), ("channels", "channels")):  # "channels" once ("channelss" before)
        values = [str(r[key]) for r in rows]
        kinds, counts = np.unique(values, return_counts=True) if values else ([], [])
        out[name] = {str(k): round(float(c) / len(values), 4) for k, c in zip(kinds, counts)}
    for key in STAT_ROWS:
        v = np.array([r[key] for r in rows], np.float64)
        q1, med, q3 = np.percentile(v, [25, 50, 75]) if len(v) else (np.nan,) * 3
        out[key] = {"median": float(med), "q1": float(q1), "q3": float(q3)}
    return out


def category_shares(values: Sequence[object]) -> dict[str, float]:
    """Share of each value (a metadata column such as view or sex), empty strings counted as 'missing'."""
    names = [str(v) if str(v) not in ("", "nan") else "missing" for v in values]
    kinds, counts = np.unique(names, return_counts=True) if names else ([], [])
    return {str(k): round(float(c) / len(names), 4) for k, c in zip(kinds, counts)}


def shift_is_large(domain: DomainAUC | None, ood_share: float | None) -> bool:
    """The warning rule: the domain classifier tells the sets apart (AUC > 0.8) or >= 25% of images are flagged OOD."""
    return bool((domain is not None and domain.auc > LARGE_DOMAIN_AUC)
                or (ood_share is not None and ood_share >= LARGE_OOD_SHARE))


__all__ = ["LARGE_DOMAIN_AUC", "LARGE_OOD_SHARE", "DomainAUC", "category_shares", "domain_auc", "frechet_distance",
           "image_statistics", "pixel_summary", "shift_is_large"]
