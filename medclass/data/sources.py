"""Data sources: turn a folder, CSV manifest, MedMNIST ``.npz`` or DICOM tree into a :class:`DataTable`.

Layouts:

* **folders** — ``ROOT/<class>/...`` or the Kaggle layout ``ROOT/{train,val,test}/<class>/...``
  (``valid``/``validation`` read as ``val``). Files are found by extension, never decoded, and
  class folders are searched recursively. DICOM files are rows too (one per frame).
* **csv** — one row per image: a path (or id) column, a label column, optional patient and
  ``split`` columns; other columns are kept.
* **npz** — MedMNIST arrays; ``frame`` is the global image index (train, then val, then test).
* **dicom** — an unlabelled tree of DICOM files: label ``'unlabelled'`` (the only class), one
  row per frame, patient = PatientID. For labelled DICOM use class folders (``folders``).

Paths in the table are absolute. Files that are not rows are listed in ``table.skipped`` with a
reason (unsupported extension, hidden file, missing file, unreadable DICOM header...).

Example:
    >>> table = load_source(DataConfig(path="../shared/data/chest_xray"))
    >>> len(table), table.classes
    (4979, ['NORMAL', 'PNEUMONIA'])
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DataConfig, Source, choices
from ..errors import DatasetError, check_choice, did_you_mean
from . import _npz
from .catalog import resolve_named
from ._scan import (SPLIT_ALIASES, file_kind, file_rows, is_hidden, read_manifest, skip, unsupported_reason,
                    walk_files)
from .io import SUPPORTED_EXTENSIONS
from .filters import filter_rows, map_labels
from .multilabel import MULTI, FindingSpec, apply_uncertain, keep_findings, label_matrix, resolve_task, stratify_keys, with_findings
from .patients import patient_rule
from .presets import effective_patient_rule, get_preset, relabel_for
from .splits import patient_groups
from .table import REQUIRED_COLUMNS, DataTable

log = logging.getLogger(__name__)

SOURCES = choices(Source)
# label cells that mean "no label" (compared case-insensitively): pandas/numpy NaN, R's NA, Excel's #N/A, SQL NULL
MISSING_LABELS = frozenset({"", "nan", "-nan", "na", "n/a", "#n/a", "<na>", "null"})
UNLABELLED = "unlabelled"


def from_folders(root: str | Path, patient_regex: str = "none",
                 sublabel: Callable[[str], str] | None = None) -> DataTable:
    """Rows from class folders, optionally under train/val/test folders (their split is kept).

    ``patient_regex`` is the file-name rule of :func:`~medclass.data.patients.patient_rule`
    (DICOM files use their PatientID first). ``sublabel`` (a data preset's file name -> sub-label
    function) adds a ``sublabel`` column when some file names carry one.

    >>> table = from_folders("../shared/data/chest_xray", "chest_xray")
    >>> table.frame["label"].value_counts().to_dict()
    {'PNEUMONIA': 3642, 'NORMAL': 1337}
    """
    root = _existing_dir(root)
    patient_of = patient_rule(patient_regex)
    skipped: list[dict] = []
    subdirs = _subdirs(root, skipped)
    _skip_loose_files(root, skipped, "not inside a class folder")
    if any(d.name.lower() in SPLIT_ALIASES for d in subdirs):
        class_dirs = []
        for d in subdirs:
            split = SPLIT_ALIASES.get(d.name.lower())
            if split is None:
                skip(skipped, d, "folder beside train/val/test folders that is not a split folder; left out")
                continue
            _skip_loose_files(d, skipped, "not inside a class folder of the split folder")
            class_dirs += [(c, split) for c in _subdirs(d, skipped)]
    else:
        class_dirs = [(d, "") for d in subdirs]
    rows = []
    for class_dir, split in class_dirs:
        found = [r for path, kind in walk_files(class_dir, skipped)
                 for r in file_rows(path, kind, class_dir.name, split, patient_of, skipped)]
        if not found:
            log.warning("class folder %s holds no images", class_dir)
        rows += found
    if not rows:
        raise DatasetError(
            f"No images found under {root}; expected ROOT/<class>/<image> or ROOT/train/<class>/<image> "
            f"with extensions {', '.join(SUPPORTED_EXTENSIONS)}." + _skipped_summary(skipped)
        )
    frame = pd.DataFrame(rows)
    sublabels = frame["path"].map(lambda p: sublabel(os.path.basename(p))) if sublabel else None
    if sublabels is not None and (sublabels != "").any():
        frame["sublabel"] = sublabels
    return DataTable(frame, _sorted_labels(frame["label"]), skipped, "folders", str(root))


def from_csv(csv_path: str | Path, path_column: str = "path", label_column: str = "label",
             patient_column: str = "", image_root: str | Path = "", path_template: str = "{}",
             class_names: Sequence[str] = (), split_column: str = "auto",
             patient_regex: str = "none", findings: FindingSpec | None = None,
             uncertain: str = "ignore") -> DataTable:
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
            "patient_column": patient_column, "split_column": split_column}
    if findings:
        used.update({("labels_from" if findings.labels_from else f"label_columns[{i}]"): c
                     for i, c in enumerate(findings.source_columns())})
    elif (path_column, label_column) == ("path", "label") and len(df.columns) == 2 and \
            not {"path", "label"} & set(df.columns):
        # A two-column manifest such as head_ct's `id, hemorrhage`: first column = image, second = label.
        path_column, label_column = df.columns[0], df.columns[1]
        used.update(path_column=path_column, label_column=label_column)
        log.info("%s: two columns without 'path'/'label'; using %r as the image and %r as the label "
                 "(set data.path_column / data.label_column to choose)", csv_path, path_column, label_column)
    for option, column in used.items():
        if column and column not in df.columns:
            raise DatasetError(
                f"{csv_path} has no column {column!r} (data.{option}); its columns are {list(df.columns)}."
                + did_you_mean(column, df.columns)
            )
    root = Path(image_root) if str(image_root) else csv_path.parent
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} (data.image_root) for {csv_path} does not exist.")
    skipped: list[dict] = []
    patient_of = patient_rule(patient_regex)
    locate = _Locator(root, path_template)
    extras = [c for c in df.columns if c not in used.values() and c not in REQUIRED_COLUMNS]
    names = findings.findings(df) if findings else []
    rows, values = [], []
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
    if not rows:
        raise DatasetError(f"No usable rows in {csv_path} (images looked up in {root})." + _skipped_summary(skipped))
    frame = pd.DataFrame(rows)
    if findings:
        if len(names) < 2:
            raise DatasetError(f"{csv_path}: multi-label data needs at least 2 findings, found {names}; for one finding "
                               "use a single-label column (data.label_column).")
        matrix = apply_uncertain(np.array(values, dtype=np.float32), uncertain)
        return DataTable(with_findings(frame, names, matrix), names, skipped, "csv", str(csv_path), MULTI)
    frame["label"], classes = _name_labels(frame["label"], class_names, str(csv_path))
    return DataTable(frame, classes, skipped, "csv", str(csv_path))


def from_npz(path: str | Path, class_names: Sequence[str] = (), task: str = "auto") -> DataTable:
    """One row per image of a MedMNIST ``.npz``; ``split`` from the array names, ``frame`` = global index.

    Labels of shape ``(n,)`` or ``(n, 1)`` are single-label; ``(n, K>1)`` 0/1 arrays (ChestMNIST)
    are multi-label with ``class_names`` as the K finding names (default ``finding_0..K-1``).
    ``task='single_label'`` refuses multi-label arrays. Object (pickled) arrays are refused and never
    loaded. Images without a label (NaN) are skipped.

    >>> from_npz("pneumoniamnist.npz", class_names=["normal", "pneumonia"]).counts()
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file {path} does not exist.")
    rows, skipped = [], []
    for part in _npz.npz_parts(path):
        try:
            labels = np.asarray(_npz.npz_array(path, part.labels_key))
        except KeyError:
            raise DatasetError(f"{path} has {part.images_key} but no {part.labels_key}; every image array needs its labels.") from None
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 and (labels.ndim != 2 or task == "single_label"):
            raise DatasetError(
                f"{path}: {part.labels_key} has shape {labels.shape}; expected (n,) or (n, 1) single-label data, or "
                "(n, K) 0/1 findings with data.task=auto or multi_label."
            )
        if len(labels) != part.length:
            raise DatasetError(f"{path}: {part.labels_key} has {len(labels)} labels for {part.length} images in {part.images_key}.")
        part_rows = pd.DataFrame({"path": os.path.abspath(path), "split": part.split,
                                  "frame": np.arange(part.start, part.start + part.length)})
        if labels.ndim == 2:
            part_rows = pd.concat([part_rows, pd.DataFrame(labels.astype(np.float32)).add_prefix("#")], axis=1)
        else:
            part_rows["label"] = pd.Series([str(v) for v in labels.tolist()], dtype=str)
            missing = part_rows["label"].str.casefold().isin(MISSING_LABELS).to_numpy()
            for frame_index, label in zip(part_rows["frame"][missing], part_rows["label"][missing]):
                skip(skipped, f"{path} (frame {frame_index})", f"missing label {label!r} in {part.labels_key}")
            part_rows = part_rows[~missing]
        rows.append(part_rows)
    frame = pd.concat(rows, ignore_index=True)
    if frame.empty:
        raise DatasetError(f"{path}: no image has a label (the image arrays are empty, or every label is NaN)."
                           + _skipped_summary(skipped))
    finding_cols = [c for c in frame.columns if c.startswith("#")]
    if finding_cols:
        names = [str(c) for c in class_names] or [f"finding_{i}" for i in range(len(finding_cols))]
        if len(names) != len(finding_cols):
            raise DatasetError(f"{path}: {len(finding_cols)} findings per image but {len(names)} data.class_names; give "
                               "one name per label column.")
        matrix = frame[finding_cols].to_numpy(dtype=np.float32)
        return DataTable(with_findings(frame.drop(columns=finding_cols), names, matrix), names, [], "npz", str(path), MULTI)
    frame["label"], classes = _name_labels(frame["label"], class_names, str(path))
    return DataTable(frame, classes, skipped, "npz", str(path))


