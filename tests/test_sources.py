"""Data sources on tiny generated layouts and on the real data sets."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass.config import DataConfig
from medclass.data.multilabel import FindingSpec
from medclass.data.sources import detect_source, from_csv, from_dicom, from_folders, from_npz, load_source
from medclass.errors import ConfigError, DatasetError


def png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(path)


def reasons(table):
    return {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in table.skipped}


@pytest.fixture
def kaggle(tmp_path):
    """train/valid/test folders of classes A and B; patients p1..p4 by file name; junk files."""
    root = tmp_path / "kaggle"
    for split, names in {"train": ["p1_a", "p1_b", "p2_a"], "valid": ["p3_a"], "test": ["p4_a", "p4_b"]}.items():
        for cls in ("A", "B"):
            for n in names:
                png(root / split / cls / f"{n}.png")
    (root / "train" / "A" / "notes.txt").write_text("x")
    (root / "train" / "A" / ".DS_Store").write_text("x")
    png(root / "train" / "A" / ".hidden" / "p9_a.png")
    png(root / "train" / "A" / "sub" / "p5_a.png")  # nested folders inside a class are searched
    (root / "README.md").write_text("x")
    return root


def test_kaggle_layout(kaggle):
    table = from_folders(kaggle, patient_regex=r"^(p\d+)_")
    df = table.frame
    assert table.classes == ["A", "B"] and table.source == "folders"
    assert len(df) == 13
    assert df.groupby("split").size().to_dict() == {"test": 4, "train": 7, "val": 2}
    assert set(df["patient"]) == {"p1", "p2", "p3", "p4", "p5"}
    assert (df["frame"] == -1).all() and df["path"].str.startswith("/").all()
    why = reasons(table)
    assert "unsupported file extension .txt" in why["notes.txt"]
    assert why[".DS_Store"] == "hidden or system file" and why[".hidden"] == "hidden folder"
    assert why["README.md"] == "not inside a class folder"


def test_class_folders_without_splits_and_auto_detection(tmp_path):
    for cls, n in (("cat", 2), ("dog", 3)):
        for i in range(n):
            png(tmp_path / "d" / cls / f"{cls}{i}.png")
    table = load_source(DataConfig(path=str(tmp_path / "d"), patient_regex="none"))
    assert table.classes == ["cat", "dog"] and len(table) == 5 and set(table.frame["split"]) == {""}
    assert (table.frame["patient"] == "").all() and "sublabel" not in table.frame
    assert detect_source(tmp_path / "d") == "folders"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class subfolders"):
        detect_source(tmp_path / "empty")
    (tmp_path / "e2" / "cls").mkdir(parents=True)
    with pytest.raises(DatasetError, match="No images found"):
        from_folders(tmp_path / "e2")
    with pytest.raises(FileNotFoundError):
        load_source(DataConfig(path=str(tmp_path / "nowhere")))


def test_keep_source_split_classes_and_errors(kaggle):
    cfg = DataConfig(path=str(kaggle), patient_regex=r"^(p\d+)_", keep_source_split=False, classes=["B", "A"])
    table = load_source(cfg)
    assert table.classes == ["B", "A"] and set(table.frame["split"]) == {""}
    assert load_source(DataConfig(path=str(kaggle), classes=["B"])).frame["label"].unique().tolist() == ["B"]
    with pytest.raises(DatasetError, match="Did you mean 'B'"):
        load_source(DataConfig(path=str(kaggle), classes=["b"]))
    with pytest.raises(ConfigError, match="data.source"):
        load_source(DataConfig(path=str(kaggle), source="folder"))
    with pytest.raises(ConfigError, match="capture groups"):
        load_source(DataConfig(path=str(kaggle), patient_regex="p\\d+"))


def test_limit_per_class_takes_whole_patients(tmp_path):
    for cls in ("A", "B"):
        for p in range(12):
            for i in range(1 + p % 3):
                png(tmp_path / "d" / cls / f"pt{cls}{p}_{i}.png")
    cfg = DataConfig(path=str(tmp_path / "d"), patient_regex=r"^(pt\w\d+)_", limit_per_class=7)
    full = load_source(DataConfig(path=str(tmp_path / "d"), patient_regex=r"^(pt\w\d+)_"))
    small = load_source(cfg, seed=1)
    counts = small.frame["label"].value_counts()
    assert (counts <= 7).all() and (counts >= 5).all()  # groups of up to 3 images fill 7 to at least 5
    per_patient = full.frame.groupby("patient").size()
    kept = small.frame.groupby("patient").size()
    assert kept.to_dict() == per_patient[kept.index].to_dict()  # every chosen patient comes whole
    assert small.frame["path"].tolist() == load_source(cfg, seed=1).frame["path"].tolist()
    assert small.frame["path"].tolist() != load_source(cfg, seed=2).frame["path"].tolist()


def write_csv_set(tmp_path):
    img = tmp_path / "imgs"
    for i in range(4):
        png(img / f"{i:03d}.png")
    (tmp_path / "m.csv").write_text(
        "id, finding ,patient, split, age\n000,1,P1,train,40\n001,0,P1,train,41\n002,1,P2,valid,50\n"
        "003,0,P3,test,60\n004,1,P4,test,70\n005,,P5,train,1\n"
    )
    return tmp_path / "m.csv", img


def test_csv_manifest(tmp_path):
    csv, img = write_csv_set(tmp_path)
    table = from_csv(csv, "id", "finding", "patient", image_root=img, class_names=["neg", "pos"])
    df = table.frame
    assert table.classes == ["neg", "pos"] and len(df) == 4
    assert df["label"].tolist() == ["pos", "neg", "pos", "neg"]
    assert df["patient"].tolist() == ["P1", "P1", "P2", "P3"] and df["split"].tolist() == ["train", "train", "val", "test"]
    assert df["age"].tolist() == ["40", "41", "50", "60"]  # extra columns are kept
    assert df["path"].map(lambda p: p.rsplit("/", 1)[-1]).tolist() == ["000.png", "001.png", "002.png", "003.png"]
    why = {s["path"].rsplit(":", 1)[-1]: s["reason"] for s in table.skipped}
    assert why["6"].startswith("file not found") and "missing label ''" in why["7"]
    templated = from_csv(csv, "id", "finding", image_root=img, path_template="{:03d}.png", split_column="")
    assert len(templated) == 4 and set(templated.frame["split"]) == {""} and templated.classes == ["0", "1"]


def test_csv_errors(tmp_path):
    csv, img = write_csv_set(tmp_path)
    with pytest.raises(DatasetError) as e:
        from_csv(csv, "id", "findings", image_root=img)
    assert "'findings'" in str(e.value) and "'finding'" in str(e.value) and "columns are" in str(e.value)
    with pytest.raises(DatasetError, match="indices 0..0"):
        from_csv(csv, "id", "finding", image_root=img, class_names=["only"])
    with pytest.raises(FileNotFoundError):
        from_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize("content, message", [
    (b"", "is empty; a manifest has a header row"),
    (bytes(range(256)) * 8, "is a binary file, not a CSV"),
    ("path,label\nx.png,caf\u00e9\n".encode("latin-1"), "is not UTF-8 text (byte b'\\xe9' at offset 20)"),
    (b'path,label\n"x.png,a\n', "is not a well-formed CSV"),
])
def test_unreadable_manifests_are_clear_errors(tmp_path, content, message):
    (tmp_path / "m.csv").write_bytes(content)
    with pytest.raises(DatasetError) as e:
        load_source(DataConfig(path=str(tmp_path / "m.csv")))
    assert str(tmp_path / "m.csv") in str(e.value) and message in str(e.value)


def test_missing_labels_are_skipped_not_classes(tmp_path):
    """NaN, nan, NA, N/A, #N/A, null and empty label cells were classes of their own; a BOM broke the header."""
    missing = ["NaN", "nan", "NA", "N/A", "#N/A", "null", ""]
    labels = ["neg", "pos"] * 2 + missing
    for i in range(len(labels)):
        Image.fromarray(np.full((8, 8), i * 10, np.uint8)).save(tmp_path / f"{i}.png")
    text = "path,label\n" + "".join(f"{i}.png,{label}\n" for i, label in enumerate(labels))
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel's "CSV UTF-8" starts with a BOM
    table = from_csv(tmp_path / "m.csv")
    assert table.classes == ["neg", "pos"] and len(table) == 4
    reasons = [s["reason"] for s in table.skipped]
    assert reasons == [f"missing label {label!r} in column 'label'" for label in missing]


