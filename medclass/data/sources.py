"""Data sources: turn a folder, CSV manifest, MedMNIST ``.npz`` or DICOM tree into a :class:`DataTable`.

Layouts:

* **folders** — ``ROOT/<class>/...`` or the Kaggle layout ``ROOT/{train,val,test}/<class>/...``
  (``valid``/``validation`` read as ``val``). Files are found by extension, never decoded, and
  class folders are searched recursively. DICOM files are rows too (one per frame).
* **csv** — one row per image: a path (or id) column, a label column, optional patient and
  ``split`` columns; other columns are kept (:func:`from_csv`, in :mod:`medclass.data._csv`).
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
from ._csv import from_csv
from ._scan import (MISSING_LABELS, SPLIT_ALIASES, file_kind, file_rows, is_hidden, name_labels, skip, skipped_summary,
                    sorted_labels, walk_files)
from .io import SUPPORTED_EXTENSIONS
from .filters import filter_rows, map_labels
from .multilabel import MULTI, FindingSpec, keep_findings, label_matrix, resolve_task, stratify_keys, with_findings
from .patients import fill_from_scheme, patient_rule
from .presets import effective_patient_rule, get_preset, relabel_for
from .splits import patient_groups
from .table import DataTable

log = logging.getLogger(__name__)

SOURCES = choices(Source)
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
        found = [r for path, kind in walk_files(class_dir, skipped, series=True)
                 for r in file_rows(path, kind, class_dir.name, split, patient_of, skipped)]
        if not found:
            log.warning("class folder %s holds no images", class_dir)
        rows += found
    if not rows:
        raise DatasetError(
            f"No images found under {root}; expected ROOT/<class>/<image> or ROOT/train/<class>/<image> "
            f"with extensions {', '.join(SUPPORTED_EXTENSIONS)}." + skipped_summary(skipped)
        )
    frame = pd.DataFrame(rows)
    sublabels = frame["path"].map(lambda p: sublabel(os.path.basename(p))) if sublabel else None
    if sublabels is not None and (sublabels != "").any():
        frame["sublabel"] = sublabels
    return DataTable(frame, sorted_labels(frame["label"]), skipped, "folders", str(root))


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
                           + skipped_summary(skipped))
    finding_cols = [c for c in frame.columns if c.startswith("#")]
    if finding_cols:
        names = [str(c) for c in class_names] or [f"finding_{i}" for i in range(len(finding_cols))]
        if len(names) != len(finding_cols):
            raise DatasetError(f"{path}: {len(finding_cols)} findings per image but {len(names)} data.class_names; give "
                               "one name per label column.")
        matrix = frame[finding_cols].to_numpy(dtype=np.float32)
        return DataTable(with_findings(frame.drop(columns=finding_cols), names, matrix), names, [], "npz", str(path), MULTI)
    frame["label"], classes = name_labels(frame["label"], class_names, str(path))
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
        raise DatasetError(f"No readable DICOM files found in {root}." + skipped_summary(skipped))
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
                         uncertain=cfg.uncertain, mask_column=cfg.mask_column)
    elif kind == "npz":
        table = from_npz(cfg.path, cfg.class_names, cfg.task)
    else:
        table = from_dicom(cfg.path, rule)
    table = fill_from_scheme(table, cfg)
    if relabel is not None:
        table = relabel(table)
    aliases = {cfg.label_column: "label", cfg.patient_column: "patient", cfg.path_column: "path"} if kind == "csv" else {}
    table = map_labels(filter_rows(table, cfg.where, aliases), cfg.label_map)
    if table.multi_label and task != MULTI and cfg.task == "single_label":
        raise DatasetError(f"{cfg.path} holds several findings per image but data.task=single_label.")
    if cfg.classes:
        table = keep_classes(table, cfg.classes)
    if cfg.positive:
        table = with_positive(table, cfg.positive)
    if not cfg.keep_source_split:
        table.frame["split"] = ""
    if cfg.limit_per_class > 0:
        table = limit_per_class(table, cfg.limit_per_class, seed)
    table.spatial_dims  # noqa: B018 (refuses a table mixing volumes and 2-D images, naming one of each)
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


def with_positive(table: DataTable, positive: str) -> DataTable:
    """A two-class table with ``positive`` as its positive (second) class; any other table raises.

    >>> with_positive(DataTable(pd.DataFrame({"path": ["a", "b"], "label": ["covid", "non_covid"]}),
    ...                         ["covid", "non_covid"]), "covid").classes
    ['non_covid', 'covid']
    """
    if table.multi_label or len(table.classes) != 2:
        kind = "multi-label findings" if table.multi_label else f"{len(table.classes)} classes"
        raise DatasetError(f"data.positive={positive!r} (--positive) is for two classes; {table.root or 'the data'} has "
                           f"{kind} {table.classes}. Leave it out, or keep two classes with data.classes / --label-map.")
    if positive not in table.classes:
        raise DatasetError(f"data.positive={positive!r} (--positive) is not a class of {table.root or 'the data'}; its "
                           f"classes are {table.classes}." + did_you_mean(positive, table.classes))
    other = next(c for c in table.classes if c != positive)
    return DataTable(table.frame, [other, positive], list(table.skipped), table.source, table.root, table.task)


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
