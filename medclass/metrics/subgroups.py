"""Metrics per subgroup (sex, age band, view, site...) with patient-bootstrap CIs, weak subgroups flagged.

A subgroup specification names a metadata column; a numeric column is binned at the given cut
points: ``age:18:65`` gives ``<18``, ``18-65`` and ``>=65``. Rows without a value form the
subgroup ``missing``. A subgroup is flagged for a metric when its CI's upper bound lies below the
overall point estimate (the model is worse there beyond the bootstrap's uncertainty) and it holds at
least :data:`MIN_PATIENTS` patients of every class (a specificity on 2 negative patients, or a
patient bootstrap of a handful, gives degenerate intervals); each subgroup says how many patients
of each class it has, and why it was not flaggable when it was not (multi-label: at least
:data:`MIN_PATIENTS` patients).

Example:
    >>> import pandas as pd
    >>> specs = parse_subgroups("sex,age:18:65")
    >>> [(s.column, s.cuts) for s in specs]
    [('sex', ()), ('age', (18.0, 65.0))]
    >>> subgroup_labels(pd.Series(["10", "40", "70", None]), specs[1]).tolist()
    ['<18', '18-65', '>=65', 'missing']
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError, did_you_mean
from .bootstrap import bootstrap_metrics
from .external import compared_metrics, prevalence
from .findings import finding_prevalence, findings_cis
from .metrics import ArrayLike, check_inputs, scalar_metric
from .multilabel import check_multilabel

MISSING = "missing"
MIN_PATIENTS = 10  # a subgroup with fewer patients of a class is reported but never flagged (its bootstrap CI is unreliable)


@dataclass(frozen=True)
class SubgroupSpec:
    """One ``--subgroups`` item: a column, binned at ``cuts`` when given."""

    column: str
    cuts: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        """The item as written (``age:18:65``)."""
        return ":".join([self.column, *(f"{c:g}" for c in self.cuts)])


def parse_subgroups(text: str | Sequence[str]) -> list[SubgroupSpec]:
    """``"sex,age:18:65,view"`` (or a list of items) -> specs; cut points must be increasing numbers.

    >>> parse_subgroups("age:65")[0].cuts
    (65.0,)
    """
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    specs = []
    for item in items:
        column, *cuts = item.split(":")
        try:
            values = tuple(float(c) for c in cuts)
        except ValueError:
            raise ConfigError(f"--subgroups item {item!r}: the cut points after the column name must be numbers, "
                              "e.g. age:18:65 (bins <18, 18-65, >=65).") from None
        if list(values) != sorted(set(values)):
            raise ConfigError(f"--subgroups item {item!r}: cut points must be increasing, e.g. age:18:65.")
        specs.append(SubgroupSpec(column.strip(), values))
    return specs


def check_columns(specs: Sequence[SubgroupSpec], columns: Sequence[str]) -> None:
    """Raise :class:`ConfigError` naming the metadata ``columns`` when a spec's column is not among them."""
    for spec in specs:
        if spec.column not in columns:
            raise ConfigError(f"--subgroups {spec.name}: no column {spec.column!r} in the evaluated data; its metadata "
                              f"columns are {list(columns) or 'none'}.{did_you_mean(spec.column, columns)}")


def subgroup_labels(values: pd.Series, spec: SubgroupSpec) -> pd.Series:
    """The subgroup of each row: the value itself, or its bin for a spec with cut points."""
    if not spec.cuts:
        text = values.astype("string").str.strip()
        return text.mask(text.isna() | (text == ""), MISSING).astype(str)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() == 0 and values.notna().any():
        raise ConfigError(f"--subgroups {spec.name}: column {spec.column!r} holds no numbers (e.g. {values.dropna().iloc[0]!r}); "
                          f"give it without cut points to group by its values.")
    edges = [f"{c:g}" for c in spec.cuts]
    names = [f"<{edges[0]}"] + [f"{a}-{b}" for a, b in zip(edges, edges[1:])] + [f">={edges[-1]}"]
    index = np.searchsorted(np.asarray(spec.cuts), numbers.to_numpy(dtype=float), side="right")
    return pd.Series([MISSING if np.isnan(v) else names[i] for v, i in zip(numbers, index)], index=values.index)