def test_an_image_listed_twice_is_kept_once_or_left_out_when_its_labels_conflict(tmp_path):
    """A manifest that lists the same file twice trained on it twice, or under two labels at once."""
    for i in range(3):
        png(tmp_path / f"{i}.png", i)
    (tmp_path / "m.csv").write_text("path,label\n0.png,neg\n1.png,pos\n0.png,neg\n2.png,neg\n2.png,pos\n1.png,pos\n")
    table = from_csv(tmp_path / "m.csv")
    assert table.frame["path"].map(lambda p: p.rsplit("/", 1)[-1]).tolist() == ["0.png", "1.png"]
    assert table.frame["label"].tolist() == ["neg", "pos"]
    why = {s["path"].rsplit(":", 1)[-1]: s["reason"] for s in table.skipped}
    assert why["4"].startswith("repeats line 2") and why["7"].startswith("repeats line 3")
    assert "listed 2 times with conflicting labels ['neg', 'pos']" in why["5,6"] and "2.png" in why["5,6"]
    multi = tmp_path / "multi.csv"
    multi.write_text("path,findings\n0.png,a|b\n0.png,b|a\n1.png,a\n1.png,b\n2.png,b\n")
    table = from_csv(multi, findings=FindingSpec(labels_from="findings"))
    assert table.frame["path"].map(lambda p: p.rsplit("/", 1)[-1]).tolist() == ["0.png", "2.png"]
    assert len(table.skipped) == 2 and "conflicting" in table.skipped[1]["reason"]


