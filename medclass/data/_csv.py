"""CSV manifests as a :class:`~medclass.data.table.DataTable` (:func:`from_csv`; re-exported by :mod:`medclass.data.sources`).

One row per image: a path (or id) column, a label column, optional patient and ``split`` columns;
other columns are kept. Multi-label manifests list their findings in one separated column or hold
one 1/0/-1/blank column per finding (:class:`~medclass.data.multilabel.FindingSpec`).

Example:
    >>> table = from_csv("../shared/data/head_ct/labels.csv", "id", "hemorrhage", class_names=["normal", "hemorrhage"])
    >>> len(table)
    200
"""
from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import DataConfig
from ..errors import DatasetError, did_you_mean
from ._scan import (MISSING_LABELS, SPLIT_ALIASES, file_kind, file_rows, name_labels, read_manifest, skip,
                    skipped_summary, unsupported_reason, walk_files)
from .io import SUPPORTED_EXTENSIONS
from .volumes.read import NIFTI_EXTENSIONS
from .multilabel import MULTI, FindingSpec, apply_uncertain, with_findings
from .patients import patient_rule
from .table import REQUIRED_COLUMNS, DataTable

log = logging.getLogger(__name__)


def from_csv(csv_path: str | Path, path_column: str = DataConfig.path_column, label_column: str = DataConfig.label_column,
             patient_column: str = "", image_root: str | Path = "", path_template: str = "{}",
             class_names: Sequence[str] = (), split_column: str = "auto",
             patient_regex: str = "none", findings: FindingSpec | None = None,
             uncertain: str = "ignore", mask_column: str = "") -> DataTable:
    """Rows from a CSV manifest (header names are stripped of spaces, every cell read as text).

    * ``path_template`` turns the path column into a file name relative to ``image_root`` (default:
      the CSV's folder), e.g. ``'{:03d}.png'``. With the default ``'{}'`` a value without an image
      extension is looked up as ``<value>.<ext>`` among the files under ``image_root``.
    * Numeric labels ``0..k-1`` become ``class_names[i]`` when ``class_names`` are given; label
      names are kept as they are (``class_names`` then fixes the class order).
    * ``split_column='auto'`` uses a column named ``split`` when there is one; '' ignores it.
    * Patient: ``patient_column`` if given, else the file-name rule ``patient_regex``.

    * Multi-label (``findings`` given, :mod:`~medclass.data.multilabel`): the findings come from a
      separated list column or one 1/0/-1/blank column each; ``label_column`` is not read, and
      uncertain/blank entries follow ``uncertain`` (ignore = masked, ones, zeros).

    Missing files and missing labels (empty, ``NaN``, ``NA``, ``N/A``, ``#N/A``, ``null``: see
    ``MISSING_LABELS``) are skipped with a reason; a missing column raises
    :class:`DatasetError` listing the columns that exist.

    >>> table = from_csv("../shared/data/head_ct/labels.csv", "id", "hemorrhage",
    ...                  class_names=["normal", "hemorrhage"])
    >>> table.frame["label"].value_counts().to_dict()
    {'hemorrhage': 100, 'normal': 100}
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"CSV manifest {csv_path} does not exist.")
    df = read_manifest(csv_path)
    df = df.apply(lambda col: col.str.strip())
    split_column = ("split" if "split" in df.columns else "") if split_column == "auto" else split_column
    used = {"path_column": path_column, "label_column": "" if findings else label_column,
            "patient_column": patient_column, "split_column": split_column, "mask_column": mask_column}
    if findings:
        used.update({("labels_from" if findings.labels_from else f"label_columns[{i}]"): c
                     for i, c in enumerate(findings.source_columns())})
    # a multi-label manifest reads no label column
    path_column, label = guess_columns(df, path_column, "" if findings else label_column, csv_path)
    label_column = label or label_column
    used.update(path_column=path_column, label_column=label)
    for option, column in used.items():
        if column and column not in df.columns:
            raise DatasetError(
                f"{csv_path} has no column {column!r} (data.{option}); its columns are {list(df.columns)}."
                + did_you_mean(column, df.columns)
            )
    root = csv_image_root(csv_path, image_root)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} (data.image_root) for {csv_path} does not exist.")
    skipped: list[dict] = []
    patient_of = patient_rule(patient_regex)
    locate = _Locator(root, path_template)
    extras = [c for c in df.columns if c not in used.values() and c not in REQUIRED_COLUMNS] + ([mask_column] if mask_column else [])
    names = findings.findings(df) if findings else []
    rows, values, lines = [], [], []
    for line, rec in enumerate(df.to_dict("records"), start=2):
        where = f"{csv_path}:{line}"
        row_values = findings.values(rec, names) if findings else None
        if findings and row_values is None:
            skip(skipped, where, f"no findings in {findings.source_columns()[:3]}")
            continue
        if not findings and rec[label_column].casefold() in MISSING_LABELS:
            skip(skipped, where, f"missing label {rec[label_column]!r} in column {label_column!r}")
            continue
        path, reason = locate(rec[path_column])
        if path is None:
            skip(skipped, where, reason)
            continue
        kind = file_kind(path)
        if not kind:
            skip(skipped, where, unsupported_reason(path))
            continue
        split = _split_value(rec[split_column], where) if split_column else ""
        extra = {c: rec[c] for c in extras}
        for row in file_rows(path, kind, "" if findings else rec[label_column], split, patient_of, skipped):
            if patient_column:
                row["patient"] = rec[patient_column]
            rows.append({**row, **extra})
            values.append(row_values)
            lines.append(line)
    keep = _single_rows(rows, values, lines, csv_path, skipped)
    rows, values = [rows[i] for i in keep], [values[i] for i in keep]
    _link_patients(rows)
    if not rows:
        raise DatasetError(f"No usable rows in {csv_path} (images looked up in {root})." + skipped_summary(skipped))
    frame = pd.DataFrame(rows)
    if mask_column:  # a lesion mask file per row, relative to the images' folder (blank: none)
        frame[mask_column] = resolve_masks(frame[mask_column], root)
    if findings:
        if len(names) < 2:
            raise DatasetError(f"{csv_path}: multi-label data needs at least 2 findings, found {names}; for one finding "
                               "use a single-label column (data.label_column).")
        matrix = apply_uncertain(np.array(values, dtype=np.float32), uncertain)
        return DataTable(with_findings(frame, names, matrix), names, skipped, "csv", str(csv_path), MULTI)
    frame["label"], classes = name_labels(frame["label"], class_names, str(csv_path))
    return DataTable(frame, classes, skipped, "csv", str(csv_path))


PATH_DEFAULT, LABEL_DEFAULT = DataConfig.path_column, DataConfig.label_column  # what a user who names no column gets
_FILE_SUFFIXES = tuple(SUPPORTED_EXTENSIONS + NIFTI_EXTENSIONS)
_NAMES_FILES = 0.9  # share of a column's non-empty values that must name image files for it to be the path column
# usual names of a manifest's image and label columns (compared in lower case, spaces as '_')
PATH_NAMES = ("image", "image_path", "image_file", "image_id", "image_name", "filename", "file_name", "file",
              "filepath", "file_path", "id_code", "img")
LABEL_NAMES = ("class", "class_name", "target", "diagnosis", "category", "finding")


def guess_columns(df: pd.DataFrame, path_column: str, label_column: str, csv_path: str | Path = "") -> tuple[str, str]:
    """The image and label columns of a single-label manifest whose columns are not the defaults.

    A manifest of two columns named neither ``path`` nor ``label`` (head_ct's ``id, hemorrhage``) is read as image,
    label (logged at info level). Otherwise only a default that the manifest lacks is replaced, and only by a
    column that is the one fit, tried in
    order: for the image, the column ``path`` in another case (``Path``), the column whose values name image,
    DICOM or NIfTI files (90 % of its non-empty values, as ``image`` or ``Image Index`` do), a usual name
    (:data:`PATH_NAMES`: ``image_id``, ``filename``...; ids without an extension are looked up as files); for the
    label, ``label`` in another case, then a usual name (:data:`LABEL_NAMES`: ``class``, ``diagnosis``...). Each
    choice is a warning line with the flag that makes it explicit; otherwise the names are returned unchanged
    and the caller's missing-column error lists the columns.

    >>> guess_columns(pd.DataFrame({"Image": ["a.png"], "Label": ["x"], "age": ["3"]}), "path", "label")
    ('Image', 'Label')
    """
    columns = [str(c) for c in df.columns]
    if (path_column, label_column) == (PATH_DEFAULT, LABEL_DEFAULT) and len(columns) == 2 and \
            not {PATH_DEFAULT, LABEL_DEFAULT} & set(columns):
        log.info("%s: two columns without 'path'/'label'; using %r as the image and %r as the label "
                 "(set data.path_column / data.label_column to choose)", csv_path, *columns)
        return columns[0], columns[1]

    def named(names: tuple[str, ...]) -> list[str]:
        return [c for c in columns if c.casefold().replace(" ", "_") in names]

    def one(found: list[str]) -> str:
        return found[0] if len(found) == 1 else ""

    if path_column == PATH_DEFAULT and path_column not in columns:
        # vectorised per column: no pass over the rows in Python
        files = [c for c in columns if (values := df[c].dropna()).size and (values.str.lower().str.endswith(
            _FILE_SUFFIXES)).mean() >= _NAMES_FILES]
        for found, why in ((one(named((PATH_DEFAULT,))), "its name"), (one(files), "its values name the image files"),
                           (one(named(PATH_NAMES)) if not files else "", "a usual name for the image column")):
            if found:
                path_column = found
                log.warning("%s has no column 'path'; using %r (%s; --path-column %s to say so)", csv_path, found,
                            why, shlex.quote(found))
                break
    if label_column == LABEL_DEFAULT and label_column not in columns:
        found = one(named((LABEL_DEFAULT,))) or one(named(LABEL_NAMES))
        if found:
            label_column = found
            log.warning("%s has no column 'label'; using %r (--label-column %s to say so)", csv_path, found,
                        shlex.quote(found))
    return path_column, label_column


def csv_image_root(csv_path: str | Path, image_root: str | Path = "") -> Path:
    """The folder a manifest's relative paths (images, masks) are read from: ``image_root``, else the CSV's folder
    (for a folder of images given as the data source: that folder)."""
    if str(image_root):
        return Path(image_root)
    source = Path(csv_path)
    return source if source.is_dir() else source.parent


def resolve_masks(values: Any, root: str | Path) -> np.ndarray:
    """A mask column's cells as paths, all at once: absolute paths kept, relative ones under ``root``; blank -> ``''``.

    The one rule for mask paths (``--mask-column``), used when a CSV is read and again by the sections that
    read masks (a table built elsewhere may hold relative paths).

    >>> resolve_masks(["masks/a.nii.gz", "", None, "/abs/b.png"], "/data").tolist()
    ['/data/masks/a.nii.gz', '', '', '/abs/b.png']
    """
    text = pd.Series(values, dtype=object).fillna("").astype(str).str.strip()
    relative = (text != "") & ~text.map(os.path.isabs).astype(bool)
    return text.where(~relative, str(Path(root).absolute()) + os.sep + text).to_numpy(dtype=object)


def _single_rows(rows: list[dict], values: list, lines: list[int], csv_path: Path, skipped: list[dict]) -> list[int]:
    """Indices of the rows to keep when a manifest lists the same image (file and frame) more than once.

    Repeats that agree (same label or findings, same split) are kept once; an image listed with
    conflicting labels or splits is left out altogether (which one is right cannot be told), each
    case recorded in ``skipped`` with its CSV lines so the manifest can be fixed. A repeat under
    another patient id is said by name, and the kept row carries every id it was listed under
    (``"linked"``: :func:`_link_patients` makes them one patient, so the image cannot leak across splits).
    """
    first: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        first.setdefault((row["path"], row["frame"]), []).append(i)
    keep: list[int] = []
    for (path, _), idx in first.items():
        if len(idx) == 1:
            keep.append(idx[0])
            continue
        where = f"{csv_path}:{','.join(str(lines[i]) for i in idx)}"
        said = {(rows[i]["label"], rows[i]["split"], None if values[i] is None else tuple(values[i])) for i in idx}
        if len(said) == 1:
            keep.append(idx[0])
            ids = list(dict.fromkeys(str(rows[i]["patient"]) for i in idx if str(rows[i]["patient"])))
            if len(ids) > 1:
                rows[idx[0]]["linked"] = ids
            for i in idx[1:]:
                other = str(rows[i]["patient"])
                under = (f" under another patient id ({other!r} here, {str(rows[idx[0]]['patient'])!r} there): one image "
                         "cannot belong to two patients, so the two are linked into one"
                         if other and other != str(rows[idx[0]]["patient"]) else "")
                skip(skipped, f"{csv_path}:{lines[i]}", f"repeats line {lines[idx[0]]} ({path}){under}; kept once")
        else:
            labels = sorted({str(rows[i]["label"]) if values[i] is None else str(values[i]) for i in idx})
            splits = sorted({rows[i]["split"] for i in idx} - {""})
            skip(skipped, where, f"{path} is listed {len(idx)} times with conflicting labels {labels}"
                 + (f" or splits {splits}" if len(splits) > 1 else "") + "; left out (fix the manifest to keep it)")
    return sorted(keep)


def _link_patients(rows: list[dict]) -> None:
    """Give every patient linked by one image listed under several ids (a row's ``"linked"``) the first id of
    its group, in place, and say so by name in a warning (the repeated lines are in ``skipped``)."""
    parent: dict[str, str] = {}

    def root(a: str) -> str:
        while parent.get(a, a) != a:
            a = parent[a]
        return a

    for row in rows:
        ids = row.pop("linked", None) or []
        for other in ids[1:]:
            a, b = root(ids[0]), root(other)
            if a != b:
                parent[b] = a
    if not parent:
        return
    groups: dict[str, list[str]] = {}
    for pid in parent:
        groups.setdefault(root(pid), []).append(pid)
    for row in rows:
        if str(row["patient"]) in parent:
            row["patient"] = root(str(row["patient"]))
    for into, merged in groups.items():
        names = ", ".join(repr(p) for p in [into, *sorted(merged)])
        log.warning("Patient ids %s share an image (the same file is listed under each; see the loader's skipped "
                    "lines): they are linked into one patient %r, so that it cannot be on both sides of a split.",
                    names, into)


class _Locator:
    """CSV path value -> an existing file under ``root`` (or None and the reason)."""

    def __init__(self, root: Path, template: str) -> None:
        self.root, self.template = root, template
        self._by_stem: dict[str, list[Path]] | None = None

    def __call__(self, value: str) -> tuple[Path | None, str]:
        if not value:
            return None, "empty path"
        try:
            name = _format(self.template, value)
        except (ValueError, IndexError, KeyError) as e:
            return None, f"path template {self.template!r} cannot format {value!r} ({e}); set data.path_template"
        path = self.root / name
        if path.is_file() or path.is_dir():  # a folder is a DICOM series
            return path, ""
        if self.template == "{}" and Path(name).suffix.lower() not in SUPPORTED_EXTENSIONS:
            matches = self._stems().get(os.path.normpath(name), [])
            if len(matches) == 1:
                return matches[0], ""
            if len(matches) > 1:
                return None, f"{name!r} matches several files {[m.name for m in matches]}; set data.path_template"
        return None, f"file not found: {path}"

    def _stems(self) -> dict[str, list[Path]]:
        """Image files under root keyed by their relative path without extension (built once)."""
        if self._by_stem is None:
            self._by_stem = {}
            for path, _ in walk_files(self.root, []):
                rel = os.path.normpath(os.path.splitext(os.path.relpath(path, self.root))[0])
                self._by_stem.setdefault(rel, []).append(path)
        return self._by_stem


def _format(template: str, value: str) -> str:
    """``template.format(value)``, retrying with the value as int then float for numeric specs."""
    try:
        return template.format(value)
    except ValueError:
        for convert in (int, float):
            try:
                return template.format(convert(value))
            except ValueError:
                continue
        raise


def _split_value(value: str, where: str) -> str:
    if not value:
        return ""
    split = SPLIT_ALIASES.get(value.lower())
    if split is None:
        raise DatasetError(f"{where}: unknown split {value!r}; expected train, val (valid, validation), test or empty.")
    return split


__all__ = ["from_csv"]
