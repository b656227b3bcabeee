"""data.where / data.label_map on a CSV with metadata, as every command reads it (issue 12 points 3 and 4)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass.config import DataConfig, RunConfig, apply_overrides
from medclass.data.filters import join_where, where_mask
from medclass.data.sources import detect_source, load_source
from medclass.errors import ConfigError, DatasetError


@pytest.fixture
def manifest(tmp_path):
    """labels.csv beside images/ (paths relative to the CSV's folder), three classes, metadata columns."""
    rows = []
    for i, (label, view, age) in enumerate([("covid", "PA", "40"), ("other_pneumonia", "AP", "70"), ("normal", "PA", "12"),
                                            ("normal", "LL", "50"), ("unknown", "PA", "33"), ("covid", "AP", "")]):
        name = f"images/{i:03d}.png"
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / name)
        rows.append({"filename": name, "finding": label, "patient_id": f"p{i // 2}", "view": view, "age": age, "sex": "F"})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path


def _cfg(root, **kw) -> DataConfig:
    return DataConfig(path=str(root / "labels.csv"), path_column="filename", label_column="finding",
                      patient_column="patient_id", **kw)


def test_label_map_merges_renames_and_drops(manifest):
    table = load_source(_cfg(manifest, label_map={"covid": "pneumonia", "other_pneumonia": "pneumonia", "unknown": "drop"}))
    assert table.classes == ["pneumonia", "normal"] or table.classes == ["normal", "pneumonia"]
    assert sorted(table.frame["label"]) == ["normal", "normal", "pneumonia", "pneumonia", "pneumonia"]
    assert {"view", "age", "sex"} <= set(table.metadata_columns())
    with pytest.raises(DatasetError, match=r"data.label_map names \['covdi'\].*Did you mean 'covid'"):
        load_source(_cfg(manifest, label_map={"covdi": "pneumonia"}))


def test_where_filters_on_metadata_with_quoted_or_bare_lists(manifest):
    quoted = load_source(_cfg(manifest, where="view in ['PA', 'AP']"))
    bare = load_source(_cfg(manifest, where="view in [PA, AP]"))
    assert quoted.frame["path"].tolist() == bare.frame["path"].tolist() and len(bare) == 5
    adults = load_source(_cfg(manifest, where="age >= 18"))  # numbers compare as numbers; the empty age is left out
    assert sorted(adults.frame["view"]) == ["AP", "LL", "PA", "PA"]
    with pytest.raises(DatasetError, match=r"no column 'veiw'.*Did you mean 'view'"):
        load_source(_cfg(manifest, where="veiw == 'PA'"))
    with pytest.raises(DatasetError, match="keeps none"):
        load_source(_cfg(manifest, where="age > 1000"))


def test_where_then_label_map_order_and_join():
    df = pd.DataFrame({"label": ["a", "b"], "view": ["PA", "LL"], "age": ["30", "9"]})
    assert where_mask(df, join_where(["view in [PA, AP]", "age >= 18"])).tolist() == [True, False]
    assert where_mask(df, "label == 'b'").tolist() == [False, True]
    with pytest.raises(DatasetError, match="not a valid pandas query"):
        where_mask(df, "view in in")


def test_label_map_from_the_cli_form_and_yaml_form():
    cfg = apply_overrides(RunConfig(), ["data.label_map=covid=pneumonia,unknown=drop"])
    assert cfg.data.label_map == {"covid": "pneumonia", "unknown": "drop"}
    assert RunConfig.from_dict({"data": {"label_map": {"a": "b"}}}).data.label_map == {"a": "b"}
    with pytest.raises(ConfigError, match="is not old=new"):
        apply_overrides(RunConfig(), ["data.label_map=covid"])


def test_paths_relative_to_the_csv_folder_or_image_root(manifest, tmp_path_factory):
    assert len(load_source(_cfg(manifest))) == 6
    elsewhere = tmp_path_factory.mktemp("csv") / "labels.csv"
    pd.read_csv(manifest / "labels.csv").to_csv(elsewhere, index=False)
    cfg = _cfg(manifest)
    cfg.path, cfg.image_root = str(elsewhere), str(manifest)
    assert len(load_source(cfg)) == 6


def test_folder_with_several_csvs_or_csv_plus_class_folders_is_refused(manifest):
    assert detect_source(manifest) == "csv"  # labels.csv beside the images/ folder its paths point into
    pd.DataFrame({"filename": ["images/000.png"], "extra": ["x"]}).to_csv(manifest / "metadata.csv", index=False)
    with pytest.raises(DatasetError, match=r"\['labels.csv', 'metadata.csv'\].*Pass the CSV itself"):
        detect_source(manifest)
    (manifest / "metadata.csv").unlink()
    (manifest / "NORMAL").mkdir()
    with pytest.raises(DatasetError, match=r"class-like sub-folders \['NORMAL'\].*--source folders"):
        detect_source(manifest)


def test_training_data_with_one_class_is_refused(manifest):
    from medclass.data.prepare import clean_data

    with pytest.raises(DatasetError, match="one class only"):
        clean_data(_cfg(manifest, where="finding == 'normal'"))
