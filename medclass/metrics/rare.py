"""The one rule for rare findings and classes: how many patients an estimate must rest on.

A decision threshold chosen on one positive validation patient (Youden happily picks 0.000 there)
and a bootstrap CI resampling one positive test patient (every replicate holds the same image, so
the interval is narrow and wrong) are not estimates. Below :data:`MIN_POSITIVE_PATIENTS` patients
of a class:

* a threshold is not chosen on the data: :data:`FALLBACK_THRESHOLD` is used and said so
  (training's finalize step and cross-validation);
* a CI is reported as not estimable (``low``/``high`` null, with the reason) instead of an interval
  (evaluation: per finding, per patient, subgroups, the external comparison);
* ``medclass data check`` warns before training (``finding_too_rare``).

Every one of those reads this module; no other place holds the number.

Example:
    >>> positive_patients([1, 0, 1, 0], ["a", "a", "b", "c"])
    (2, 2)
    >>> too_few_patients(1, 40)
    'only 1 positive patient (fewer than 5)'
    >>> too_few_patients(12, 40)
    ''
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_POSITIVE_PATIENTS = 5  # fewer positive (or negative) patients than this: no threshold choice, no CI
FALLBACK_THRESHOLD = 0.5  # the decision threshold of a finding with too few positive validation patients


def positive_patients(y: Sequence[float] | np.ndarray, groups: Sequence[str] | np.ndarray | None = None) -> tuple[int, int]:
    """``(patients with a positive image, patients with a negative image)`` of binary labels ``y`` (NaN = masked,
    left out); without ``groups`` every image is its own patient.

    >>> positive_patients([1, np.nan, 0], None)
    (1, 1)
    """
    y = np.asarray(y, dtype=np.float64)
    keep = ~np.isnan(y)
    ids = np.arange(len(y)).astype(str) if groups is None else np.asarray(groups).astype(str)
    ids, y = ids[keep], y[keep]
    return int(len(np.unique(ids[y == 1]))), int(len(np.unique(ids[y == 0])))


def too_few_patients(n_positive: int, n_negative: int | None = None) -> str:
    """The reason an estimate on these counts is not made (``''`` when there are enough patients of both classes).

    >>> too_few_patients(30, 2)
    'only 2 negative patients (fewer than 5)'
    """
    for n, what in ((n_positive, "positive"), (n_negative, "negative")):
        if n is not None and n < MIN_POSITIVE_PATIENTS:
            return f"only {n} {what} patient{'s' if n != 1 else ''} (fewer than {MIN_POSITIVE_PATIENTS})"
    return ""


def not_estimable(value: float, reason: str) -> dict:
    """A CI entry that is not estimable: the point value, null bounds and the reason.

    >>> not_estimable(0.9, "only 1 positive patient (fewer than 5)")["low"] is None
    True
    """
    return {"value": float(value), "low": None, "high": None, "n_valid": 0, "not_estimable": reason}


__all__ = ["FALLBACK_THRESHOLD", "MIN_POSITIVE_PATIENTS", "not_estimable", "positive_patients", "too_few_patients"]