def make_npz(path, labels_shape=(1,), compressed=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, *labels_shape))
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return arrays


def test_npz_source(tmp_path):
    arrays = make_npz(tmp_path / "m.npz")
    table = load_source(DataConfig(path=str(tmp_path / "m.npz"), class_names=["normal", "sick"]))
    df = table.frame
    assert table.source == "npz" and table.classes == ["normal", "sick"] and len(df) == 11
    assert df["frame"].tolist() == list(range(11))
    assert df["split"].tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 3
    expected = np.concatenate([arrays[f"{s}_labels"][:, 0] for s in ("train", "val", "test")])
    assert df["label"].tolist() == [["normal", "sick"][i] for i in expected]
    assert from_npz(tmp_path / "m.npz").classes == ["0", "1"]
    make_npz(tmp_path / "multi.npz", labels_shape=(3,))
    assert from_npz(tmp_path / "multi.npz").multi_label  # ChestMNIST-style (n, K) labels: multi-label (issue 14)
    with pytest.raises(DatasetError, match="single-label data"):
        from_npz(tmp_path / "multi.npz", task="single_label")
    np.savez(tmp_path / "odd.npz", x=np.zeros(3))
    with pytest.raises(DatasetError, match="expected MedMNIST keys"):
        from_npz(tmp_path / "odd.npz")


