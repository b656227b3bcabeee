"""Download a named data set once into the user cache: checksum, progress bar, resume, clear errors.

`pooch <https://www.fatiando.org/pooch>`_ does the work: it keeps one folder per data set in the
cache, checks the MD5/SHA256 of every download before the file takes its final name (a corrupt
download is deleted and reported, never used), retries failed attempts and unpacks archives once
(``<file>.unzip/``). :class:`ResumingDownloader` adds what pooch lacks: bytes of a broken download
are kept in ``<file>.part`` and the next attempt asks the server for the rest (HTTP Range).

The cache is ``$MEDCLASS_DATA_DIR`` when set, else the platform's user cache folder
(``~/.cache/medclass`` on Linux).

Example:
    >>> from medclass.data.catalog import get_dataset
    >>> fetch(get_dataset("pneumoniamnist_64"))            # doctest: +SKIP
    PosixPath('/home/me/.cache/medclass/pneumoniamnist_64/pneumoniamnist_64.npz')
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pooch
import requests
from tqdm.auto import tqdm

from ..errors import DatasetError

if TYPE_CHECKING:
    from .catalog import NamedDataset

log = logging.getLogger(__name__)

ENV_VAR = "MEDCLASS_DATA_DIR"
_UNPACKERS = {"zip": (pooch.Unzip, ".unzip"), "tar": (pooch.Untar, ".untar")}


def cache_dir() -> Path:
    """Where downloaded data sets live: ``$MEDCLASS_DATA_DIR`` or the user cache folder of the platform."""
    return Path(os.environ.get(ENV_VAR) or pooch.os_cache("medclass")).expanduser()


class ResumingDownloader:
    """A pooch downloader for HTTP(S) that continues a broken download instead of starting again.

    Bytes go to ``part`` and stay there when the connection breaks; the next call sends
    ``Range: bytes=<have>-`` and appends what comes back (206), or starts again when the server
    ignores ranges (200). At most one chunk (``chunk_size`` bytes) of a broken connection is lost.
    A complete download is moved to pooch's temporary file, which pooch then checks against the
    known hash.
    """

    def __init__(self, part: Path, progress: bool = True, timeout: float = 60.0, chunk_size: int = 1 << 16) -> None:
        self.part, self.progress, self.timeout, self.chunk_size = Path(part), progress, timeout, chunk_size

    def __call__(self, url: str, output_file: str, pooch_obj: Any = None) -> None:
        have = self.part.stat().st_size if self.part.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if have and r.status_code == 416:  # the kept part is not a prefix of this file: start again
                self.part.unlink()
                return self(url, output_file, pooch_obj)
            r.raise_for_status()
            if have and r.status_code != 206:
                log.info("%s ignores ranges; downloading it again from the start", url)
                have = 0
            elif have:
                log.info("Resuming %s at byte %d", url, have)
            total = have + int(r.headers.get("content-length") or 0)
            self.part.parent.mkdir(parents=True, exist_ok=True)
            with open(self.part, "ab" if have else "wb") as f, \
                    tqdm(total=total or None, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=self.part.name.removesuffix(".part"), disable=not self.progress) as bar:
                for chunk in r.iter_content(chunk_size=self.chunk_size):
                    f.write(chunk)
                    bar.update(len(chunk))
        shutil.move(self.part, output_file)


def fetch(ds: NamedDataset, progress: bool = True, retries: int = 2) -> Path:
    """The local path of ``ds``: downloaded, checked and (for archives) unpacked on first use, then reused.

    Raises :class:`DatasetError` naming the data set, its URL and the cache folder when the
    download fails (offline, server error) or its checksum does not match.
    """
    folder = cache_dir() / ds.name
    target = folder / ds.file
    fresh = not target.is_file()
    store = pooch.create(path=folder, base_url="", registry={ds.file: ds.known_hash},
                         urls={ds.file: ds.url}, retry_if_failed=retries)
    unpacker, suffix = _UNPACKERS.get(ds.archive, (None, ""))
    advice = (f"Downloads are kept in {folder} (set {ENV_VAR} to use another folder). Put {ds.file} there by hand, "
              "or run on a local copy with --data PATH (the embedded sample is --data chest_xray_sample).")
    try:
        store.fetch(ds.file, processor=unpacker() if unpacker else None,
                    downloader=ResumingDownloader(folder / f"{ds.file}.part", progress=progress))
    except (requests.ConnectionError, requests.Timeout) as e:
        raise DatasetError(f"Could not download data set {ds.name} from {ds.url}: no connection ({_reason(e)}). "
                           f"Are you offline? {advice}") from None
    except requests.RequestException as e:
        raise DatasetError(f"Could not download data set {ds.name} from {ds.url}: {_reason(e)}. {advice}") from None
    except ValueError as e:  # pooch: the checksum of the download does not match the registry
        raise DatasetError(f"The download of data set {ds.name} from {ds.url} is corrupt or has changed and was "
                           f"deleted: {e} Run the command again to retry. {advice}") from None
    except (zipfile.BadZipFile, tarfile.TarError) as e:  # only possible without a checksum: a damaged archive
        target.unlink(missing_ok=True)
        raise DatasetError(f"The download of data set {ds.name} from {ds.url} is not a readable {ds.archive} archive "
                           f"({e}) and was deleted. Run the command again to retry. {advice}") from None
    if fresh and ds.known_hash is None:
        log.warning("%s has no published checksum, so its download was not verified; SHA256 of %s: %s",
                    ds.name, target, pooch.file_hash(str(target)))
    return _data_root(Path(f"{target}{suffix}")) if suffix else target


def _data_root(folder: Path) -> Path:
    """The folder of an unpacked archive that holds the data: single wrapper folders (and macOS litter) skipped."""
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        folder = entries[0]


def _reason(e: Exception) -> str:
    """The innermost message of a requests error (e.g. '[Errno 111] Connection refused')."""
    found = re.search(r"\[Errno [^\]]+\][^'\")]*", str(e))
    return found.group(0) if found else str(e)


__all__ = ["ENV_VAR", "ResumingDownloader", "cache_dir", "fetch"]