def subgroup_metrics(y_true: ArrayLike, probs: ArrayLike, patients: ArrayLike, metadata: pd.DataFrame,
                     specs: Sequence[SubgroupSpec], classes: Sequence[str], threshold: float, n_boot: int = 1000,
                     seed: int = 0) -> dict:
    """Per subgroup of each spec: sizes, prevalence and metrics with patient-bootstrap CIs; flags.

    ``metadata`` has one row per image (the columns named by ``specs``); ``patients`` the group key of
    each image (its patient id; an image without one carries a key of its own, as ``patient_groups`` gives). Returns ``{"overall": {metric: value}, "metrics": [...],
    "groups": [{"column", "subgroup", "n_images", "n_patients", "patients_per_class": {class: n}, "prevalence",
    "metrics": {name: {value, low, high, n_valid}}, "flagged": [names], "not_flaggable": reason or ''}]}``
    (a patient counts for each class it has an image of).
    """
    y, P = check_inputs(y_true, probs)
    groups = pd.Series(np.asarray(patients).astype(str))
    if len(metadata) != len(y):
        raise ValueError(f"metadata has {len(metadata)} rows but there are {len(y)} images; they must match.")
    names = compared_metrics(P.shape[1])
    point = {n: float(scalar_metric(n, y, P, threshold)) for n in names}
    out: dict = {"overall": point, "metrics": names, "n_boot": n_boot, "groups": [],
                 "flag_rule": f"95% CI upper bound below the overall point estimate (subgroups with at least "
                              f"{MIN_PATIENTS} patients of each class)"}
    for column, value, rows in iter_subgroups(metadata, specs):
        n_patients = int(groups[rows].nunique())
        per_class = patients_per_class(y[rows], groups.to_numpy()[rows], classes)
        few = {c: n for c, n in per_class.items() if n < MIN_PATIENTS}
        not_flaggable = ("too few patients to flag: " + ", ".join(f"{n} {c}" for c, n in few.items())
                         + f" (fewer than {MIN_PATIENTS} of a class)") if few else ""
        ci = bootstrap_metrics(y[rows], P[rows], groups.to_numpy()[rows], names, threshold,
                               n_boot=max(n_boot, 1), seed=seed)
        out["groups"].append({
            "column": column, "subgroup": value, "n_images": int(rows.sum()),
            "n_patients": n_patients, "patients_per_class": per_class, "prevalence": prevalence(y[rows], classes),
            "metrics": ci if n_boot > 0 else {n: {"value": ci[n]["value"]} for n in names},
            "flagged": _flagged(ci, point, names, not few, n_boot),
            "not_flaggable": not_flaggable,
        })
    return out


def iter_subgroups(metadata: pd.DataFrame, specs: Sequence[SubgroupSpec]) -> Iterator[tuple[str, str, np.ndarray]]:
    """``(column, subgroup, row mask)`` of every subgroup of every spec, bins in order, ``missing`` last."""
    check_columns(specs, list(metadata.columns))
    for spec in specs:
        labels = subgroup_labels(metadata[spec.column].reset_index(drop=True), spec).to_numpy()
        for value in sorted(set(labels), key=lambda v: (v == MISSING, _order(v, spec))):
            yield spec.column, str(value), labels == value


