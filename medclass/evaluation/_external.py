"""The ``external`` and ``subgroups`` sections of ``metrics.json`` (the pure computations are in
:mod:`medclass.metrics.external` and :mod:`medclass.metrics.subgroups`).

External data is compared with the run's own internal test evaluation: the ``metrics.json`` and
``predictions.csv`` that ``medclass evaluate RUN`` wrote into the run folder. Without them the
section says so and how to get them, and gives the external figures alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import EvalDir, RunDir
from ..data.splits import patient_groups
from ..metrics.external import (calibration_fit, compare_sets, operating_points, prevalence, recalibrate_split,
                                shift_warnings)
from ..metrics.findings import compare_findings, finding_calibration, finding_prevalence
from ..metrics.subgroups import SubgroupSpec, subgroup_findings_metrics, subgroup_metrics


@dataclass(frozen=True)
class InternalTest:
    """The run's own test-split predictions (from its evaluation folder)."""

    y: np.ndarray
    probs: np.ndarray
    groups: np.ndarray
    threshold: float
    source: Path  # the metrics.json they belong to


def read_internal_test(run_dir: RunDir | None, classes: list[str], multi_label: bool = False) -> InternalTest | str:
    """The run's internal test predictions, or a sentence saying why there are none.

    Multi-label: ``y`` is ``(n, K)`` with NaN for masked labels (blank ``label_<finding>``) and ``threshold`` NaN
    (each finding has its own, in the checkpoint)."""
    if run_dir is None:
        return "no run folder beside the checkpoint, so no internal test evaluation to compare with"
    ev = EvalDir(run_dir.path)
    if not (ev.metrics.is_file() and ev.predictions.is_file()):
        return (f"no internal test evaluation in {run_dir.path} (metrics.json and predictions.csv); run "
                f"`medclass evaluate {run_dir.path}` first to compare the external figures with it")
    m = json.loads(ev.metrics.read_text())
    data = m.get("data") or {}
    if data.get("source") != "run split" or data.get("split") != "test" or list(m.get("classes", [])) != classes:
        return f"{ev.metrics} is not this model's evaluation on its own test split"
    df = pd.read_csv(ev.predictions, dtype={"patient": str}, keep_default_na=False)
    probs = df[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
    if multi_label:
        y = df[[f"label_{c}" for c in classes]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        return InternalTest(y, probs, patient_groups(df).to_numpy(), float("nan"), ev.metrics)
    index = {c: i for i, c in enumerate(classes)}
    return InternalTest(df["label"].map(index).to_numpy(), probs, patient_groups(df).to_numpy(),
                        float(m["threshold"]), ev.metrics)


def external_section(y: np.ndarray, probs: np.ndarray, groups: np.ndarray, classes: list[str], threshold: float,
                     rule: str, run_dir: RunDir | None, n_boot: int, recalibrate: bool = False, seed: int = 0) -> dict:
    """``metrics.json["external"]``: internal beside external, differences, prevalence, calibration,
    operating points, warnings and (on request) the declared recalibration."""
    internal = read_internal_test(run_dir, classes)
    out: dict = {"prevalence": {"external": prevalence(y, classes)}, "n_boot": n_boot,
                 "ci_method": "95% percentile bootstrap resampling patients; the difference from independent "
                              "bootstraps of the two sets"}
    if isinstance(internal, InternalTest):
        out["internal_source"] = str(internal.source)
        out["prevalence"]["internal"] = prevalence(internal.y, classes)
        comparison = compare_sets((y, probs, groups), (internal.y, internal.probs, internal.groups),
                                  threshold, n_boot=max(n_boot, 1), seed=seed)
        out["comparison"] = comparison if n_boot > 0 else {  # no CIs asked for: point estimates only
            name: {k: {"value": v["value"]} for k, v in c.items()} for name, c in comparison.items()}
        out["warnings"] = shift_warnings(out["comparison"]) if n_boot > 0 else []
    else:
        out["internal_missing"] = internal
        out["warnings"] = []
    if len(classes) == 2:
        out["calibration"] = calibration_fit(y, probs).to_dict()
        out["operating_points"] = operating_points(y, probs, threshold, rule)
    if recalibrate:  # two classes (checked by evaluate before predicting)
        out["recalibration"] = recalibrate_split(y, probs, groups, threshold, rule, n_boot=n_boot, seed=seed)
    return out


def subgroups_section(specs: list[SubgroupSpec], y: np.ndarray, probs: np.ndarray, groups: np.ndarray, predictions: pd.DataFrame,
                      classes: list[str], threshold: float, n_boot: int, seed: int = 0) -> dict:
    """``metrics.json["subgroups"]`` for the ``--subgroups`` ``specs`` over the metadata columns ``predictions``."""
    return {"spec": ",".join(s.name for s in specs),
            **subgroup_metrics(y, probs, groups, predictions, specs, classes, threshold, n_boot=n_boot, seed=seed)}


def subgroup_findings_section(specs: list[SubgroupSpec], y: np.ndarray, probs: np.ndarray, groups: np.ndarray,
                              predictions: pd.DataFrame, findings: list[str], thresholds: list[float], n_boot: int,
                              seed: int = 0) -> dict:
    """Multi-label ``metrics.json["subgroups"]``: macro AUC and every finding per subgroup, with CIs."""
    return {"spec": ",".join(s.name for s in specs),
            **subgroup_findings_metrics(y, probs, groups, predictions, specs, findings, thresholds, n_boot=n_boot, seed=seed)}


def external_findings_section(y: np.ndarray, probs: np.ndarray, groups: np.ndarray, findings: list[str],
                              thresholds: list[float], run_dir: RunDir | None, n_boot: int, seed: int = 0) -> dict:
    """Multi-label ``metrics.json["external"]``: internal beside external for the macro AUC (``comparison``, the
    shape of the single-label one) and per finding (``per_finding``), with differences and CIs; prevalence and
    calibration (in-the-large, slope) per finding; warnings where the external CI lies below the internal value."""
    internal = read_internal_test(run_dir, findings, multi_label=True)
    out: dict = {"prevalence": {"external": finding_prevalence(y, findings)}, "n_boot": n_boot,
                 "ci_method": "95% percentile bootstrap resampling patients; the difference from independent bootstraps "
                              "of the two sets; no interval for a finding with too few positive patients in either set",
                 "calibration_per_finding": finding_calibration(y, probs, findings)}
    if not isinstance(internal, InternalTest):
        return out | {"internal_missing": internal, "warnings": []}
    out["internal_source"] = str(internal.source)
    out["prevalence"]["internal"] = finding_prevalence(internal.y, findings)
    c = compare_findings((y, probs, groups), (internal.y, internal.probs, internal.groups), findings, thresholds,
                         n_boot=max(n_boot, 1), seed=seed)
    if n_boot <= 0:  # no CIs asked for: point estimates only
        c = {"macro_auc": {k: {"value": v["value"]} for k, v in c["macro_auc"].items()},
             "per_finding": {f: {n: {k: {"value": v["value"]} for k, v in d.items()} for n, d in per.items()}
                             for f, per in c["per_finding"].items()}}
    out["comparison"], out["per_finding"] = {"macro_auc": c["macro_auc"]}, c["per_finding"]
    out["warnings"] = shift_warnings(out["comparison"]) + [
        w.replace("External roc_auc", f"External {f} AUC", 1)
        for f, per in c["per_finding"].items() for w in shift_warnings({"roc_auc": per["roc_auc"]})] if n_boot > 0 else []
    return out


__all__ = ["InternalTest", "external_findings_section", "external_section", "read_internal_test",
           "subgroup_findings_section", "subgroups_section"]
