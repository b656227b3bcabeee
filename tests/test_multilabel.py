"""Multi-label classification (issue 14): data forms, the uncertain policy, splits, metrics, training and serving."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass.config import DataConfig
from medclass.data.multilabel import apply_uncertain, resolve_task
from medclass.data.sources import from_npz, load_source
from medclass.data.splits import patient_groups, split_patients
from medclass.errors import DatasetError

FINDINGS = ("Effusion", "Mass", "Nodule")


def write_multilabel_csv(root: Path, n_patients: int = 24, per_patient: int = 2, size: int = 32, seed: int = 0) -> Path:
    """Images whose findings are learnable: Effusion = bright top half, Mass = bright disk, Nodule = bright corner.

    Writes labels.csv with both forms: ``finding_labels`` (pipe list) and one 1/0 column per finding
    (with a few -1 and blanks in 'Nodule')."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for p in range(n_patients):
        for j in range(per_patient):
            y = rng.random(3) < [0.4, 0.35, 0.3]
            img = rng.normal(0.25, 0.05, (size, size))
            if y[0]:
                img[: size // 2] += 0.4
            if y[1]:
                img += 0.5 * (((yy - size // 2) ** 2 + (xx - size // 2) ** 2) < 30)
            if y[2]:
                img[-8:, -8:] += 0.6
            name = f"images/p{p:03d}_{j}.png"
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / name)
            listed = "|".join(f for f, v in zip(FINDINGS, y) if v) or "No Finding"
            cols = {f: str(int(v)) for f, v in zip(FINDINGS, y)}
            rows.append({"path": name, "patient": f"p{p:03d}", "finding_labels": listed, **cols})
    df = pd.DataFrame(rows)
    df.loc[1, "Nodule"], df.loc[3, "Nodule"] = "-1", ""
    df.to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


@pytest.fixture(scope="module")
def ml_csv(tmp_path_factory) -> Path:
    return write_multilabel_csv(tmp_path_factory.mktemp("ml"))


def test_task_rule():
    assert resolve_task(DataConfig()) == "single_label"
    assert resolve_task(DataConfig(labels_from="finding_labels")) == "multi_label"
    assert resolve_task(DataConfig(label_columns=["a", "b"])) == "multi_label"
    with pytest.raises(DatasetError, match="labels_from"):
        resolve_task(DataConfig(task="multi_label"))


def test_pipe_list_form(ml_csv):
    table = load_source(DataConfig(path=str(ml_csv), patient_column="patient", labels_from="finding_labels"))
    assert table.multi_label and table.classes == list(FINDINGS)
    df = pd.read_csv(ml_csv, keep_default_na=False)
    expected = np.array([[f in s.split("|") for f in FINDINGS] for s in df["finding_labels"]], dtype=np.float32)
    np.testing.assert_array_equal(table.targets, expected)
    assert table.frame.loc[df["finding_labels"] == "No Finding", "label"].eq("none").all()
    with pytest.raises(DatasetError, match="single labels"):
        load_source(DataConfig(path=str(ml_csv), labels_from="finding_labels", label_map={"Mass": "x"}))


@pytest.mark.parametrize("policy, expected", [("ignore", np.nan), ("ones", 1.0), ("zeros", 0.0)])
def test_column_form_and_uncertain_policy(ml_csv, policy, expected):
    table = load_source(DataConfig(path=str(ml_csv), patient_column="patient", label_columns=list(FINDINGS),
                                   uncertain=policy))
    y = table.targets
    assert y.shape == (48, 3)
    for row in (1, 3):  # -1 (uncertain) and blank (missing)
        assert (np.isnan(y[row, 2]) if np.isnan(expected) else y[row, 2] == expected)
    assert not np.isnan(np.delete(y, [1, 3], axis=0)).any()


def test_column_form_refuses_bad_cells(tmp_path, ml_csv):
    df = pd.read_csv(ml_csv, dtype=str, keep_default_na=False)
    df.loc[0, "Mass"] = "maybe"
    df.to_csv(tmp_path / "bad.csv", index=False)
    (tmp_path / "images").symlink_to(ml_csv.parent / "images")
    with pytest.raises(DatasetError, match="'Mass' holds 'maybe'"):
        load_source(DataConfig(path=str(tmp_path / "bad.csv"), label_columns=list(FINDINGS)))


def test_uncertain_policy_values():
    m = np.array([[1.0, -1.0, 0.0, np.nan]])
    assert np.isnan(apply_uncertain(m, "ignore")[0, [1, 3]]).all()
    assert apply_uncertain(m, "zeros").tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_npz_multilabel(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 255, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 6), ("val", 2), ("test", 2))}
    arrays.update({f"{s}_labels": rng.integers(0, 2, (n, 14)) for s, n in (("train", 6), ("val", 2), ("test", 2))})
    np.savez(tmp_path / "chestmnist.npz", **arrays)
    table = from_npz(tmp_path / "chestmnist.npz")
    assert table.multi_label and len(table.classes) == 14
    np.testing.assert_array_equal(table.targets[:6], arrays["train_labels"])
    with pytest.raises(DatasetError, match=r"\(n, K\)"):
        from_npz(tmp_path / "chestmnist.npz", task="single_label")


def test_split_keeps_patients_and_spreads_findings(ml_csv):
    table = load_source(DataConfig(path=str(ml_csv), patient_column="patient", labels_from="finding_labels"))
    out = split_patients(table, 0.25, 0.25, seed=3)
    assert out.multi_label
    assert (out.frame.groupby(patient_groups(out.frame).to_numpy())["split"].nunique() == 1).all()
    y = out.targets
    for split in ("train", "val", "test"):
        in_split = (out.frame["split"] == split).to_numpy()
        assert (y[in_split] == 1).sum(axis=0).min() >= 1, f"a finding has no positive image in {split}"
