"""The output file of ``medclass predict --out``: written part by part, so that a million rows never sit in memory
and a killed run resumes where it stopped.

=============  =====================================================================================================
suffix         how it is written
=============  =====================================================================================================
``.csv``       appended part by part (flushed and fsync'ed); the file is readable while the run goes on
``.jsonl``     JSON Lines, one object per row, appended the same way
``.json``      one JSON array: rows go to ``<out>.partial`` (JSON Lines) and are turned into the array, line by
               line, when the run ends (for a million rows prefer ``.jsonl``, which needs no final pass)
``.parquet``   one Parquet file with one row group per part: parts go to ``<out>.parts/`` (each written
               atomically) and are joined by a ``pyarrow.parquet.ParquetWriter`` when the run ends; needs
               ``pyarrow`` (``pip install "medclass[parquet]"``)
=============  =====================================================================================================

Resume (:class:`PredictionFile` with ``resume=True``): the rows a killed run left are kept (a half-written last line
is cut off) and their ``(path, frame)`` keys are held as 64-bit hashes in one sorted array (8 bytes a row), read
back in chunks, so the predictor skips them.

Example:
    >>> with PredictionFile("out.parquet", resume=True) as out:                      # doctest: +SKIP
    ...     for part in predictor.iter_predict_files(["scans/"], skip=out.done):
    ...         out.write(part)
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd

from ..errors import ConfigError

SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
SUMMARY_COLUMNS = ("path", "frame", "predicted", "error", "ood")  # what a resumed run reads back of the old rows
READ_ROWS = 65536  # rows of the old output read back at a time


def row_keys(paths: Sequence[str] | pd.Series, frames: Sequence[int] | pd.Series) -> np.ndarray:
    """64-bit hashes of ``(path, frame)`` pairs (pandas' vectorised hash; a collision among a billion rows is
    unlikely, about 3 in 100)."""
    table = pd.DataFrame({"path": pd.Series(paths, dtype=object).astype(str),
                          "frame": pd.Series(frames).astype(np.int64).to_numpy()})
    return pd.util.hash_pandas_object(table, index=False).to_numpy(np.uint64)


class DoneRows:
    """The rows a killed run already wrote, as a sorted array of :func:`row_keys` (8 bytes a row)."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._keys = np.empty(0, np.uint64)

    def add(self, paths: Sequence[str] | pd.Series, frames: Sequence[int] | pd.Series) -> None:
        """Remember these rows as done."""
        self._chunks.append(row_keys(paths, frames))

    def _sorted(self) -> np.ndarray:
        if self._chunks:
            self._keys = np.unique(np.concatenate([self._keys, *self._chunks]))
            self._chunks = []
        return self._keys

    def __len__(self) -> int:
        return len(self._sorted())

    def mask(self, paths: Sequence[str], frames: Sequence[int]) -> np.ndarray:
        """True for each row already done."""
        keys = self._sorted()
        if not len(keys) or not len(paths):
            return np.zeros(len(paths), bool)
        wanted = row_keys(paths, frames)
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        return keys[at] == wanted