def patients_per_class(y: np.ndarray, patients: np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    """Patients with at least one image of each class (a patient with images of two classes counts for both).

    >>> patients_per_class(np.array([0, 0, 1, 1]), np.array(["a", "a", "a", "b"]), ["neg", "pos"])
    {'neg': 1, 'pos': 2}
    """
    pairs = pd.DataFrame({"y": np.asarray(y), "p": np.asarray(patients)}).drop_duplicates()
    counts = pairs["y"].value_counts()
    return {c: int(counts.get(k, 0)) for k, c in enumerate(classes)}


def few_patients_warning(per_class: dict[str, int], what: str = "The per-patient metrics") -> str:
    """``''``, or a warning when a class has fewer than :data:`MIN_PATIENTS` patients (the subgroup rule's number).

    >>> few_patients_warning({"NORMAL": 7, "PNEUMONIA": 40})
    'The per-patient metrics rest on only 7 NORMAL patients (fewer than 10 of a class): their CIs are wide and one patient moves them a lot.'
    """
    few = {c: n for c, n in per_class.items() if n < MIN_PATIENTS}
    if not few:
        return ""
    return (f"{what} rest on only " + " and ".join(f"{n} {c} patient{'s' if n != 1 else ''}" for c, n in few.items())
            + f" (fewer than {MIN_PATIENTS} of a class): their CIs are wide and one patient moves them a lot.")


def _flagged(ci: dict, point: dict, names: Sequence[str], flaggable: bool, n_boot: int) -> list[str]:
    """The metrics whose CI upper bound lies below the overall point (only in a subgroup large enough to flag)."""
    return [n for n in names if n_boot > 0 and flaggable and ci[n].get("high") is not None
            and ci[n]["high"] < point[n]]


def subgroup_findings_metrics(y: np.ndarray, p: np.ndarray, patients: ArrayLike, metadata: pd.DataFrame,
                              specs: Sequence[SubgroupSpec], findings: Sequence[str], thresholds: Sequence[float],
                              n_boot: int = 1000, seed: int = 0) -> dict:
    """Multi-label: per subgroup the macro AUC and every finding's AUC, sensitivity and specificity with
    patient-bootstrap CIs (not estimable below the rare-finding rule), flagged as :func:`subgroup_metrics` does.

    The shape is :func:`subgroup_metrics`' (``metrics`` = ``["macro_auc"]``, each group's ``metrics`` its macro
    AUC) plus ``per_finding`` (``{finding: {metric: ci}}``) and ``flagged_findings`` in each group, and
    ``overall_per_finding`` (``{finding: {metric: value}}``).
    """
    y, p = check_multilabel(y, p)
    groups = np.asarray(patients).astype(str)
    if len(metadata) != len(y):
        raise ValueError(f"metadata has {len(metadata)} rows but there are {len(y)} images; they must match.")
    overall = findings_cis(y, p, groups, findings, thresholds, n_boot=1, seed=seed)
    point = {"macro_auc": overall["macro_auc"]["value"]}
    per_point = {f: {n: c["value"] for n, c in m.items()} for f, m in overall["per_finding"].items()}
    out: dict = {"overall": point, "overall_per_finding": per_point, "metrics": ["macro_auc"], "n_boot": n_boot,
                 "groups": [], "flag_rule": f"95% CI upper bound below the overall point estimate (subgroups of at "
                                            f"least {MIN_PATIENTS} patients)"}
    for column, value, rows in iter_subgroups(metadata, specs):
        n_patients = int(len(np.unique(groups[rows])))
        enough = n_patients >= MIN_PATIENTS
        ci = findings_cis(y[rows], p[rows], groups[rows], findings, thresholds, n_boot=max(n_boot, 1), seed=seed)
        strip = (lambda c: c) if n_boot > 0 else (lambda c: {"value": c["value"]})
        per = {f: {n: strip(c) for n, c in m.items()} for f, m in ci["per_finding"].items()}
        out["groups"].append({
            "column": column, "subgroup": value, "n_images": int(rows.sum()), "n_patients": n_patients,
            "prevalence": finding_prevalence(y[rows], findings), "metrics": {"macro_auc": strip(ci["macro_auc"])},
            "per_finding": per, "flagged": _flagged({"macro_auc": ci["macro_auc"]}, point, ["macro_auc"], enough, n_boot),
            "flagged_findings": [f for f in findings
                                 if _flagged(ci["per_finding"][f], per_point[f], ["roc_auc"], enough, n_boot)],
        })
    return out


def _order(value: str, spec: SubgroupSpec) -> tuple:
    """Bins in numeric order (``<18`` first), other values alphabetically."""
    if spec.cuts:
        first = value.lstrip("<>=").split("-")[0]
        return (0 if value.startswith("<") else 2 if value.startswith(">") else 1, float(first) if first else 0.0)
    return (0, value)


__all__ = ["MIN_PATIENTS", "MISSING", "SubgroupSpec", "check_columns", "few_patients_warning", "iter_subgroups", "parse_subgroups",
           "patients_per_class", "subgroup_findings_metrics", "subgroup_labels", "subgroup_metrics"]
