"""Per-patient views of image-level predictions: aggregation and the list of wrong images per patient.

Patient label rule: binary 'any positive' (the maximum of the image labels; class 1 = positive,
so a patient with one pneumonia image is a pneumonia patient); multi-class the most frequent image
label (ties go to the lower class index).

Example:
    >>> ids, y, P = aggregate_by_patient([0, 1, 0], [0.2, 0.9, 0.4], ["a", "a", "b"], how="max")
    >>> ids.tolist(), y.tolist(), P[:, 1].tolist()
    (['a', 'b'], [1, 0], [0.9, 0.4])
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..errors import check_choice
from .metrics import ArrayLike, as_labels, check_inputs


def _group_codes(groups: ArrayLike, n: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(groups).astype(str)
    if g.shape != (n,):
        raise ValueError(f"groups must hold one patient id per image ({n}); got shape {g.shape}.")
    return np.unique(g, return_inverse=True)


def aggregate_by_patient(y_true: ArrayLike, probs: ArrayLike, groups: ArrayLike,
                         how: str = "mean") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per patient (ids sorted): ``(patient_ids, y_patient, probs_patient (n_patients, n_classes))``.

    ``how='mean'`` averages the image probabilities; ``how='max'`` takes each class's maximum and
    renormalises the rows (binary: the highest positive probability, ``[1 - max p, max p]``).
    Labels follow the module's rule (binary any-positive, multi-class mode).

    >>> ids, y, P = aggregate_by_patient([2, 2, 1], [[.1, .2, .7], [.2, .3, .5], [.1, .8, .1]], ["x", "x", "y"])
    >>> y.tolist(), P.round(2).tolist()
    ([2, 1], [[0.15, 0.25, 0.6], [0.1, 0.8, 0.1]])
    """
    how = check_choice("how", how, ["mean", "max"])
    y, P = check_inputs(y_true, probs)
    ids, codes = _group_codes(groups, len(y))
    k, n_pat = P.shape[1], len(ids)
    votes = np.zeros((n_pat, k))
    np.add.at(votes, (codes, y), 1)
    y_pat = (votes[:, 1] > 0).astype(np.int64) if k == 2 else votes.argmax(1)
    if how == "mean":
        agg = np.zeros((n_pat, k))
        np.add.at(agg, codes, P)
        agg /= np.bincount(codes, minlength=n_pat)[:, None]
    elif k == 2:
        p = np.full(n_pat, -np.inf)
        np.maximum.at(p, codes, P[:, 1])
        agg = np.column_stack([1 - p, p])
    else:
        agg = np.full((n_pat, k), -np.inf)
        np.maximum.at(agg, codes, P)
        agg /= agg.sum(1, keepdims=True)
    return ids, y_pat, agg


def natural_key(text: str) -> list:
    """Sort key that orders numbers by value: ``slice2.dcm`` before ``slice10.dcm``.

    >>> sorted(["s10.png", "s2.png", "s1.png"], key=natural_key)
    ['s1.png', 's2.png', 's10.png']
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(text))]


def patient_errors(paths: Sequence[str], groups: ArrayLike, y_true: ArrayLike, y_pred: ArrayLike, probs: ArrayLike,
                   order: ArrayLike | None = None, class_names: Sequence[str] | None = None) -> list[dict]:
    """Each patient with at least one wrong image, most errors first, its wrong images in series order.

    Images of a patient are ordered by ``order`` (e.g. DICOM InstanceNumber or slice position) or,
    without it, by the natural sort of their paths. Each entry::

        {"patient", "n_images", "n_wrong", "wrong_positions": [1-based positions in the ordered series],
         "wrong": [{"path", "position", "true", "pred", "p_pred", "p_true"}, ...]}

    ``true``/``pred`` are class names when ``class_names`` are given, else indices.

    >>> errs = patient_errors(["a/s10.png", "a/s2.png", "b/s1.png"], ["a", "a", "b"], [1, 1, 0], [0, 1, 0],
    ...                       [0.3, 0.8, 0.1])
    >>> errs[0]["patient"], errs[0]["n_images"], errs[0]["wrong_positions"]
    ('a', 2, [2])
    """
    y, P = check_inputs(y_true, probs)
    d = as_labels(y_pred, P.shape[1], "y_pred")
    paths = [str(p) for p in paths]
    if len(paths) != len(y) or len(d) != len(y):
        raise ValueError(f"paths ({len(paths)}), y_true ({len(y)}) and y_pred ({len(d)}) must have the same length.")
    ids, codes = _group_codes(groups, len(y))
    if order is not None and np.shape(order) != (len(y),):
        raise ValueError(f"order must hold one sort value per image ({len(y)}); got shape {np.shape(order)}.")
    names = list(class_names) if class_names is not None else list(range(P.shape[1]))
    out = []
    for code, patient in enumerate(ids):
        members = np.flatnonzero(codes == code)
        keys = [(order[i], natural_key(paths[i])) if order is not None else natural_key(paths[i]) for i in members]
        members = members[sorted(range(len(members)), key=keys.__getitem__)]
        wrong = [(pos, i) for pos, i in enumerate(members, start=1) if d[i] != y[i]]
        if not wrong:
            continue
        out.append({"patient": str(patient), "n_images": int(len(members)), "n_wrong": len(wrong),
                    "wrong_positions": [pos for pos, _ in wrong],
                    "wrong": [{"path": paths[i], "position": pos, "true": names[y[i]], "pred": names[d[i]],
                               "p_pred": float(P[i, d[i]]), "p_true": float(P[i, y[i]])} for pos, i in wrong]})
    return sorted(out, key=lambda e: (-e["n_wrong"], e["patient"]))