class PredictionFile:
    """Rows of predictions appended to ``path`` (.csv, .jsonl, .json or .parquet; see the module docstring).

    With ``resume`` the complete rows already there are kept and listed in :attr:`done` (their number in
    :attr:`resumed`; ``seen`` is called with each chunk of them, the columns of :data:`SUMMARY_COLUMNS`). Without it, an old file is replaced.
    :meth:`close` (or leaving the ``with`` block without an error) finishes the file; after an error or a kill the
    rows so far stay on disk for a later ``resume``.
    """

    def __init__(self, path: str | Path, resume: bool = False,
                 seen: Callable[[pd.DataFrame], object] | None = None) -> None:
        self.path = Path(path)
        self.format = self.path.suffix.lower().lstrip(".")
        if "." + self.format not in SUFFIXES:
            raise ConfigError(f"--out {self.path} must end in {', '.join(SUFFIXES)} (.jsonl or .parquet for millions "
                              "of rows).")
        if self.format == "parquet":
            _pyarrow()
        self.journal = {"json": self.path.with_name(self.path.name + ".partial"),
                        "parquet": self.path.with_name(self.path.name + ".parts")}.get(self.format, self.path)
        self.done = DoneRows()
        self._columns: list[str] | None = None
        self._schema = None
        self._parts = 0
        if resume:
            self._adopt_finished()
        else:
            self._remove(self.journal)
        self.resumed = self._journal_rows(seen)

    # -- resume -----------------------------------------------------------------------------------
    def _adopt_finished(self) -> None:
        """A finished .parquet becomes the first part again; a finished .json cannot be appended to."""
        if self.journal.exists() or not self.path.is_file() or self.journal == self.path:
            return
        if self.format == "parquet":
            self.journal.mkdir(parents=True)
            os.replace(self.path, self.journal / "part-000000.parquet")
        else:
            raise ConfigError(f"{self.path} is a finished JSON array and cannot be resumed; give a new --out, or use "
                              ".jsonl (JSON Lines) or .csv, which resume at any point.")

    def _journal_rows(self, seen: Callable[[pd.DataFrame], object] | None) -> int:
        """Keep the complete rows of the journal; remember their keys (and show each chunk to ``seen``); their count."""
        n = 0
        for chunk in self.previous():
            self.done.add(chunk["path"], chunk["frame"])
            if seen is not None:
                seen(chunk)
            n += len(chunk)
        return n

    def previous(self) -> Iterator[pd.DataFrame]:
        """The rows kept from a killed run (columns :data:`SUMMARY_COLUMNS`, ``ood`` nullable boolean), in chunks."""
        if self.format == "parquet":
            yield from self._previous_parquet()
            return
        if not self.journal.is_file() or not self.journal.stat().st_size:
            return
        _cut_half_line(self.journal)
        if self.format == "csv":
            self._columns = pd.read_csv(self.journal, nrows=0).columns.tolist()
            chunks = pd.read_csv(self.journal, usecols=list(SUMMARY_COLUMNS), dtype=str, keep_default_na=False,
                                 chunksize=READ_ROWS)
        else:
            chunks = pd.read_json(self.journal, lines=True, dtype={"path": str, "predicted": str, "error": str},
                                  chunksize=READ_ROWS)
        for chunk in chunks:
            yield _summary(chunk)

    def _previous_parquet(self) -> Iterator[pd.DataFrame]:
        import pyarrow.parquet as pq

        for file in self._part_files():
            parquet = pq.ParquetFile(file)
            self._schema = parquet.schema_arrow
            for batch in parquet.iter_batches(batch_size=READ_ROWS, columns=list(SUMMARY_COLUMNS)):
                yield _summary(batch.to_pandas())
            self._parts += 1

    def _part_files(self) -> list[Path]:
        return sorted(self.journal.glob("part-*.parquet")) if self.journal.is_dir() else []

    # -- writing ----------------------------------------------------------------------------------
    def write(self, table: pd.DataFrame) -> None:
        """Append ``table`` (one part of :meth:`~medclass.serving.predictor.Predictor.iter_predict_files`) to disk."""
        if self.format == "parquet":
            self._write_parquet(table)
            return
        if self._columns is not None and list(table.columns) != self._columns:
            raise ConfigError(f"{self.journal} has the columns {self._columns}, but this run gives {list(table.columns)} "
                              "(other inputs or another checkpoint); give a new --out instead of --resume.")
        fresh = not self.journal.is_file() or not self.journal.stat().st_size
        with open(self.journal, "a", newline="", encoding="utf-8") as f:
            if self.format == "csv":
                table.to_csv(f, header=fresh, index=False)
            else:
                text = table.to_json(orient="records", lines=True, force_ascii=False)
                f.write(text if text.endswith("\n") or not text else text + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._columns = list(table.columns)

    def _write_parquet(self, table: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(table) and self._parts:
            return
        arrow = pa.Table.from_pandas(table, schema=self._schema, preserve_index=False)
        self._schema = arrow.schema
        self.journal.mkdir(parents=True, exist_ok=True)
        name = self.journal / f"part-{self._parts:06d}.parquet"
        pq.write_table(arrow, name.with_suffix(".tmp"))
        os.replace(name.with_suffix(".tmp"), name)  # a kill leaves whole parts only
        self._parts += 1

    def close(self) -> None:
        """Finish the file: the JSON array or the one Parquet file from the journal (streamed, part by part)."""
        if self.format == "json":
            self._finish_json()
        elif self.format == "parquet":
            self._finish_parquet()

    def _finish_json(self) -> None:
        partial = self.path.with_name(self.path.name + ".tmp")
        with open(partial, "w", encoding="utf-8") as out:
            out.write("[")
            if self.journal.is_file():
                with open(self.journal, encoding="utf-8") as lines:
                    for i, line in enumerate(lines):
                        out.write(("\n" if i == 0 else ",\n") + line.rstrip("\n"))
            out.write("\n]\n")
        os.replace(partial, self.path)
        self.journal.unlink(missing_ok=True)

    def _finish_parquet(self) -> None:
        import pyarrow.parquet as pq

        parts = self._part_files()
        if not parts:
            return
        partial = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(partial, pq.read_schema(parts[0])) as writer:
            for part in parts:  # one part in memory at a time; each is one row group
                writer.write_table(pq.read_table(part))
        os.replace(partial, self.path)
        shutil.rmtree(self.journal)

    @staticmethod
    def _remove(journal: Path) -> None:
        if journal.is_dir():
            shutil.rmtree(journal)
        elif journal.is_file():
            journal.unlink()

    def __enter__(self) -> "PredictionFile":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()


def _cut_half_line(path: Path) -> None:
    """A kill can leave half a line at the end: cut back to the last complete one (reads the tail only)."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        start = end
        while start > 0:
            start = max(0, start - 65536)
            f.seek(start)
            tail = f.read(end - start)
            if b"\n" in tail:
                f.truncate(start + tail.rfind(b"\n") + 1)
                return
        f.truncate(0)


def _summary(chunk: pd.DataFrame) -> pd.DataFrame:
    text = chunk["ood"].astype(str).str.lower().to_numpy()
    ood = pd.array(text == "true", dtype="boolean")
    ood[~np.isin(text, ["true", "false"])] = pd.NA  # '', None, nan, <NA>: no OOD statistics
    return pd.DataFrame({"path": chunk["path"].astype(str).to_numpy(), "frame": chunk["frame"].astype(np.int64).to_numpy(),
                         "predicted": chunk["predicted"].fillna("").astype(str).to_numpy(),
                         "error": chunk["error"].fillna("").astype(str).to_numpy(), "ood": ood})


def _pyarrow() -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError('--out *.parquet needs pyarrow, which is not installed; install it with '
                          'pip install "medclass[parquet]", or write .csv or .jsonl.') from None


__all__ = ["DoneRows", "PredictionFile", "SUFFIXES", "SUMMARY_COLUMNS", "row_keys"]