def from_dicom(root: str | Path, patient_regex: str = "none") -> DataTable:
    """Unlabelled DICOM files (a file or a folder searched recursively): one row per frame.

    Every row gets the label ``'unlabelled'`` (the single class); the patient is the PatientID,
    else the file-name rule. Non-DICOM files and unreadable headers are skipped with a reason.

    >>> table = from_dicom("../shared/data/dicom")
    >>> table.classes
    ['unlabelled']
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"DICOM path {root} does not exist.")
    patient_of = patient_rule(patient_regex)
    skipped: list[dict] = []
    files = [(root, "dicom")] if root.is_file() else walk_files(root, skipped)
    rows = []
    for path, kind in files:
        if kind != "dicom":
            skip(skipped, path, "not a DICOM file (a DICOM source takes .dcm/.dicom files or files with the DICM magic)")
            continue
        rows += file_rows(path, kind, UNLABELLED, "", patient_of, skipped)
    if not rows:
        raise DatasetError(f"No readable DICOM files found in {root}." + _skipped_summary(skipped))
    return DataTable(pd.DataFrame(rows), [UNLABELLED], skipped, "dicom", str(root))


def manifests_in(folder: str | Path) -> list[Path]:
    """CSV/TSV manifests directly inside ``folder`` (a folder of images with one ``labels.csv``)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".csv", ".tsv") and not is_hidden(p.name))


