"""Exceptions raised by medclass and the "did you mean" helper used by every option check.

Every error says what was expected, what came, and how to fix it.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class MedclassError(Exception):
    """Base class of every medclass error."""


class DatasetError(MedclassError, ValueError):
    """A data source is malformed (missing column, no images, unknown class...)."""


class ImageReadError(MedclassError, OSError):
    """One image or DICOM file cannot be read; carries the path and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageTooLargeError(ImageReadError):
    """An image (or its header) claims more pixels than the reader's limit: a decompression bomb guard."""


class CheckpointError(MedclassError, ValueError):
    """A checkpoint is missing, foreign (pickled code) or inconsistent."""


class ConfigError(MedclassError, ValueError):
    """A configuration value is unknown or out of range."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a training run or cross-validation; carries the folder to resume.

    A ``KeyboardInterrupt``, so code that stops on Ctrl-C still does; the CLI prints the message and exits 130.
    """

    def __init__(self, run_dir: object) -> None:
        self.run_dir = str(run_dir)
        super().__init__(f"interrupted; resume with `medclass train --resume {self.run_dir}`")


class BusyError(MedclassError):
    """Another live process holds the lock of a folder this one would write (e.g. two trainings of one run)."""


class DiskFullError(MedclassError, OSError):
    """A write ran out of disk space (or quota); the file it would have replaced is unchanged."""


class LeakError(MedclassError):
    """The leak audit found patients or images shared between splits and the policy is 'fail'."""


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a hint such as ``" Did you mean 'resnet50'?"`` for ``value`` among ``choices`` ('' if none)."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value).lower(), [c.lower() for c in choices], n=n, cutoff=0.5)
    if not close:
        return ""
    by_lower = {c.lower(): c for c in choices}
    names = ", ".join(repr(by_lower[c]) for c in close)
    return f" Did you mean {names}?"


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; else raise :class:`ConfigError` with a hint.

    >>> check_choice("optimizer", "adamw", ["adamw", "sgd"])
    'adamw'
    """
    choices = list(choices)
    if value in choices:
        return value
    raise ConfigError(
        f"Unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}."
        + did_you_mean(value, choices)
    )
