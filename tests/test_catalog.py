"""Data sets by name: the registry, the embedded sample and the resolution of names in load_source."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from medclass.config import DEFAULT_DATA, DataConfig
from medclass.data import load_source
from medclass.data.catalog import DATASETS, KERMANY, get_dataset, list_datasets, resolve_named, sample_path
from medclass.data.sources import from_folders
from medclass.errors import DatasetError


def test_the_default_data_is_the_embedded_sample() -> None:
    assert DataConfig().path == DEFAULT_DATA == "chest_xray_sample"
    assert resolve_named(DataConfig()).path == str(sample_path())
    assert sample_path().is_dir() and sample_path().parent.parent == Path(__import__("medclass").__file__).parent


def test_sample_is_balanced_whole_patients_with_their_ids_and_small() -> None:
    table = load_source(DataConfig())  # the default config reads the sample through its name
    df = table.frame
    assert table.classes == ["NORMAL", "PNEUMONIA"] and len(df) == 600
    assert df["label"].value_counts().to_dict() == {"NORMAL": 300, "PNEUMONIA": 300}
    assert (df["patient"] != "").all() and df["patient"].nunique() == 400
    assert set(df.loc[df["label"] == "PNEUMONIA", "sublabel"]) == {"bacteria", "virus"}
    files = [p for p in sample_path().parent.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 3_000_000
    assert {"README.md", "LICENSE"} <= {p.name for p in files}
    assert "CC BY 4.0" in (sample_path().parent / "LICENSE").read_text()


def test_every_sample_file_is_shipped_as_package_data() -> None:
    """A non-editable install carries exactly what pyproject's package-data names: it must name every sample file."""
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["medclass"]
    shipped = {p for pattern in patterns for p in (root / "medclass").glob(pattern)}
    on_disk = {p for p in sample_path().parent.rglob("*") if p.is_file()}
    assert on_disk and on_disk == shipped


def test_sample_keeps_whole_patients_of_the_full_set(shared_data: Path) -> None:
    sample = from_folders(sample_path(), "chest_xray").frame  # the patient rule of the kermany_chest_xray preset
    full = from_folders(shared_data / "chest_xray", "chest_xray").frame
    of_those_patients = full[full["patient"].isin(set(sample["patient"]))]
    assert sorted(map(lambda p: Path(p).name, of_those_patients["path"])) == sorted(map(lambda p: Path(p).name, sample["path"]))


def test_registry_names_checksums_and_citations() -> None:
    names = [d.name for d in list_datasets()]
    assert names[:2] == ["chest_xray_sample", "kermany_cxr"] and len(names) == len(set(names))
    for flag in ("pneumoniamnist", "chestmnist", "organamnist"):
        for size in (28, 64, 128, 224):
            d = get_dataset(f"{flag}_{size}")
            assert re.fullmatch(r"md5:[0-9a-f]{32}", d.known_hash or ""), d.name
            assert d.url.startswith("https://zenodo.org/records/10519652/files/") and d.file in d.url
            assert "MedMNIST" in d.citation and d.licence
    assert get_dataset("pneumoniamnist_64").class_names == ("normal", "pneumonia")
    assert get_dataset("pneumoniamnist_28").file == "pneumoniamnist.npz"
    assert KERMANY.known_hash is None and "no checksum" in KERMANY.note and "rscbjbr9sj.2" in KERMANY.citation
    assert KERMANY.archive == "zip" and "data.mendeley.com" in KERMANY.url


def test_unknown_name_gets_a_suggestion() -> None:
    with pytest.raises(DatasetError, match="Did you mean 'kermany_cxr'"):
        get_dataset("kermany")
    with pytest.raises(FileNotFoundError, match="does not exist.*Did you mean 'pneumoniamnist_64'"):
        load_source(DataConfig(path="pneumoniamnist64"))


def test_an_existing_path_wins_over_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kermany_cxr").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_named(DataConfig(path="kermany_cxr")).path == "kermany_cxr"


def test_multi_label_sets_are_read_as_multi_label_with_their_finding_names(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    """ChestMNIST's (n, 14) labels: a multi-label table whose findings are the catalog's names (was refused)."""
    from medclass.data import download

    rng = np.random.default_rng(0)
    arrays = {f"{s}_{k}": (rng.integers(0, 256, (6, 28, 28), dtype=np.uint8) if k == "images"
                           else rng.integers(0, 2, (6, 14), dtype=np.uint8))
              for s in ("train", "val", "test") for k in ("images", "labels")}
    np.savez(tmp_path / "chestmnist_64.npz", **arrays)
    monkeypatch.setattr(download, "fetch", lambda ds, progress=True: tmp_path / "chestmnist_64.npz")
    table = load_source(DataConfig(path="chestmnist_64"))
    assert DATASETS["chestmnist_64"].multi_label and table.multi_label
    assert table.classes == list(DATASETS["chestmnist_64"].class_names) and len(table.classes) == 14
    assert table.targets.shape == (18, 14)