def detect_source(path: str | Path) -> str:
    """The source kind for ``data.source='auto'``: csv/tsv -> csv, .npz -> npz, a DICOM file -> dicom;
    a folder with exactly one CSV manifest (and no sub-folders other than those its paths point into)
    -> csv; a folder with (non-hidden) subfolders -> folders; else dicom when it holds DICOM files.

    Never guesses: a folder with several manifests, or a manifest beside class-like sub-folders, is
    refused with the candidates and the option that picks one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Data path {path} does not exist (data.path).")
    if path.is_file():
        suffix = path.suffix.lower()
        kind = {".csv": "csv", ".tsv": "csv", ".npz": "npz"}.get(suffix) or ("dicom" if file_kind(path) == "dicom" else "")
        if not kind:
            raise DatasetError(f"Cannot tell the data source of {path}; expected a folder, a .csv, a .npz or a DICOM file.")
        return kind
    entries = [e for e in os.scandir(path) if not is_hidden(e.name)]
    manifests, folders = manifests_in(path), sorted(e.name for e in entries if e.is_dir())
    classy = _class_folders(manifests[0], folders) if len(manifests) == 1 and folders else []
    if len(manifests) > 1 or classy:
        raise DatasetError(
            f"{path} holds {len(manifests)} CSV manifest(s) {[m.name for m in manifests]}"
            + (f" and the class-like sub-folders {classy[:6]}" if classy else "") + "; medclass does not guess which "
            f"labels the images. Pass the CSV itself as the data path (e.g. {manifests[0]}) or choose the class "
            "folders with --source folders (data.source=folders).")
    if len(manifests) == 1:
        return "csv"
    if folders:
        return "folders"
    if any(e.is_file() and file_kind(Path(e.path)) == "dicom" for e in entries):
        return "dicom"
    raise DatasetError(
        f"{path} has no class subfolders and no DICOM files; expected ROOT/<class>/<image>, "
        "ROOT/train/<class>/<image>, a CSV manifest, a .npz file or DICOM files."
    )


def _class_folders(manifest: Path, folders: list[str]) -> list[str]:
    """The sub-folders that the manifest's cells do not point into (``images/x.png`` points into ``images``)."""
    sep = "\t" if manifest.suffix.lower() == ".tsv" else ","
    try:
        cells = pd.read_csv(manifest, dtype=str, keep_default_na=False, sep=sep).to_numpy().ravel()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return folders
    tops = {os.path.normpath(c.strip()).split(os.sep)[0] for c in cells if isinstance(c, str) and os.sep in c.strip()}
    return [f for f in folders if f not in tops]


