"""Is the evaluated data really held out? Checked against the run's training and validation rows.

The evaluated rows and the reference rows (what the model was trained or selected on) are put in
one table and fingerprinted once; the leak audit of :mod:`medclass.data.audit` then finds shared
patients, byte-identical files and near-duplicates (perceptual hash), and same paths are compared
directly. Only findings that link an evaluated row to a reference row count as contamination;
duplicates within the evaluated data are reported in the data summary.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.audit import LeakReport, audit_leaks
from ..data.fingerprint import fingerprint
from ..data.naming import name_prefixes
from ..data.patients import known_patient
from ..data.prepare import align_fingerprints
from ..data.table import DataTable

log = logging.getLogger(__name__)

EVALUATED = "test"  # split name given to the evaluated rows inside the combined audit table
MAX_LISTED = 50  # overlaps listed one by one in metrics.json and the report (all are counted)


def _patients(frame: pd.DataFrame) -> int:
    return int(frame.loc[frame["patient"] != "", "patient"].nunique())


def _of_class(df: pd.DataFrame, cls: str, multi_label: bool) -> pd.Series:
    """Rows of a class; multi-label: the rows positive for that finding."""
    return df[f"label_{cls}"] == 1 if multi_label else df["label"] == cls


def data_summary(table: DataTable, fp: pd.DataFrame, report: LeakReport, skipped: list[dict]) -> dict:
    """Counts per class, patients, image sizes, skipped files and the leak audit within the evaluated data."""
    df = table.frame
    ok = fp["error"] == ""
    sizes = {}
    if ok.any():
        w, h = fp.loc[ok, "width"], fp.loc[ok, "height"]
        sizes = {"width": [int(w.min()), int(w.median()), int(w.max())], "height": [int(h.min()), int(h.median()), int(h.max())],
                 "channels": sorted(int(c) for c in fp.loc[ok, "channels"].unique())}
    return {
        "n_images": int(len(df)),
        "n_patients": _patients(df),
        "images_without_patient": int((df["patient"] == "").sum()),
        "per_class": {c: int(_of_class(df, c, table.multi_label).sum()) for c in table.classes},
        "patients_per_class": {c: _patients(df[_of_class(df, c, table.multi_label)]) for c in table.classes},
        "image_sizes_min_median_max": sizes,
        "unreadable": [{"path": p, "reason": r} for p, r in zip(fp.loc[~ok, "path"], fp.loc[~ok, "error"])],
        "skipped_by_source": list(skipped),
        "audit": report.to_dict(),
    }


def _linking(groups: list[dict], role: np.ndarray) -> list[dict]:
    """Groups with at least one evaluated and one reference row, as {evaluated, reference} path lists."""
    out = []
    for g in groups:
        rows = np.asarray(g["rows"])
        is_eval = role[rows] == "evaluated"
        if is_eval.any() and (~is_eval).any():
            paths = np.asarray(g["paths"])
            splits = np.asarray(g["splits"])
            out.append({"evaluated": paths[is_eval].tolist(),
                        "reference": [f"{p} ({s})" for p, s in zip(paths[~is_eval], splits[~is_eval])]})
    return out


def _same_paths(evaluated: pd.DataFrame, reference: pd.DataFrame) -> list[str]:
    def keys(df: pd.DataFrame) -> pd.Series:
        return pd.Series([f"{Path(p).resolve()}#{f}" for p, f in zip(df["path"], df["frame"])], index=df.index)

    shared = set(keys(evaluated)) & set(keys(reference))
    ev = keys(evaluated)
    return evaluated.loc[ev.isin(shared), "path"].tolist()


def _statement(counts: dict, n_eval: int, p_eval: int, n_ref: int, p_ref: int, ref_names: str, methods: str) -> str:
    evaluated = f"{n_eval} images / {p_eval} patients" if p_eval else f"{n_eval} images (no patient ids)"
    patients = f"{p_ref} patients" if p_ref else "no patient ids"
    if not any(counts.values()):
        return (f"No evaluated image or patient was used in {ref_names}: checked {evaluated} "
                f"against the {n_ref} {ref_names} images ({patients}) by {methods}.")
    found = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v)
    return (f"The evaluated data overlaps the {ref_names} data ({found}); the metrics are CONTAMINATED "
            f"and overestimate performance on new patients. Checked {evaluated} against "
            f"{n_ref} {ref_names} images by {methods}.")


def _probable_patients(evaluated: pd.DataFrame, reference: pd.DataFrame) -> int:
    """Evaluated images without a patient id whose file name differs from a reference image's only in its last number."""
    ev = name_prefixes(evaluated.loc[~known_patient(evaluated["patient"]), "path"], numbered_only=True)
    ref = name_prefixes(reference.loc[~known_patient(reference["patient"]), "path"], numbered_only=True)
    return int((ev.isin(set(ref[ref != ""])) & (ev != "")).sum())


