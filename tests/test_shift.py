"""Dataset shift: domain classifier AUC, Fréchet distance and image statistics against direct computations,
and the ``shift`` / ``ood`` sections of an external evaluation with its report section and CLI warning."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from medclass.artifacts import load_checkpoint, save_checkpoint
from medclass.evaluation.evaluate import evaluate
from medclass.metrics.ood import fit_mahalanobis
from medclass.metrics.shift import (category_shares, domain_auc, frechet_distance, image_statistics, pixel_summary,
                                    shift_is_large)
from _run_fixture import make_run, pattern, write_image


def test_domain_auc_near_half_for_one_distribution_and_one_for_separable_sets() -> None:
    rng = np.random.default_rng(0)
    same = domain_auc(rng.normal(size=(150, 8)), rng.normal(size=(150, 8)), n_boot=200)
    assert abs(same.auc - 0.5) < 0.1 and same.low < 0.5 < same.high
    apart = domain_auc(rng.normal(size=(60, 8)), rng.normal(size=(40, 8)) + 3, n_boot=200)
    assert apart.auc > 0.99 and apart.low > 0.95 and (apart.n_reference, apart.n_other) == (60, 40)
    with pytest.raises(ValueError, match=">= 5 rows"):
        domain_auc(np.zeros((3, 2)), np.zeros((10, 2)))


def test_frechet_distance_matches_its_definition_and_a_closed_form() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    from scipy.linalg import sqrtm

    # the definition, with scipy's general matrix square root (fine for these well-conditioned covariances)
    direct = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(direct, rel=1e-6)
    shifted = b * 2 + 1  # means differ by 1 per axis, sds 1 vs 2: about 3 * (1 + 1) = 6
    assert frechet_distance(a, shifted) == pytest.approx(6.0, rel=0.1)
    few = rng.normal(size=(20, 50))  # fewer images than dimensions: singular covariances, still finite and >= 0
    assert 0 <= frechet_distance(few, few + 0.1) < frechet_distance(few, few + 1) < np.inf


def test_pixel_and_image_statistics() -> None:
    img = np.linspace(0, 1, 101, dtype=np.float32).reshape(101, 1, 1)
    s = pixel_summary(img)
    assert s["mean"] == pytest.approx(0.5) and s["p50"] == pytest.approx(0.5) and s["p1"] == pytest.approx(0.01)
    assert s["sd"] == pytest.approx(np.std(np.linspace(0, 1, 101)))
    rows = [{"width": w, "height": 10, "mode": m, "channels": 1, **s} for w, m in ((10, "L"), (20, "L"), (30, "RGB"))]
    stats = image_statistics(rows)
    assert stats["n"] == 3 and stats["width"]["median"] == 20 and stats["width"]["q1"] == 15
    assert stats["modes"] == {"L": pytest.approx(2 / 3, abs=1e-4), "RGB": pytest.approx(1 / 3, abs=1e-4)}
    assert stats["channels"] == {"1": 1.0} and "channelss" not in stats  # metrics.json had a key 'channelss'
    assert category_shares(["AP", "PA", "PA", ""]) == {"AP": 0.25, "PA": 0.5, "missing": 0.25}


def test_shift_rule() -> None:
    rng = np.random.default_rng(0)
    apart = domain_auc(rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 9, n_boot=0)
    assert shift_is_large(apart, 0.0) and shift_is_large(None, 0.5) and not shift_is_large(None, 0.1)


def _external(root, rng, bright: bool, n: int = 12):
    for i in range(n):
        label = i % 2
        pixels = pattern(rng, label)
        if bright:  # another "hospital": inverted contrast and a grid burnt in
            pixels = 255 - pixels
            pixels[::6] = 255
        write_image(root / ("NORMAL", "PNEUMONIA")[label] / f"pat{500 + i}_img0.png", pixels)
    return root


def test_external_evaluation_measures_shift_and_ood(tmp_path) -> None:
    run = make_run(tmp_path, seed=3)
    model, meta = load_checkpoint(run / "best.safetensors")
    # OOD statistics from the run's own training/validation images (as finalize would)
    from medclass.data.dataset import ImageDataset
    from medclass.data.table import DataTable
    from medclass.data.transforms import inference_transform
    from medclass.inference import predict_dataset

    table = DataTable.from_csv(run / "split.csv", list(meta.classes))
    feats = {s: predict_dataset(model, ImageDataset(table.subset(s), classes=list(meta.classes),
                                                    transform=inference_transform(meta.preprocessing)), features=True)
             for s in ("train", "val")}
    ood = fit_mahalanobis(feats["train"].stage_features, feats["train"].labels, feats["val"].stage_features)
    save_checkpoint(run / "best.safetensors", model, meta, ood=ood)

    rng = np.random.default_rng(9)
    ext = _external(tmp_path / "shifted", rng, bright=True)
    result = evaluate(run, data=str(ext), n_boot=20, cam_samples=0, num_workers=0)
    m = json.loads(result.files["metrics"].read_text())
    shift, flagged = m["shift"], m["ood"]
    assert flagged["available"] and flagged["n_scored"] == 12
    assert flagged["share_flagged"] == pytest.approx(np.mean(result.predictions["ood_score"] > ood.threshold))
    assert "false_alarm_rate" not in flagged  # external images: a flag is not known to be false
    own = json.loads(evaluate(run, n_boot=20, cam_samples=0, num_workers=0).files["metrics"].read_text())["ood"]
    fa = own["false_alarm_rate"]  # the run's held-out test images: every flag is a false alarm
    assert fa["value"] == own["share_flagged"] and fa["low"] <= fa["value"] <= fa["high"]
    assert fa["expected"] == pytest.approx(1 - ood.quantile) and own["share_flagged_ci"] == [fa["low"], fa["high"]]
    d = shift["domain_classifier"]
    assert d["auc"] > 0.8 and d["low"] <= d["auc"] <= d["high"] and d["n_reference"] == 20 and d["n_other"] == 12
    assert shift["frechet_distance"] > shift["frechet_within_training"]
    stats = shift["image_statistics"]
    assert stats["training"]["n"] == 20 and stats["external"]["mean"]["median"] > stats["training"]["mean"]["median"]
    assert shift["large"] and "Large dataset shift" in shift["warning"]
    html = result.files["report"].read_text()
    assert 'id="shift"' in html and "Large dataset shift" in html and "Domain classifier AUC" in html

    own = evaluate(run, n_boot=0, cam_samples=0, num_workers=0, report=False)  # the run's own test split
    assert own.metrics["shift"] is None and own.metrics["ood"]["available"]


def test_old_checkpoint_reports_no_ood_and_cli_warns(tmp_path) -> None:
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    _register_all()
    run = make_run(tmp_path, seed=4)
    ext = _external(tmp_path / "shifted", np.random.default_rng(2), bright=True)
    result = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(ext), "--n-boot", "0", "--cam-samples", "0",
                                      "--num-workers", "0"])
    assert result.exit_code == 0, result.output
    m = json.loads((run / "evaluation-shifted-test" / "metrics.json").read_text())
    assert m["ood"]["available"] is False and "no OOD statistics" in m["ood"]["note"]
    assert m["shift"]["large"] and "Large dataset shift" in " ".join(result.output.split())


def test_wilson_interval_matches_scipy() -> None:
    from scipy.stats import binomtest

    from medclass.metrics.stats import wilson_interval

    for k, n in ((10, 84), (0, 20), (20, 20), (52, 200)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)