def load_source(cfg: DataConfig, seed: int = 0) -> DataTable:
    """Build the table described by ``cfg`` (see :class:`~medclass.config.DataConfig`).

    Steps: resolve a registered data-set name (:mod:`~medclass.data.catalog`); detect and read the
    source (patient rule and sub-labels of ``data.preset``, if any); relabel from file names
    (``label_from_name``, offered by the preset); keep the rows of ``where``; rename/merge/drop
    labels with ``label_map`` (see :mod:`~medclass.data.filters`); keep only
    ``classes`` (in that order); blank the split unless ``keep_source_split``; take at most
    ``limit_per_class`` images per class as whole patients (seeded by ``seed``).

    >>> table = load_source(DataConfig(path="../shared/data/chest_xray", preset="kermany_chest_xray",
    ...                                label_from_name="chest_xray_3class"))
    >>> table.classes
    ['normal', 'bacterial', 'viral']
    """
    cfg = resolve_named(cfg)  # a registered data-set name (e.g. 'kermany_cxr') -> its local path
    source = check_choice("data.source", cfg.source, SOURCES)
    preset, relabel, rule = get_preset(cfg.preset), relabel_for(cfg), effective_patient_rule(cfg)
    patient_rule(rule)  # fails early on a bad regex
    kind = detect_source(cfg.path) if source == "auto" else source
    task = resolve_task(cfg)
    if task == MULTI and kind not in ("csv", "npz"):
        raise DatasetError(f"Multi-label data comes from a CSV manifest or a MedMNIST .npz; {cfg.path} is a {kind} source.")
    if kind == "folders":
        table = from_folders(cfg.path, rule, preset.sublabel if preset else None)
    elif kind == "csv":
        csv_path = Path(cfg.path)
        if csv_path.is_dir():
            found = manifests_in(csv_path)
            if len(found) != 1:
                raise DatasetError(f"{csv_path} holds {len(found)} CSV manifests {[f.name for f in found]}; point "
                                   "data.path at one of them.")
            csv_path = found[0]
        findings = FindingSpec.from_config(cfg) if task == MULTI else None
        table = from_csv(csv_path, cfg.path_column, cfg.label_column, cfg.patient_column, cfg.image_root,
                         cfg.path_template, cfg.class_names, patient_regex=rule, findings=findings,
                         uncertain=cfg.uncertain)
    elif kind == "npz":
        table = from_npz(cfg.path, cfg.class_names, cfg.task)
    else:
        table = from_dicom(cfg.path, rule)
    if relabel is not None:
        table = relabel(table)
    aliases = {cfg.label_column: "label", cfg.patient_column: "patient", cfg.path_column: "path"} if kind == "csv" else {}
    table = map_labels(filter_rows(table, cfg.where, aliases), cfg.label_map)
    if table.multi_label and task != MULTI and cfg.task == "single_label":
        raise DatasetError(f"{cfg.path} holds several findings per image but data.task=single_label.")
    if cfg.classes:
        table = keep_classes(table, cfg.classes)
    if not cfg.keep_source_split:
        table.frame["split"] = ""
    if cfg.limit_per_class > 0:
        table = limit_per_class(table, cfg.limit_per_class, seed)
    log.info("%s source %s: %d rows, classes %s, %d skipped", kind, cfg.path, len(table), table.classes, len(table.skipped))
    return table


