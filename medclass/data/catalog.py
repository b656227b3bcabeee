"""Data sets by name: the embedded sample and public sets downloaded on first use.

``--data NAME`` works wherever ``--data PATH`` does: :func:`resolve_named` (called by
:func:`~medclass.data.sources.load_source`, the one place a ``data.path`` becomes a table) turns a
registered name into a local path, downloading and checking it first when needed (see
:mod:`medclass.data.download`). An existing file or folder of the same name always wins.

* ``chest_xray_sample`` — the default data: 600 real paediatric chest X-rays shipped inside the
  package (``medclass/sample_data/chest_xray``), enough for ``medclass quickstart`` to run offline.
* ``kermany_cxr`` — the full Kermany et al. 2018 chest X-ray set from Mendeley Data.
* ``<flag>_<size>`` — the MedMNIST 2D ``.npz`` files from Zenodo, e.g. ``pneumoniamnist_64``.

Example:
    >>> [d.name for d in list_datasets()][:2]
    ['chest_xray_sample', 'kermany_cxr']
    >>> resolve_named(DataConfig(path="pneumoniamnist_64")).class_names   # doctest: +SKIP
    ['normal', 'pneumonia']
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import logging
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig
from ..errors import DatasetError, did_you_mean
from . import _medmnist

log = logging.getLogger(__name__)

KERMANY_CITATION = ("Kermany D, Zhang K, Goldbaum M. Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images "
                    "for Classification. Mendeley Data, V2 (2018). doi:10.17632/rscbjbr9sj.2; Kermany DS et al., "
                    "Cell 172(5):1122-1131 (2018)")


@dataclass(frozen=True)
class NamedDataset:
    """A data set medclass knows by name: where it comes from, how to check it, and how to cite it."""

    name: str  # the value of --data / data.path
    title: str  # what the images are
    url: str  # download address ('' = shipped inside the package)
    known_hash: str | None  # 'md5:...' or 'sha256:...' of the download; None = no published checksum
    file: str  # file name in the cache (or folder inside the package for embedded sets)
    images: int  # number of images
    size: str  # download size / pixel size, in words
    licence: str
    citation: str
    archive: str = ""  # '' | 'zip' | 'tar': unpacked once into the cache beside the download
    class_names: tuple[str, ...] = ()  # names of numeric labels (MedMNIST), in label order
    multi_label: bool = False  # labels are (n, K) 0/1 findings: read as multi-label data (class_names = the findings)
    note: str = ""  # anything a user must know (e.g. a missing checksum)
    preset: str = ""  # the data preset its files need (data.presets), applied when data.preset is ''

    @property
    def embedded(self) -> bool:
        """True for data shipped inside the package (no download)."""
        return not self.url


SAMPLE = NamedDataset(
    name="chest_xray_sample",
    title="600 paediatric chest X-rays (300 normal / 300 pneumonia, 400 whole patients), 96 px grayscale JPEG; "
          "shipped with medclass",
    url="", known_hash=None, file="chest_xray", images=600, size="1.75 MB, 96 px",
    licence="CC BY 4.0", citation=KERMANY_CITATION,
    note="a seeded subset of the Kermany et al. set, built by tools/make_sample.py (see sample_data/README.md)",
    preset="kermany_chest_xray",
)

KERMANY = NamedDataset(
    name="kermany_cxr",
    title="paediatric chest X-rays, normal vs pneumonia (Guangzhou Women and Children's Medical Center), "
          "train/test folders",
    url="https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/f12eaf6d-6023-432f-acc9-80c9d7393433/"
        "file_downloaded",
    known_hash=None, file="ChestXRay2017.zip", images=5856, size="about 1.2 GB zip, full-size JPEG",
    licence="CC BY 4.0", citation=KERMANY_CITATION, archive="zip",
    note="Mendeley Data publishes no checksum for ChestXRay2017.zip: the download is not verified; its SHA256 is "
         "logged so that you can compare copies",
    preset="kermany_chest_xray",
)


def _medmnist_sets() -> list[NamedDataset]:
    out = []
    for s in _medmnist.MEDMNIST:
        for size, md5 in zip(_medmnist.SIZES, s.md5):
            pixels = s.images * size * size * s.channels
            out.append(NamedDataset(
                name=f"{s.flag}_{size}", title=f"MedMNIST {s.flag}: {s.title}",
                url=f"{_medmnist.ZENODO_RECORD}/{_medmnist.file_name(s.flag, size)}?download=1",
                known_hash=f"md5:{md5}", file=_medmnist.file_name(s.flag, size), images=s.images,
                size=f"{size} px x {s.channels} ch, {pixels / 1e6:,.0f} MB of pixels", licence=s.licence,
                citation=_medmnist.CITATION, class_names=s.classes, multi_label=s.multi_label,
                note=f"multi-label: {len(s.classes)} findings per image (read as multi-label data)" if s.multi_label else "",
            ))
    return out


DATASETS: dict[str, NamedDataset] = {d.name: d for d in (SAMPLE, KERMANY, *_medmnist_sets())}


def list_datasets() -> list[NamedDataset]:
    """Every data set known by name, the embedded sample first."""
    return list(DATASETS.values())


def get_dataset(name: str) -> NamedDataset:
    """The data set registered as ``name``; an unknown name raises with near matches."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"No data set is registered as {name!r}; `medclass datasets` lists them."
                           + did_you_mean(name, DATASETS)) from None


def sample_path() -> Path:
    """The folder of the embedded chest X-ray sample inside the installed package."""
    return Path(str(importlib.resources.files("medclass") / "sample_data" / SAMPLE.file))


def dataset_path(name: str, progress: bool = True) -> Path:
    """A local path holding the data set ``name``, downloaded (and unpacked) into the cache on first use."""
    ds = get_dataset(name)
    if ds.embedded:
        return sample_path()
    from .download import fetch

    return fetch(ds, progress=progress)


def resolve_named(cfg: DataConfig) -> DataConfig:
    """``cfg`` with a registered data-set name in ``path`` replaced by its local path (and its class names).

    The data set's own preset (e.g. ``kermany_chest_xray``: patients from its file names) is applied
    when ``cfg.preset`` is empty.

    Paths that exist, and names that are not registered, are returned unchanged, so the usual
    "does not exist" errors stay (with a hint when the value looks like a misspelt name).
    """
    if Path(cfg.path).exists():
        return cfg
    if cfg.path not in DATASETS:
        hint = did_you_mean(cfg.path, DATASETS) if "/" not in cfg.path else ""
        if hint:
            raise FileNotFoundError(f"Data path {cfg.path} does not exist (data.path) and is not a registered data "
                                    f"set name.{hint} `medclass datasets` lists the names.")
        return cfg
    ds = DATASETS[cfg.path]
    local = dataset_path(ds.name)
    log.info("data set %s -> %s", ds.name, local)
    return dataclasses.replace(cfg, path=str(local), class_names=list(cfg.class_names or ds.class_names),
                               preset=cfg.preset or ds.preset)


__all__ = ["DATASETS", "NamedDataset", "dataset_path", "get_dataset", "list_datasets", "resolve_named", "sample_path"]
