"""Input handling for the predictor: in-memory images checked against the pixel convention, and
the files (one row per image or DICOM frame) behind the paths a user gives, found one at a time.

In-memory images must follow the convention of :func:`medclass.data.io.read_image`: float
``(H, W)`` or ``(H, W, C)`` with ``C`` in {1, 3} and values in [0, 1]. Two conversions are
unambiguous and done silently: ``uint8`` arrays are divided by 255 and ``uint16`` arrays by
65535 (PIL images likewise). Everything else that does not fit (floats outside [0, 1], other
integer types, channels-first or RGBA arrays) raises a ``ValueError`` that says what was
expected, what came, and how to convert it. Grayscale and RGB both fit any model: the transform
converts channels the way training did.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ..config import DataConfig
from ..data._scan import file_kind, file_rows, iter_manifest, skip, unsupported_reason, walk_files
from ..data.filters import DROP, map_label_values, where_mask
from ..data.patients import patient_rule
from ..data.transforms import check_image
from ..errors import DatasetError

_PIL_KEEP_MODES = ("L", "RGB", "I;16")
_INTEGER_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_MANIFEST_SUFFIXES = (".csv", ".tsv")
_PATH_COLUMNS = ("path", "file", "filename", "image")
MANIFEST_CHUNK_ROWS = 65536  # manifest rows read at a time


def to_unit_image(x: Any, where: str = "image") -> np.ndarray:
    """Convert one in-memory image to float32 ``(H, W, C)`` and check it against the pixel convention.

    Accepts a PIL image or an array-like. ``uint8`` is divided by 255, ``uint16`` by 65535; floats
    must already lie in [0, 1] (checked by :func:`medclass.data.transforms.check_image`).

    >>> to_unit_image(np.full((4, 4), 255, np.uint8)).max()
    1.0
    """
    if isinstance(x, Image.Image):
        x = np.asarray(x if x.mode in _PIL_KEEP_MODES else x.convert("RGB"))
    arr = np.asarray(x)
    if arr.dtype in _INTEGER_SCALE:
        arr = arr.astype(np.float32) / _INTEGER_SCALE[arr.dtype]
    elif arr.dtype.kind != "f":
        raise ValueError(
            f"{where}: pixel type {arr.dtype} is ambiguous; the checkpoint expects float pixels in [0, 1] "
            "(uint8 and uint16 are scaled automatically). Scale by your bit depth, e.g. arr / 4095 for 12-bit."
        )
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3):
        if arr.shape[0] in (1, 3):
            hint = "it looks channels-first (C, H, W): pass arr.transpose(1, 2, 0)"
        elif arr.shape[-1] == 4:
            hint = "drop the alpha channel with arr[..., :3]"
        else:
            hint = "give 1 (grayscale) or 3 (RGB) channels"
        raise ValueError(f"{where}: expected channels-last (H, W, C) with C = 1 or 3, got shape {arr.shape}; {hint}.")
    if arr.size == 0:
        raise ValueError(f"{where}: empty image (shape {arr.shape}).")
    check_image(arr, where)
    return arr if arr.ndim == 3 else arr[..., None]


def image_batch(images_or_paths: Any) -> list[Any]:
    """The items of a predict call: one path/image becomes a list of one; a 4-D array is a batch.

    >>> len(image_batch(np.zeros((2, 8, 8, 1), np.float32)))
    2
    """
    if isinstance(images_or_paths, (str, Path, Image.Image)):
        return [images_or_paths]
    if isinstance(images_or_paths, np.ndarray) or hasattr(images_or_paths, "__array__"):
        arr = np.asarray(images_or_paths)
        return list(arr) if arr.ndim == 4 else [arr]
    return list(images_or_paths)


def iter_inputs(inputs: Iterable[str | Path], patient_regex: str = "none", manifest: DataConfig | None = None,
                volumes: bool = False) -> Iterator[dict]:
    """Rows (path, frame, patient, metadata...) for files, folders (recursive) and CSV/TSV manifests, one at a
    time: folders are walked and manifests read :data:`MANIFEST_CHUNK_ROWS` rows at a time, so a million files are
    never listed in memory.

    A DICOM file gives one row per frame (patient = PatientID); other files take the patient from
    their name with ``patient_regex`` (see :func:`~medclass.data.patients.patient_rule`). Anything
    that cannot be a row (missing file, unsupported extension, DICOM without pixels...) is a row
    ``{path, frame, reason}`` where it is met. ``manifest`` holds the data settings a CSV is
    read with (image root, path/patient/label columns, ``where``, ``label_map``), as in training;
    a manifest's other columns are kept as metadata (:func:`metadata_columns` names them up front).

    ``volumes`` (a volume model): a folder holding DICOM files is a DICOM series (one row per series,
    grouped by SeriesInstanceUID), other folders give their NIfTI files.

    >>> next(iter_inputs(["../shared/data/chest_xray/NORMAL"], "chest_xray"))["path"]  # doctest: +SKIP
    """
    patient_of = patient_rule(patient_regex)
    settings = manifest or DataConfig()
    skipped: list[dict] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir() and volumes and _holds_dicom(path):
            found: Iterable[dict] = file_rows(path, "series", "", "", patient_of, skipped)
        elif path.is_dir():
            found = (row for file, kind in walk_files(path, skipped)
                     for row in file_rows(file, kind, "", "", patient_of, skipped))
        elif path.is_file() and path.suffix.lower() in _MANIFEST_SUFFIXES:
            found = _manifest_rows(path, patient_of, skipped, settings)
        else:
            found = _file_rows(path, patient_of, skipped)
        for row in found:
            yield from _problems(skipped)  # met while finding this row (a hidden file, an unreadable header)
            yield {"path": row["path"], "frame": int(row["frame"]), "patient": row["patient"], **row.get("metadata", {})}
        yield from _problems(skipped)


def _problems(skipped: list[dict]) -> Iterator[dict]:
    while skipped:
        s = skipped.pop(0)
        yield {"path": s["path"], "frame": int(s.get("frame", -1)), "patient": "", "reason": s["reason"]}


def metadata_columns(inputs: Iterable[str | Path], manifest: DataConfig | None = None) -> list[str]:
    """The metadata columns :func:`iter_inputs` gives: every manifest's columns but its path, patient and frame
    columns (read from the header lines only)."""
    settings = manifest or DataConfig()
    columns: dict[str, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_file() and path.suffix.lower() in _MANIFEST_SUFFIXES:
            header = next(iter_manifest(path, chunk_rows=1)).columns
            column = _path_column(header, settings, path)
            columns.update(dict.fromkeys(c for c in header if c not in (column, settings.patient_column or "patient",
                                                                        "frame")))
    return list(columns)


def _holds_dicom(folder: Path) -> bool:
    """Whether any file under ``folder`` is a DICOM file (stops at the first)."""
    return any(kind == "dicom" for _, kind in walk_files(folder, []))


def _file_rows(path: Path, patient_of: Callable[[str], str], skipped: list[dict]) -> list[dict]:
    if not path.exists():
        skip(skipped, path, "file does not exist")
        return []
    kind = file_kind(path)
    if not kind:
        skip(skipped, path, unsupported_reason(path))
        return []
    return file_rows(path, kind, "", "", patient_of, skipped)


def _path_column(columns: Iterable[str], settings: DataConfig, csv_path: Path) -> str:
    """The manifest's path column (``settings.path_column``, by default the first of path/file/filename/image);
    checks the patient column too."""
    columns = list(columns)
    wanted = [settings.path_column] if settings.path_column != "path" else list(_PATH_COLUMNS)
    column = next((c for c in wanted if c in columns), None)
    patient_column = settings.patient_column or "patient"
    if column is None or (settings.patient_column and patient_column not in columns):
        missing = wanted if column is None else [patient_column]
        raise DatasetError(f"Manifest {csv_path} has no column {' / '.join(missing)}; its columns are "
                           f"{columns}. Pick them with --path-column / --patient-column.")
    return column


def _manifest_rows(csv_path: Path, patient_of: Callable[[str], str], skipped: list[dict],
                   settings: DataConfig) -> Iterator[dict]:
    """Rows of a manifest, chunk by chunk: ``settings.path_column`` relative to ``settings.image_root`` or the CSV's
    folder; ``settings.where`` keeps rows and ``settings.label_map`` renames the label column when there is one; an
    optional ``frame`` column picks one DICOM frame; the patient comes from ``settings.patient_column`` (default
    ``patient``); every other column is carried through as metadata."""
    root = Path(settings.image_root) if settings.image_root else csv_path.parent
    patient_column = settings.patient_column or "patient"
    labels: set[str] = set()  # every label seen: a label_map naming none of them is refused at the end
    mapping = dict(settings.label_map)
    for df in iter_manifest(csv_path, MANIFEST_CHUNK_ROWS):
        column = _path_column(df.columns, settings, csv_path)
        if settings.where:
            df = df[where_mask(df, settings.where).to_numpy()]
        if mapping and settings.label_column in df.columns:
            labels.update(df[settings.label_column].unique())
            mapped = df[settings.label_column].map(mapping).fillna(df[settings.label_column])
            df = df.assign(**{settings.label_column: mapped})
            df = df[df[settings.label_column] != DROP]
        metadata = [c for c in df.columns if c not in (column, patient_column, "frame")]
        for line, rec in zip(df.index + 2, df.to_dict("records")):
            path = Path(rec[column].strip())
            found = _file_rows(path if path.is_absolute() else root / path, patient_of, skipped)
            frame = str(rec.get("frame", "")).strip()
            if frame not in ("", "-1"):
                found = [r for r in found if str(r["frame"]) == frame]
                if not found:
                    skip(skipped, f"{csv_path}:{line}", f"frame {frame!r} of {path} is not a frame of that file")
            patient = str(rec.get(patient_column, "")).strip()
            yield from ({**r, "patient": patient or r["patient"], "metadata": {c: rec[c] for c in metadata}}
                        for r in found)
    if labels:
        map_label_values(pd.Series(sorted(labels)), mapping, str(csv_path))  # raises for a label it never saw