def keep_classes(table: DataTable, classes: Sequence[str]) -> DataTable:
    """Only the rows of ``classes``, which become the class order; unknown names raise with a hint.

    Multi-label: every row stays, with only these findings (in this order)."""
    if table.multi_label:
        return DataTable(keep_findings(table.frame, table.classes, classes), list(classes), list(table.skipped),
                         table.source, table.root, MULTI)
    unknown = [c for c in classes if c not in table.classes]
    if unknown:
        raise DatasetError(
            f"data.classes {unknown} are not in {table.root}; its classes are {table.classes}."
            + did_you_mean(unknown[0], table.classes)
        )
    df = table.frame[table.frame["label"].isin(classes)]
    if len(df) < len(table):
        log.info("data.classes keeps %d of %d rows (classes %s)", len(df), len(table), list(classes))
    return DataTable(df.copy(), list(classes), list(table.skipped), table.source, table.root)


def limit_per_class(table: DataTable, limit: int, seed: int = 0) -> DataTable:
    """At most ``limit`` rows per class, taken as whole patients in a seeded order (never part of a patient).

    Rows without a patient count as their own patient. The same seed gives the same subset.
    Multi-label: at most ``limit`` rows per stratification key (a row's rarest positive finding, or none).
    """
    df = table.frame
    groups = patient_groups(df).to_numpy()
    labels = stratify_keys(label_matrix(df, table.classes), table.classes) if table.multi_label else df["label"].to_numpy()
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(df), dtype=bool)
    for cls in sorted(set(labels)) if table.multi_label else table.classes:
        in_class = labels == cls
        names, sizes = np.unique(groups[in_class], return_counts=True)
        chosen, total = [], 0
        for i in rng.permutation(len(names)):
            if total + sizes[i] <= limit:
                chosen.append(names[i])
                total += sizes[i]
        keep |= in_class & np.isin(groups, chosen)
    return table.with_frame(df[keep])


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
        if path.is_file():
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


def _name_labels(labels: pd.Series, class_names: Sequence[str], where: str) -> tuple[pd.Series, list[str]]:
    """Map numeric labels to ``class_names``; return the labels and the class order."""
    class_names = [str(c) for c in class_names]
    if not class_names:
        return labels, _sorted_labels(labels)
    values = set(labels)
    if values <= set(class_names):
        return labels, class_names
    numbers = pd.to_numeric(labels, errors="coerce")
    if numbers.notna().all() and (numbers == numbers.round()).all() and numbers.between(0, len(class_names) - 1).all():
        return numbers.astype(int).map(dict(enumerate(class_names))), class_names
    raise DatasetError(
        f"Labels in {where} ({sorted(values)[:6]}) match neither the class_names {class_names} nor the indices "
        f"0..{len(class_names) - 1}; give one name per label index in data.class_names."
    )


def _sorted_labels(labels: pd.Series) -> list[str]:
    """Unique labels sorted; numerically when they are all integers ('2' before '10')."""
    values = sorted(set(labels))
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return values


def _split_value(value: str, where: str) -> str:
    if not value:
        return ""
    split = SPLIT_ALIASES.get(value.lower())
    if split is None:
        raise DatasetError(f"{where}: unknown split {value!r}; expected train, val (valid, validation), test or empty.")
    return split


def _existing_dir(root: str | Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"Data folder {root} does not exist (data.path).")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is a file; a folders source needs a folder of class folders.")
    return root


def _subdirs(folder: Path, skipped: list[dict]) -> list[Path]:
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir():
            if is_hidden(entry.name):
                skip(skipped, entry.path, "hidden folder")
            else:
                out.append(Path(entry.path))
    return out


def _skip_loose_files(folder: Path, skipped: list[dict], reason: str) -> None:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            skip(skipped, entry.path, "hidden or system file" if is_hidden(entry.name) else reason)


def _skipped_summary(skipped: list[dict], n: int = 3) -> str:
    if not skipped:
        return ""
    shown = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:n])
    more = f" (and {len(skipped) - n} more)" if len(skipped) > n else ""
    return f" Skipped {len(skipped)} file(s): {shown}{more}."
