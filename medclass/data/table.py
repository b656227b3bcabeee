"""The dataset contract: one row per image, samples are dicts.

A :class:`DataTable` wraps a pandas DataFrame with at least these columns:

========  =====  ==============================================================
column    type   meaning
========  =====  ==============================================================
path      str    image file (absolute or relative to the working directory)
label     str    class name, one of ``classes``
patient   str    patient id ('' when unknown)
split     str    'train' | 'val' | 'test' | '' (not assigned yet)
frame     int    frame of a multi-frame DICOM or index in a .npz array; -1 otherwise
========  =====  ==============================================================

A multi-label table (``task="multi_label"``, :mod:`~medclass.data.multilabel`) has ``classes`` =
the findings, one float column ``label_<finding>`` each (1, 0 or NaN = masked) and a readable
``label`` (the positive findings joined by ``|``); :attr:`DataTable.targets` is then ``(n, K)``.

Any extra column (``sublabel``, ``fold``, ``sha256``...) is kept. ``classes`` fixes the order of
class indices; it is stable (sorted names unless the user gives an order). ``skipped`` lists every
file that was left out, each as ``{"path": ..., "reason": ...}``: nothing is dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DatasetError

REQUIRED_COLUMNS = ("path", "label", "patient", "split", "frame")
SPLITS = ("train", "val", "test")
INTERNAL_COLUMNS = ("fold",)  # columns medclass adds itself (not a manifest's metadata)


@dataclass
class DataTable:
    """Rows of images plus the ordered class names and the list of skipped files."""

    frame: pd.DataFrame
    classes: list[str]
    skipped: list[dict] = field(default_factory=list)
    source: str = ""  # folders | csv | npz | dicom
    root: str = ""  # what the user pointed at
    task: str = "single_label"  # single_label | multi_label

    def __post_init__(self) -> None:
        df = self.frame
        for col, default in (("patient", ""), ("split", ""), ("frame", -1)):
            if col not in df.columns:
                df[col] = default
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise DatasetError(f"Data table from {self.root or 'memory'} lacks columns {missing}; expected {list(REQUIRED_COLUMNS)}.")
        df["path"] = df["path"].astype(str)
        df["label"] = df["label"].astype(str)
        df["patient"] = df["patient"].fillna("").astype(str)
        df["split"] = df["split"].fillna("").astype(str)
        df["frame"] = df["frame"].fillna(-1).astype(int)
        if self.multi_label:
            from .multilabel import label_matrix

            label_matrix(df, self.classes)  # raises when a finding's column is missing
        unknown = [] if self.multi_label else sorted(set(df["label"].unique()) - set(self.classes))
        if unknown:
            raise DatasetError(
                f"Labels {unknown[:5]} in {self.root or 'the table'} are not among the classes {self.classes}; "
                "give the full class list or drop those rows."
            )
        bad_splits = sorted(set(df["split"].unique()) - set(SPLITS) - {""})
        if bad_splits:
            raise DatasetError(f"Unknown split names {bad_splits} in {self.root or 'the table'}; expected {SPLITS} or ''.")
        self.frame = df.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def multi_label(self) -> bool:
        """Several findings per image (``task == "multi_label"``)."""
        return self.task == "multi_label"

    @property
    def targets(self) -> np.ndarray:
        """What the model learns: class indices ``(n,)`` int64, or the multi-label ``(n, K)`` float32 matrix (NaN = masked)."""
        if self.multi_label:
            from .multilabel import label_matrix

            return label_matrix(self.frame, self.classes)
        return self.labels

    @property
    def labels(self) -> np.ndarray:
        """Class indices (int64) of every row, in ``classes`` order (single-label tables)."""
        if self.multi_label:
            raise DatasetError("A multi-label table has no class index per row; use table.targets (the (n, K) matrix).")
        index = {c: i for i, c in enumerate(self.classes)}
        return self.frame["label"].map(index).to_numpy(dtype=np.int64)

    @property
    def positive(self) -> str | None:
        """The positive class of a two-class table (the second of ``classes``); None otherwise."""
        return self.classes[1] if len(self.classes) == 2 and not self.multi_label else None

    @property
    def spatial_dims(self) -> int:
        """3 when every row is a volume (NIfTI, DICOM series folder, 3-D ``.npz`` item), 2 when none is.

        A table mixing both is refused: one model takes one kind of input.

        >>> DataTable(pd.DataFrame({"path": ["a.nii.gz"], "label": ["x"]}), ["x"]).spatial_dims
        3
        """
        from .volumes import volume_mask

        mask = volume_mask(self.frame["path"])
        if mask.all() and len(mask):
            return 3
        if not mask.any():
            return 2
        raise DatasetError(f"{self.root or 'The table'} mixes {int(mask.sum())} volumes (e.g. "
                           f"{self.frame['path'][mask].iloc[0]}) and {int((~mask).sum())} 2-D images (e.g. "
                           f"{self.frame['path'][~mask].iloc[0]}); one model takes one kind: keep one with data.where.")

    def subset(self, mask_or_split: str | np.ndarray | pd.Series) -> "DataTable":
        """Rows of one split (``'train'``...) or of a boolean mask; classes and skips are kept."""
        if isinstance(mask_or_split, str):
            mask = self.frame["split"] == mask_or_split
        else:
            mask = np.asarray(mask_or_split, dtype=bool)
        return DataTable(self.frame[mask].copy(), list(self.classes), list(self.skipped), self.source, self.root, self.task)

    def with_frame(self, frame: pd.DataFrame) -> "DataTable":
        """A table with the same classes/skips/source over another DataFrame."""
        return DataTable(frame.copy(), list(self.classes), list(self.skipped), self.source, self.root, self.task)

    def metadata_columns(self) -> list[str]:
        """The extra columns (a manifest's sex, age, view, site...; ``sublabel``), in table order.

        >>> DataTable(pd.DataFrame({"path": ["a.png"], "label": ["x"], "age": ["41"]}), ["x"]).metadata_columns()
        ['age']
        """
        own = {f"label_{c}" for c in self.classes} if self.multi_label else set()
        return [c for c in self.frame.columns if c not in REQUIRED_COLUMNS and c not in INTERNAL_COLUMNS and c not in own]

    def counts(self) -> pd.DataFrame:
        """Images per split and class (a small DataFrame for reports)."""
        return self.frame.groupby(["split", "label"]).size().unstack(fill_value=0)

    def to_csv(self, path: str | Path) -> None:
        """Write the table (e.g. ``split.csv`` next to a run) atomically."""
        from ..utils import atomic_write_text

        atomic_write_text(Path(path), self.frame.to_csv(index=False))

    @classmethod
    def from_csv(cls, path: str | Path, classes: list[str]) -> "DataTable":
        """Read a table written by :meth:`to_csv` back (e.g. a run's ``split.csv``).

        It is multi-label when it holds a ``label_<class>`` column for every class."""
        df = pd.read_csv(path, dtype={"path": str, "label": str, "patient": str, "split": str}, keep_default_na=False)
        task = "multi_label" if all(f"label_{c}" in df.columns for c in classes) else "single_label"
        if task == "multi_label":  # blank finding cells are masked labels (NaN), not text
            for c in classes:
                df[f"label_{c}"] = pd.to_numeric(df[f"label_{c}"], errors="coerce")
        return cls(df, list(classes), source="csv", root=str(path), task=task)
