"""Cross-validation: patient-disjoint folds with linked duplicates, pooled metrics vs scikit-learn, a real run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass.config import DataConfig, RunConfig
from medclass.data.table import DataTable
from medclass.errors import LeakError
from medclass.experiments._cvdata import check_disjoint, fold_table, prepare_folds
from medclass.experiments.crossval import pooled_metrics


def _table(rows: list[tuple[str, str, str, str]]) -> DataTable:
    return DataTable(pd.DataFrame(rows, columns=["path", "label", "patient", "split"]), ["a", "b"])


def test_check_disjoint_names_shared_patients_and_images() -> None:
    train = _table([("x1.png", "a", "p1", "train"), ("x2.png", "b", "p2", "train"), ("x3.png", "a", "", "train")])
    check_disjoint(train, _table([("y1.png", "a", "p3", "val"), ("y2.png", "b", "", "val")]), fold=0)
    with pytest.raises(LeakError, match="Fold 2: 1 patient"):
        check_disjoint(train, _table([("y1.png", "a", "p2", "val")]), fold=2)
    with pytest.raises(LeakError, match="1 image"):
        check_disjoint(train, _table([("x3.png", "a", "", "val")]), fold=1)


def _write_images(root: Path, n_patients: int = 8, per_patient: int = 2) -> Path:
    """CSV data set: n_patients per class with per_patient noise images each, one duplicate, one blank image."""
    rng = np.random.default_rng(0)
    rows = []
    for label in ("a", "b"):
        for p in range(n_patients):
            for i in range(per_patient):
                name = f"{label}{p}_{i}.png"
                Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(root / name)
                rows.append((name, label, f"{label}{p}"))
    # the same image under another patient id (a copy) and a blank image (quality filter)
    (root / "copy.png").write_bytes((root / "a0_0.png").read_bytes())
    rows.append(("copy.png", "a", "a_other"))
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "blank.png")
    rows.append(("blank.png", "b", "b_blank"))
    pd.DataFrame(rows, columns=["path", "label", "patient"]).to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


def test_prepare_folds_patient_disjoint_with_linked_duplicates(tmp_path: Path) -> None:
    csv = _write_images(tmp_path)
    dcfg = DataConfig(path=str(csv), source="csv", patient_column="patient", near_duplicates=False)
    folds, fp = prepare_folds(dcfg, k=4, seed=3, out_dir=tmp_path)
    df = folds.frame
    assert "blank.png" not in set(df["path"].map(lambda p: Path(p).name))  # dropped by the quality filter
    assert any("blank.png" in s["path"] for s in folds.skipped)
    assert sorted(df["fold"].unique()) == [0, 1, 2, 3]
    assert (df.groupby("patient")["fold"].nunique() == 1).all()  # every patient in one fold
    by_name = df.assign(name=df["path"].map(lambda p: Path(p).name)).set_index("name")
    assert by_name.loc["copy.png", "fold"] == by_name.loc["a0_0.png", "fold"]  # the copy follows its original
    assert by_name.loc["copy.png", "patient"] == by_name.loc["a0_0.png", "patient"]
    for k in range(4):
        table, audit = fold_table(folds, k, fp, dcfg)
        val = table.frame[table.frame["split"] == "val"]
        assert set(val["path"]) == set(df.loc[df["fold"] == k, "path"])
        assert set(table.frame["split"]) == {"train", "val"} and len(table) == len(df)
        assert audit["audit"]["exact_cross_split"] == 0
        assert set(val["label"]) == {"a", "b"}  # stratified: both classes in every fold
    assert (tmp_path / "folds.csv").is_file()
    assert json.loads((tmp_path / "audit.json").read_text())["before_folds"]["counts"]["exact_groups"] == 1


def test_pooled_metrics_match_sklearn() -> None:
    from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, 150), 0, 1)
    thresholds = np.where(np.arange(150) < 75, 0.4, 0.6)  # two folds, two thresholds
    oof = pd.DataFrame({"path": [f"i{i}" for i in range(150)], "patient": [f"p{i // 3}" for i in range(150)],
                        "label": np.where(y == 1, "pos", "neg"), "prob_neg": 1 - p, "prob_pos": p,
                        "predicted": np.where(p >= thresholds, "pos", "neg")})
    out = pooled_metrics(oof, ["neg", "pos"], n_boot=200)
    decided = (p >= thresholds).astype(int)
    assert out["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, p))
    assert out["accuracy"]["value"] == pytest.approx(accuracy_score(y, decided))
    assert out["sensitivity"]["value"] == pytest.approx(recall_score(y, decided))
    assert out["specificity"]["value"] == pytest.approx(recall_score(1 - y, 1 - decided))
    for m in out.values():
        assert m["low"] <= m["value"] <= m["high"] and m["high"] - m["low"] > 0.01


@pytest.mark.slow
def test_cross_validate_head_ct(tmp_path: Path, shared_data: Path) -> None:
    """Two folds of 80 head CT images at 32 px for one epoch: the machinery, not the accuracy."""
    from sklearn.metrics import roc_auc_score

    from medclass.experiments.crossval import cross_validate

    cfg = RunConfig(project="hct", experiment="cv", workspace=str(tmp_path / "ws"))
    cfg.data.path, cfg.data.patient_regex, cfg.data.limit_per_class = str(shared_data / "head_ct"), "none", 40
    cfg.data.split_by = "image"  # head_ct publishes no patient ids
    cfg.model.name, cfg.model.image_size, cfg.model.in_chans = "simple_cnn", 32, 1
    cfg.train.epochs, cfg.train.num_workers, cfg.train.baseline, cfg.train.batch_size = 1, 0, False, 32
    cv = cross_validate(cfg, folds=2, progress=False, n_boot=200)
    assert cv.out_dir == tmp_path / "ws" / "hct" / "cv"
    for name in ("cv_summary.json", "cv_folds.csv", "oof_predictions.csv", "folds.csv"):
        assert (cv.out_dir / name).is_file()
    folds = pd.read_csv(cv.out_dir / "folds.csv")
    oof = pd.read_csv(cv.out_dir / "oof_predictions.csv")
    assert len(oof) == len(folds) and oof["path"].is_unique  # every image predicted once, out of fold
    for k, run_dir in enumerate(cv.run_dirs):
        split = pd.read_csv(run_dir / "split.csv")
        assert run_dir.name == f"cv-fold{k}"
        assert set(split.loc[split["split"] == "val", "path"]) == set(folds.loc[folds["fold"] == k, "path"])
        assert not set(split.loc[split["split"] == "train", "path"]) & set(oof.loc[oof["fold"] == k, "path"])
        rows = oof[oof["fold"] == k]
        assert cv.folds.loc[k, "roc_auc"] == pytest.approx(roc_auc_score(rows["label"] == 1, rows["prob_1"]))
    summary = json.loads((cv.out_dir / "cv_summary.json").read_text())
    assert summary["mean"]["roc_auc"] == pytest.approx(cv.folds["roc_auc"].mean())
    assert summary["pooled"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(oof["label"] == 1, oof["prob_1"]))
    assert summary["patient_disjoint"] is True and summary["n_images"] == len(folds)
    from rich.console import Console

    console = Console(record=True, width=220)
    console.print(cv.summary_table())
    assert "pooled (95% CI)" in console.export_text()

    # Resuming: a second plain run refuses the folder; an interrupted one continues and matches.
    from medclass.errors import ConfigError
    from medclass.experiments.crossval import resume_cross_validation

    with pytest.raises(ConfigError, match="already holds a cross-validation"):
        cross_validate(cfg, folds=2, progress=False, n_boot=200)
    kept = (cv.run_dirs[0] / "best.safetensors").stat().st_mtime_ns
    (cv.run_dirs[1] / "threshold.json").unlink()  # fold 1 stopped before finishing
    (cv.out_dir / "cv_summary.json").unlink()
    again = resume_cross_validation(cv.out_dir, progress=False, n_boot=200)
    assert (cv.run_dirs[0] / "best.safetensors").stat().st_mtime_ns == kept  # finished fold not retrained
    assert (cv.run_dirs[1] / "threshold.json").is_file()
    pd.testing.assert_frame_equal(again.oof, cv.oof)
    assert again.folds["best_epoch"].tolist() == cv.folds["best_epoch"].tolist()
    # Data that no longer gives the same folds: the resume is refused and the interrupted run's files stay.
    import yaml

    kept_files = {n: (cv.out_dir / n).read_bytes() for n in ("folds.csv", "cv_config.yaml", "quality.json")}
    changed = yaml.safe_load((cv.out_dir / "cv_config.yaml").read_text())
    changed["data"]["limit_per_class"] = 39
    (cv.out_dir / "cv_config.yaml").write_text(yaml.safe_dump(changed))
    kept_files["cv_config.yaml"] = (cv.out_dir / "cv_config.yaml").read_bytes()
    with pytest.raises(ConfigError, match="no longer gives the folds"):
        resume_cross_validation(cv.out_dir, progress=False, n_boot=200)
    assert {n: (cv.out_dir / n).read_bytes() for n in kept_files} == kept_files
    (cv.out_dir / "cv_config.yaml").write_text(yaml.safe_dump({**changed, "data": {**changed["data"],
                                                                                   "limit_per_class": 40}}))
    # the CLI's --resume recognises a cross-validation folder; every fold is finished, so nothing retrains
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    _register_all()
    out = CliRunner().invoke(app, ["train", "--resume", str(cv.out_dir), "--quiet"])
    assert out.exit_code == 0, out.output
    assert "cross-validation results" in out.output and "2-fold" in out.output
    assert (cv.run_dirs[0] / "best.safetensors").stat().st_mtime_ns == kept