def patient_id_warnings(evaluated: pd.DataFrame, reference: pd.DataFrame | None, near: int, ref_names: str) -> dict:
    """What the missing patient ids of either side mean for the held-out claim (``leak_check.patient_ids``).

    The run's own rows without ids mean its split was made by image (``data.split_by=image``): a patient
    with several images may sit on both sides, which no check by patient id can see; file-name prefixes
    and near-duplicates linking the two sides are counted as probable leaks. Evaluated rows without ids
    get intervals that treat each image as a patient.
    """
    ref_missing = 0 if reference is None else int((~known_patient(reference["patient"])).sum())
    ev_missing = int((~known_patient(evaluated["patient"])).sum())
    lines = []
    probable = _probable_patients(evaluated, reference) if reference is not None and ref_missing else 0
    if reference is not None and len(reference) and ref_missing == len(reference):
        lines.append(
            f"The run was split by image: its {ref_names} images have no patient ids, so if a patient has "
            f"several images the same patient can be in {ref_names} and in the evaluated data, which no check by "
            f"patient id can see; estimate: {probable} evaluated image(s) share a file-name prefix and {near} are "
            f"near-duplicates of {ref_names} images (probable patient leaks). Retrain with --patient-column, "
            "--patient-regex or --preset to rule this out.")
    elif ref_missing:
        lines.append(f"{ref_missing} of the {len(reference)} {ref_names} images have no patient id (each its own "
                     f"patient in the split); estimate: {probable} evaluated image(s) share a file-name prefix with them.")
    if ev_missing == len(evaluated) and len(evaluated):
        lines.append("The evaluated images have no patient ids: confidence intervals treat each image as its own "
                     "patient and are too narrow if patients have several images.")
    elif ev_missing:
        lines.append(f"{ev_missing} of the {len(evaluated)} evaluated images have no patient id (each counted as its own patient).")
    return {"reference_without_id": ref_missing, "evaluated_without_id": ev_missing,
            "probable_same_patient": probable, "warning": " ".join(lines)}


def check_held_out(evaluated: DataTable, reference: DataTable | None, *, ref_names: str = "training or validation",
                   window: str = "", near_duplicates: bool = True, cache_dir: str | Path | None = None,
                   workers: int | None = None) -> tuple[dict, dict]:
    """Compare ``evaluated`` with ``reference`` rows; return ``(leak_check, data_summary)`` (both JSON-able).

    ``leak_check`` has ``checked`` (False without a reference), ``clean``, ``statement``, ``counts``
    (``same_path``, ``same_file_hash``, ``near_duplicates``, ``same_patient``) and the listed
    overlaps. ``data_summary`` describes the evaluated rows (see :func:`data_summary`).
    """
    ref_frame = reference.frame.copy() if reference is not None else evaluated.frame.iloc[:0].copy()
    ev_frame = evaluated.frame.copy()
    ev_frame["split"] = EVALUATED
    combined = DataTable(pd.concat([ref_frame, ev_frame], ignore_index=True),
                         list(evaluated.classes), source=evaluated.source, root=evaluated.root, task=evaluated.task)
    role = np.array(["reference"] * len(ref_frame) + ["evaluated"] * len(ev_frame))
    fp = fingerprint(combined, workers=workers, cache_dir=cache_dir, window=window)
    eval_fp = fp.iloc[len(ref_frame):].reset_index(drop=True)
    eval_table = combined.subset(role == "evaluated")
    own_report = audit_leaks(eval_table, align_fingerprints(eval_fp, eval_table), near_duplicates=near_duplicates)
    summary = data_summary(evaluated, eval_fp, own_report, evaluated.skipped)
    if reference is None:
        statement = ("NOT CHECKED: no training split (split.csv) was found next to the checkpoint, so the evaluated "
                     "images could not be compared with the training data; treat the metrics with care.")
        ids = patient_id_warnings(ev_frame, None, 0, ref_names)
        statement = " ".join(filter(None, [statement, ids["warning"]]))
        log.warning(statement)
        return {"checked": False, "clean": None, "statement": statement, "patient_ids": ids}, summary

    report = audit_leaks(combined, fp, near_duplicates=near_duplicates)
    patients = [p for p in report.patient_overlap if EVALUATED in p["splits"] and len(p["splits"]) > 1]
    exact = _linking(report.exact_groups, role)
    near = _linking(report.near_groups, role)
    same_path = _same_paths(ev_frame, ref_frame)
    counts = {"same_path": len(same_path), "same_file_hash": sum(len(g["evaluated"]) for g in exact),
              "near_duplicates": sum(len(g["evaluated"]) for g in near), "same_patient": len(patients)}
    methods = "path, file hash (sha256) and patient id"
    if near_duplicates:
        methods += f", and near-duplicates by perceptual hash (<= {report.max_distance} of 256 bits)"
    unhashed = int((fp["error"] != "").sum())
    p_eval, p_ref = _patients(ev_frame), _patients(ref_frame)
    statement = _statement(counts, len(ev_frame), p_eval, len(ref_frame), p_ref, ref_names, methods)
    if unhashed:
        statement += f" {unhashed} unreadable image(s) could not be compared by content."
    ids = patient_id_warnings(ev_frame, ref_frame, counts["near_duplicates"], ref_names)
    if ids["warning"]:
        statement = f"{statement} {ids['warning']}"
    clean = not any(counts.values())
    (log.info if clean and not ids["warning"] else log.warning)(statement)
    return {
        "checked": True, "clean": clean, "statement": statement, "counts": counts, "methods": methods,
        "evaluated_images": len(ev_frame), "evaluated_patients": p_eval,
        "reference_images": len(ref_frame), "reference_patients": p_ref,
        "reference_splits": sorted(set(ref_frame["split"])), "unhashed": unhashed,
        "same_path": same_path[:MAX_LISTED],
        "same_file_hash": exact[:MAX_LISTED],
        "near_duplicates": near[:MAX_LISTED],
        "same_patient": patients[:MAX_LISTED],
        "patient_ids": ids,
    }, summary