def test_bad_npz_arrays_are_refused_unread(tmp_path):
    """Arrays of five axes, flattened images and object arrays (which would need unpickling) are refused by their header."""
    labels = np.zeros((4, 1), np.int64)
    cases = {
        "volume": ({"train_images": np.zeros((4, 5, 8, 8, 3), np.uint8), "train_labels": labels}, "has shape (4, 5, 8, 8, 3)"),
        "flat": ({"train_images": np.zeros((4, 64), np.uint8), "train_labels": labels}, "has shape (4, 64)"),
        "text": ({"train_images": np.array(["a"] * 4), "train_labels": labels}, "holds <U1 values"),
        "pickled": ({"train_images": np.array([np.zeros((8, 8))] * 3 + [None], dtype=object), "train_labels": labels},
                    "train_images holds Python object (pickled) values"),
        "pickled_labels": ({"train_images": np.zeros((4, 8, 8), np.uint8), "train_labels": np.array([1, "a", None, 2],
                                                                                                     dtype=object)},
                           "train_labels holds Python object (pickled) values"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(DatasetError) as e:
            load_source(DataConfig(path=str(tmp_path / f"{name}.npz")))
        assert str(tmp_path / f"{name}.npz") in str(e.value) and message in str(e.value), name
    import pickle

    def no_unpickling(*args, **kwargs):
        raise AssertionError("an npz member was unpickled")

    original = pickle.loads
    pickle.loads = no_unpickling
    try:
        with pytest.raises(DatasetError):
            from_npz(tmp_path / "pickled.npz")
    finally:
        pickle.loads = original


def test_npz_images_without_a_label_are_skipped(tmp_path):
    labels = np.array([0.0, 1.0, np.nan, 1.0, np.nan])
    np.savez(tmp_path / "m.npz", images=np.zeros((5, 8, 8), np.uint8), labels=labels)
    table = from_npz(tmp_path / "m.npz", class_names=["a", "b"])
    assert table.frame["label"].tolist() == ["a", "b", "b"] and table.frame["frame"].tolist() == [0, 1, 3]
    assert [s["path"].rsplit(" ", 1)[-1] for s in table.skipped] == ["2)", "4)"]
    np.savez(tmp_path / "none.npz", images=np.zeros((2, 8, 8), np.uint8), labels=np.full(2, np.nan))
    np.savez(tmp_path / "empty.npz", train_images=np.zeros((0, 28, 28), np.uint8), train_labels=np.zeros((0, 1)))
    for name in ("none", "empty"):
        with pytest.raises(DatasetError, match="no image has a label"):
            from_npz(tmp_path / f"{name}.npz")


def test_dicom_in_class_folders_and_dicom_source(tmp_path, shared_data):
    src = shared_data / "dicom"
    (tmp_path / "d" / "scan").mkdir(parents=True)
    shutil.copy(src / "SC_rgb_2frame.dcm", tmp_path / "d" / "scan" / "two.dcm")
    shutil.copy(src / "CT_small.dcm", tmp_path / "d" / "scan" / "ct")  # no extension: found by the DICM magic
    shutil.copy(src / "emri_small_jpeg_2k_lossless_too_short.dcm", tmp_path / "d" / "scan" / "short.dcm")
    table = from_folders(tmp_path / "d", patient_regex="none")
    df = table.frame.sort_values(["path", "frame"])
    assert df["frame"].tolist() == [-1, 0, 1]
    assert df["patient"].tolist() == ["1CT1", "ID1", "ID1"] and set(df["label"]) == {"scan"}
    assert "no pixel data" in reasons(table)["short.dcm"]
    only = from_dicom(tmp_path / "d" / "scan" / "two.dcm")
    assert only.classes == ["unlabelled"] and only.frame["frame"].tolist() == [0, 1]


def test_real_chest_xray(shared_data):
    table = load_source(DataConfig(path=str(shared_data / "chest_xray"), preset="kermany_chest_xray"))
    df = table.frame
    assert len(df) == 4979 and table.classes == ["NORMAL", "PNEUMONIA"] and not table.skipped
    assert df["label"].value_counts().to_dict() == {"PNEUMONIA": 3642, "NORMAL": 1337}
    assert (df["patient"] != "").all()
    names = df["path"].map(lambda p: p.rsplit("/", 1)[-1].rsplit(".", 1)[0])
    independent = [n.split("_")[0] if n.startswith("person") else "-".join(n.split("-")[: 3 if n.startswith("NORMAL") else 2]) for n in names]
    assert df["patient"].tolist() == independent
    assert df["patient"].nunique() == len(set(independent))
    assert df.loc[df["label"] == "PNEUMONIA", "sublabel"].isin(["bacteria", "virus"]).all()
    three = load_source(DataConfig(path=str(shared_data / "chest_xray"), preset="kermany_chest_xray",
                                   label_from_name="chest_xray_3class"))
    assert three.classes == ["normal", "bacterial", "viral"]
    assert three.frame["label"].value_counts().to_dict() == {
        "bacterial": int((df["sublabel"] == "bacteria").sum()), "normal": 1337, "viral": int((df["sublabel"] == "virus").sum())}


def test_real_head_ct(shared_data):
    csv = shared_data / "head_ct" / "labels.csv"
    raw = pd.read_csv(csv)
    assert list(raw.columns) == ["id", " hemorrhage"]  # the space is really there
    for template in ("{}", "{:03d}.png"):
        cfg = DataConfig(path=str(csv), path_column="id", label_column="hemorrhage", path_template=template,
                         class_names=["normal", "hemorrhage"])
        table = load_source(cfg)
        assert len(table) == 200 and not table.skipped
        assert table.frame["label"].value_counts().to_dict() == {"hemorrhage": 100, "normal": 100}
        assert table.frame["path"].iloc[0].endswith("head_ct/000.png")
        assert table.frame.loc[table.frame["path"].str.endswith("/000.png"), "label"].item() == ["normal", "hemorrhage"][int(raw.iloc[0, 1])]


def test_real_dicom_folder(shared_data):
    table = load_source(DataConfig(path=str(shared_data / "dicom")))
    assert table.source == "dicom" and table.classes == ["unlabelled"]
    files = set(table.frame["path"].map(lambda p: p.rsplit("/", 1)[-1]))
    why = reasons(table)
    assert set(why) == {"LICENSE", "emri_small_jpeg_2k_lossless_too_short.dcm", "liver_deflate.dcm", "liver_nonbyte_aligned_deflate.dcm"}
    assert len(files) == 83 - 3
    assert (table.frame["path"].str.endswith("emri_small.dcm")).sum() == 10  # one row per frame
    assert table.frame.loc[table.frame["path"].str.endswith("CT_small.dcm"), "patient"].item() == "1CT1"


def test_own_folder_gets_no_hidden_chest_xray_rules(tmp_path):
    """Issue 11.4: without data.preset a folder whose names look like Kermany's is read with no patient rule."""
    for cls, names in {"NORMAL": ["IM-0001-0001.png", "IM-0001-0002.png"],
                       "PNEUMONIA": ["person1_bacteria_1.png", "person1_virus_2.png"]}.items():
        (tmp_path / "d" / cls).mkdir(parents=True)
        for n in names:
            png(tmp_path / "d" / cls / n)
    plain = load_source(DataConfig(path=str(tmp_path / "d")))
    assert (plain.frame["patient"] == "").all() and "sublabel" not in plain.frame
    kermany = load_source(DataConfig(path=str(tmp_path / "d"), preset="kermany_chest_xray"))
    assert sorted(set(kermany.frame["patient"])) == ["IM-0001", "person1"]
    assert set(kermany.frame["sublabel"]) == {"", "bacteria", "virus"}
    explicit = load_source(DataConfig(path=str(tmp_path / "d"), patient_regex="chest_xray"))
    assert sorted(set(explicit.frame["patient"])) == ["IM-0001", "person1"]


def test_presets_are_checked_by_name(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'kermany_chest_xray'"):
        load_source(DataConfig(path=str(tmp_path), preset="kermany_chestxray"))
    with pytest.raises(ConfigError, match="set data.preset=kermany_chest_xray"):
        load_source(DataConfig(path=str(tmp_path), label_from_name="chest_xray_3class"))
