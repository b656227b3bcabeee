"""File scanning shared by the data sources: which files are images, the rows one file gives, and how
labels are read (missing-label spellings, class order, numeric labels named).

Nothing here decodes pixels: image files are recognised by extension, DICOM files by extension or
the ``DICM`` magic (files without an extension), and a DICOM header is read only to expand frames
and find the PatientID.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from ..errors import DatasetError, ImageReadError
from .dicom import DICOM_EXTENSIONS, NO_PIXELS, dicom_header, is_dicom
from .io import IMAGE_EXTENSIONS
from .volumes.read import NIFTI_EXTENSIONS

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
_SYSTEM_FILES = {"thumbs.db", "desktop.ini", "__macosx"}
# label cells that mean "no label" (compared case-insensitively): pandas/numpy NaN, R's NA, Excel's #N/A, SQL NULL
MISSING_LABELS = frozenset({"", "nan", "-nan", "na", "n/a", "#n/a", "<na>", "null"})


def read_manifest(csv_path: Path) -> pd.DataFrame:
    """A CSV (or ``.tsv``) manifest with every cell as text, no NA conversion, header names stripped.

    A UTF-8 byte-order mark (Excel's "CSV UTF-8") is dropped; an empty, binary or non-UTF-8 file
    and a malformed table raise :class:`DatasetError` naming the file.
    """
    return next(iter_manifest(csv_path, chunk_rows=None))


def iter_manifest(csv_path: Path, chunk_rows: int | None = 65536) -> Iterator[pd.DataFrame]:
    """The rows of a manifest read as :func:`read_manifest` reads them, ``chunk_rows`` at a time (``None`` = one
    table), so that a manifest of millions of rows is never whole in memory. Each chunk keeps its file line
    numbers minus 2 as its index (0 = the first row under the header)."""
    with open(csv_path, "rb") as file:
        head = file.read(8192)
    if b"\x00" in head:
        raise DatasetError(f"{csv_path} is a binary file, not a CSV text table; a manifest has a header row "
                           "(e.g. path,label) and one row per image.")
    try:
        chunks = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig",
                             sep="\t" if csv_path.suffix.lower() == ".tsv" else ",", chunksize=chunk_rows)
        for df in [chunks] if chunk_rows is None else chunks:
            df.columns = [str(c).strip() for c in df.columns]
            yield df
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{csv_path} is empty; a manifest has a header row (e.g. path,label) and one row per "
                           "image.") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{csv_path} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at offset "
                           f"{e.start}); save it as UTF-8 (e.g. Excel's 'CSV UTF-8').") from None
    except pd.errors.ParserError as e:
        raise DatasetError(f"{csv_path} is not a well-formed CSV table: {str(e).strip()}") from None


def skip(skipped: list[dict], path: str | Path, reason: str) -> None:
    """Record a file (or folder) left out, with the reason."""
    skipped.append({"path": str(path), "reason": reason})


def is_hidden(name: str) -> bool:
    """Hidden or system entries (``.DS_Store``, ``Thumbs.db``, ``__MACOSX``...)."""
    return name.startswith(".") or name.lower() in _SYSTEM_FILES


def file_kind(path: Path) -> str:
    """``'image'``, ``'dicom'``, ``'volume'`` (NIfTI), ``'series'`` (a folder: a DICOM series) or ``''``
    (unsupported) from the extension; DICM magic when there is none."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if path.name.lower().endswith(NIFTI_EXTENSIONS):
        return "volume"
    if suffix in DICOM_EXTENSIONS:
        return "dicom"
    if path.is_dir():  # checked last: one stat, only for names no extension explains (series folders are often UIDs)
        return "series"
    if not suffix and is_dicom(path):
        return "dicom"
    return ""


def unsupported_reason(path: Path) -> str:
    suffix = path.suffix.lower() or "(none)"
    known = ", ".join(IMAGE_EXTENSIONS + DICOM_EXTENSIONS + NIFTI_EXTENSIONS)
    return f"unsupported file extension {suffix}; images must be one of {known}"


def walk_files(folder: Path, skipped: list[dict], series: bool = False) -> Iterator[tuple[Path, str]]:
    """Every supported file under ``folder`` (sorted, recursive) with its kind; the rest go to ``skipped``.

    ``series``: a sub-folder of ``folder`` whose DICOM files are slices of a cross-sectional series (see
    :func:`is_series_folder`) is one item of kind ``'series'`` (a volume), not one image per slice; the
    series reader groups the files under it (its sub-folders included) by SeriesInstanceUID.
    """
    for dirpath, dirnames, filenames in os.walk(folder):
        if series and dirpath != str(folder) and is_series_folder(Path(dirpath), filenames):
            dirnames[:] = []
            yield Path(dirpath), "series"
            continue
        for name in sorted(d for d in dirnames if is_hidden(d)):
            skip(skipped, Path(dirpath) / name, "hidden folder")
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if is_hidden(name):
                skip(skipped, path, "hidden or system file")
                continue
            kind = file_kind(path)
            if kind:
                yield path, kind
            else:
                skip(skipped, path, unsupported_reason(path))


def is_series_folder(folder: Path, names: Sequence[str]) -> bool:
    """Whether the first DICOM file among ``names`` (the files directly in ``folder``) is a slice of a CT, MR, PET...
    series: its header has ImagePositionPatient and ImageOrientationPatient (a radiograph or a secondary
    capture has neither). Only that one header is read (no pixels); an unreadable one gives False (each file
    is then reported on its own)."""
    from .dicom import read_dataset

    for name in sorted(names):
        path = folder / name
        if is_hidden(name) or file_kind(path) != "dicom":
            continue
        try:
            ds = read_dataset(path, stop_before_pixels=True, specific_tags=["ImagePositionPatient",
                                                                           "ImageOrientationPatient"])
        except ImageReadError:
            return False
        return bool(ds.get("ImagePositionPatient")) and bool(ds.get("ImageOrientationPatient"))
    return False


def file_rows(path: Path, kind: str, label: str, split: str, patient_of: Callable[[str], str],
              skipped: list[dict]) -> list[dict]:
    """Rows of one file: one for an image, one per frame for a DICOM (patient = PatientID, else the
    file-name rule). A DICOM whose header is unreadable, that has no pixels, or whose transfer syntax
    has no decoder here gives no row and a ``skipped`` entry."""
    base = {"path": os.path.abspath(path), "label": label, "split": split, "frame": -1}
    if kind == "series":
        return _series_rows(path, base, patient_of, skipped)
    if kind != "dicom":
        return [{**base, "patient": patient_of(path.name)}]
    try:
        header = dicom_header(path)
    except ImageReadError as e:
        skip(skipped, path, e.reason)
        return []
    if not header["has_pixels"]:
        skip(skipped, path, NO_PIXELS)
        return []
    if header["decoder_problem"]:
        skip(skipped, path, header["decoder_problem"])
        return []
    patient = header["patient"] or patient_of(path.name)
    n = header["n_frames"]
    frames = range(n) if n > 1 else [-1]
    return [{**base, "patient": patient, "frame": f} for f in frames]


def _series_rows(folder: Path, base: dict, patient_of: Callable[[str], str], skipped: list[dict]) -> list[dict]:
    """Rows of a DICOM series folder: one per series (``frame`` = its index when the folder holds several;
    patient = the series' PatientID, else the folder-name rule); a folder without DICOM files or with a
    broken series gives no row and a ``skipped`` entry."""
    from .volumes.series import series_header, series_patient, series_uids

    try:
        uids = series_uids(folder)
        frames = range(len(uids)) if len(uids) > 1 else [-1]
        for frame in frames:
            series_header(folder, frame)  # checked now: a missing slice is reported when the data is read
    except ImageReadError as e:
        skip(skipped, folder, e.reason)
        return []
    return [{**base, "patient": series_patient(folder, f) or patient_of(folder.name), "frame": f} for f in frames]


def name_labels(labels: pd.Series, class_names: Sequence[str], where: str) -> tuple[pd.Series, list[str]]:
    """Map numeric labels to ``class_names``; return the labels and the class order."""
    class_names = [str(c) for c in class_names]
    if not class_names:
        return labels, sorted_labels(labels)
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


def sorted_labels(labels: pd.Series) -> list[str]:
    """Unique labels sorted; numerically when they are all integers ('2' before '10')."""
    values = sorted(set(labels))
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return values


def skipped_summary(skipped: list[dict], n: int = 3) -> str:
    if not skipped:
        return ""
    shown = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:n])
    more = f" (and {len(skipped) - n} more)" if len(skipped) > n else ""
    return f" Skipped {len(skipped)} file(s): {shown}{more}."
