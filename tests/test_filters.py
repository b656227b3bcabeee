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


# -- data.label_map on multi-label data: findings are renamed, merged or dropped, rows stay --------------
FINDING_ROWS = [  # Mass, Nodule, Hernia: 1 / 0 / -1 (uncertain) / '' (missing)
    ("1", "", "0"), ("0", "", "1"), ("0", "0", "0"), ("", "1", "0"), ("-1", "0", "0"), ("0", "-1", "1"),
    ("", "", "0"), ("0", "0", "1"),
]


@pytest.fixture
def findings_manifest(tmp_path):
    """A column-form multi-label CSV whose rows cover every merge case (positive, masked, negative)."""
    (tmp_path / "images").mkdir()
    rows = []
    for i, (mass, nodule, hernia) in enumerate(FINDING_ROWS):
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(tmp_path / "images" / f"{i}.png")
        rows.append({"path": f"images/{i}.png", "patient": f"p{i}", "Mass": mass, "Nodule": nodule, "Hernia": hernia})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path / "labels.csv"


def _findings_cfg(csv, **kw) -> DataConfig:
    return DataConfig(path=str(csv), patient_column="patient", label_columns=["Mass", "Nodule", "Hernia"], **kw)


def test_label_map_renames_findings(findings_manifest):
    plain = load_source(_findings_cfg(findings_manifest))
    renamed = load_source(_findings_cfg(findings_manifest, label_map={"Mass": "lesion"}))
    assert renamed.multi_label and renamed.classes == ["lesion", "Nodule", "Hernia"]
    np.testing.assert_array_equal(renamed.targets, plain.targets)  # NaN (masked) cells stay masked
    assert "label_Mass" not in renamed.frame and renamed.frame["label"][0] == "lesion"


@pytest.mark.parametrize("uncertain, expected", [
    # Mass|Nodule merged per row of FINDING_ROWS: 1 if any is 1, else masked if any is masked, else 0
    ("ignore", [1, np.nan, 0, 1, np.nan, np.nan, np.nan, 0]),
    ("zeros", [1, 0, 0, 1, 0, 0, 0, 0]),  # uncertain and missing read as 0 first: nothing left masked
    ("ones", [1, 1, 0, 1, 1, 1, 1, 0]),
])
def test_label_map_merges_findings_with_masked_values(findings_manifest, uncertain, expected):
    table = load_source(_findings_cfg(findings_manifest, uncertain=uncertain,
                                      label_map={"Mass": "lesion", "Nodule": "lesion"}))
    assert table.classes == ["lesion", "Hernia"] and len(table) == len(FINDING_ROWS)
    np.testing.assert_array_equal(table.targets[:, 0], np.array(expected, dtype=np.float32))
    np.testing.assert_array_equal(table.targets[:, 1], load_source(_findings_cfg(findings_manifest, uncertain=uncertain))
                                  .targets[:, 2])  # the finding left alone is untouched
    hernia = [h == "1" for _, _, h in FINDING_ROWS]
    assert table.frame["label"].tolist() == ["|".join(n for n, on in (("lesion", v == 1), ("Hernia", h)) if on) or "none"
                                             for v, h in zip(expected, hernia)]


def test_label_map_merges_into_a_kept_finding(findings_manifest):
    table = load_source(_findings_cfg(findings_manifest, label_map={"Hernia": "Mass"}))  # Hernia folded into Mass
    assert table.classes == ["Mass", "Nodule"]
    np.testing.assert_array_equal(table.targets[:, 0], np.array([1, 1, 0, np.nan, np.nan, 1, np.nan, 1], np.float32))


def test_label_map_drops_a_finding_not_the_rows(findings_manifest):
    table = load_source(_findings_cfg(findings_manifest, label_map={"Hernia": "drop"}))
    assert table.classes == ["Mass", "Nodule"] and len(table) == len(FINDING_ROWS)
    assert "label_Hernia" not in table.frame.columns
    assert table.frame["label"][1] == "none"  # its only positive finding was dropped; the image stays
    with pytest.raises(DatasetError, match="drops every finding"):
        load_source(_findings_cfg(findings_manifest, label_map={"Mass": "drop", "Nodule": "drop", "Hernia": "drop"}))


def test_label_map_refuses_an_unknown_finding_by_name(findings_manifest):
    with pytest.raises(DatasetError, match=r"names \['Nodlue'\], which are not findings.*Did you mean 'Nodule'"):
        load_source(_findings_cfg(findings_manifest, label_map={"Nodlue": "lesion"}))


def test_label_map_on_findings_is_recorded_and_counted_by_the_data_check(findings_manifest):
    from medclass.data.check import check_data

    cfg = apply_overrides(RunConfig(), [f"data.path={findings_manifest}", "data.patient_column=patient",
                                        "data.label_columns=Mass,Nodule,Hernia", "data.label_map=Mass=lesion,Nodule=lesion"])
    assert cfg.data.label_map == {"Mass": "lesion", "Nodule": "lesion"}
    report = check_data(cfg.data, near_duplicates=False, workers=1)
    assert report["filters"]["label_map"] == {"Mass": "lesion", "Nodule": "lesion"}
    counts = pd.DataFrame(report["counts"]["findings"])
    assert set(counts["finding"]) == {"lesion", "Hernia"}
    assert counts.loc[counts["finding"] == "lesion", "positive_images"].sum() == 2
