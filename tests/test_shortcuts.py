"""Shortcut checks (issue 25): CAM location on hand-made arrays, occlusion AUCs on synthetic sets where the label
sits in a border marker (the check must flag it) or in the centre (it must not), and ``medclass evaluate`` as typed."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from _run_fixture import make_run
from medclass.data.dataset import ImageDataset
from medclass.data.table import DataTable
from medclass.data.transforms import build_transform
from medclass.errors import ConfigError
from medclass.evaluation.sections.base import Context, Options
from medclass.evaluation.sections.shortcuts import Shortcuts, parse_shortcuts
from medclass.inference import predict_dataset
from medclass.metrics.cam_location import BORDER_FRACTION, border_band, cam_peak_inside, cam_share_inside, mean_ci
from medclass.metrics.occlusion import above_chance, occlusion_aucs

SIDE = 32  # band = round(32 / 8) = 4 px on each side
CLASSES = ["negative", "positive"]


# -- pure functions on hand-made arrays ---------------------------------------------------------------------------
def test_border_band_is_the_outer_eighth_of_each_side():
    assert BORDER_FRACTION == 1 / 8
    band = border_band((SIDE, SIDE))
    assert band[:4].all() and band[-4:].all() and band[:, :4].all() and band[:, -4:].all()
    assert not band[4:28, 4:28].any()
    assert band.sum() == SIDE * SIDE - 24 * 24
    vol = border_band((16, 8, 8))  # widths 2, 1, 1: centre 12 x 6 x 6
    assert vol.sum() == 16 * 8 * 8 - 12 * 6 * 6 and not vol[2:14, 1:7, 1:7].any()


def test_cam_share_and_peak_by_hand_in_2d_and_3d():
    cam = np.array([[0.0, 0.2, 0.0], [0.1, 1.0, 0.0], [0.0, 0.0, 0.7]])
    lesion = np.zeros((3, 3), bool)
    lesion[1, 1] = True
    assert cam_share_inside(cam, lesion) == pytest.approx(1.0 / 2.0)  # total mass 2.0
    assert cam_peak_inside(cam, lesion) is True
    assert cam_share_inside(cam, ~lesion) == pytest.approx(0.5) and cam_peak_inside(cam, ~lesion) is False
    vol = np.zeros((2, 3, 3))
    vol[0, 0, 0], vol[1, 2, 2] = 3.0, 1.0
    mask = np.zeros((2, 3, 3), bool)
    mask[1] = True
    assert cam_share_inside(vol, mask) == pytest.approx(0.25) and cam_peak_inside(vol, mask) is False
    assert math.isnan(cam_share_inside(np.zeros((2, 2)), np.ones((2, 2), bool)))
    with pytest.raises(ValueError, match="shape"):
        cam_share_inside(np.ones((2, 2)), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="non-negative"):
        cam_share_inside(-np.ones((2, 2)), np.ones((2, 2), bool))


def test_mean_ci_leaves_out_nan_and_resamples_patients():
    out = mean_ci([1.0, 0.0, np.nan, 1.0], ["a", "a", "b", "c"], n_boot=0)
    assert out == {"value": 2 / 3, "low": None, "high": None, "n": 3}
    values = np.tile([1.0, 0.0], 20)
    ci = mean_ci(values, np.repeat(np.arange(20), 2), n_boot=300)  # each patient one 1 and one 0: every replicate 0.5
    assert ci["low"] == ci["high"] == ci["value"] == 0.5
    ci = mean_ci(values, None, n_boot=300)
    assert ci["low"] < 0.5 < ci["high"]


def test_occlusion_aucs_match_sklearn_and_differences_are_paired():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(30, int), np.ones(30, int)]
    full = np.clip(0.5 * y + rng.uniform(0, 0.6, 60), 0, 1)
    part = rng.uniform(0, 1, 60)
    part[:5] = np.nan  # rows the occluded pass could not build: left out of both
    probs = {"full": np.c_[1 - full, full], "border_only": np.c_[1 - part, part]}
    out = occlusion_aucs(y, probs, groups=np.arange(60) // 2, n_boot=200)
    assert out["full"]["value"] == pytest.approx(roc_auc_score(y, full)) and out["full"]["n"] == 60
    ok = ~np.isnan(part)
    assert out["border_only"]["value"] == pytest.approx(roc_auc_score(y[ok], part[ok])) and out["border_only"]["n"] == 55
    diff = out["border_only"]["difference"]
    assert diff["value"] == pytest.approx(roc_auc_score(y[ok], part[ok]) - roc_auc_score(y[ok], full[ok]))
    assert diff["low"] <= diff["value"] <= diff["high"]
    assert not above_chance(out["border_only"]) and above_chance(out["full"])


def test_multi_label_occlusion_auc_is_the_macro_auc_of_the_findings():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (80, 3)).astype(float)
    y[:10, 2] = np.nan  # masked labels: left out of that finding only
    p = np.clip(0.4 * np.nan_to_num(y) + rng.uniform(0, 0.6, (80, 3)), 0, 1)
    out = occlusion_aucs(y, {"full": p, "border_only": p[::-1]}, groups=None, n_boot=100)
    known = [~np.isnan(y[:, k]) for k in range(3)]
    macro = np.mean([roc_auc_score(y[m, k], p[m, k]) for k, m in enumerate(known)])
    assert out["full"]["value"] == pytest.approx(macro) and out["full"]["low"] < macro < out["full"]["high"]
    flipped = np.mean([roc_auc_score(y[m, k], p[::-1][m, k]) for k, m in enumerate(known)])
    assert out["border_only"]["difference"]["value"] == pytest.approx(flipped - macro)


def test_occlusion_of_a_volume_input_keeps_the_band_along_every_axis():
    from medclass.evaluation._occlusion import Occluded

    class OneVolume(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"image": torch.ones(1, 16, 8, 8), "index": i, "path": "v.nii.gz"}

    border = Occluded(OneVolume(), "border_only")[0]["image"][0].numpy()
    centre = Occluded(OneVolume(), "centre_only")[0]["image"][0].numpy()
    assert (border == border_band((16, 8, 8))).all() and (centre == ~border_band((16, 8, 8))).all()
    assert centre.sum() == 12 * 6 * 6


def test_unknown_check_is_refused_with_a_hint():
    with pytest.raises(ConfigError, match="occlusion"):
        parse_shortcuts("oclusion")


# -- synthetic sets: where does the label live? ------------------------------------------------------------------
class MeanReader(torch.nn.Module):
    """A model that reads the whole image: its logit is the mean of the normalised input (a CNN with global
    average pooling could learn as much). Wherever the label lives in the data, it finds it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(40.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.mean(dim=(1, 2, 3))[:, None]


def _synthetic(root: Path, where: str, n_patients: int = 24, seed: int = 0) -> DataTable:
    """Grey images, noise everywhere; the label is a 4 x 4 marker in the top-left corner (``where="border"``,
    inside the band) or a 8 x 8 square in the middle (``where="centre"``): bright for positive, dark for negative.
    Also a mask per image: the centre square (what a lung mask would cover)."""
    rng = np.random.default_rng(seed)
    rows = []
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[8:24, 8:24] = 255
    Image.fromarray(mask).save(root / "mask.png")
    for p in range(n_patients):
        for k in range(2):
            label = (p + k) % 2
            img = rng.uniform(0.45, 0.55, (SIDE, SIDE))
            value = 0.9 if label else 0.1
            if where == "border":
                img[0:4, 0:4] = value
            else:
                img[12:20, 12:20] = value
            path = root / f"{where}_{p}_{k}.png"
            Image.fromarray((img * 255).round().astype(np.uint8)).save(path)
            rows.append({"path": str(path), "label": CLASSES[label], "patient": f"p{p}", "split": "test",
                         "frame": -1, "mask": "mask.png"})
    return DataTable(pd.DataFrame(rows), CLASSES)


def _context(table: DataTable, mask_root: str = "", mask_column: str = "") -> Context:
    ds = ImageDataset(table, CLASSES, transform=build_transform("none", SIDE, 1, [0.5], [0.25], train=False))
    model = MeanReader().eval()
    pred = predict_dataset(model, ds, batch_size=16, multi_label=False)
    meta = SimpleNamespace(temperature=1.0, classes=CLASSES, task="single_label", multi_label=False)
    frame = pd.DataFrame({"path": pred.paths, "label": [CLASSES[i] for i in pred.labels]})
    options = Options(n_boot=300, shortcuts=("occlusion",), num_workers=0, mask_column=mask_column, mask_root=mask_root)
    return Context(SimpleNamespace(model=model, meta=meta), table, ds, pred, frame, options)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("shortcut_sets")
    return {where: (root, _synthetic(root, where)) for where in ("border", "centre")}


def test_a_border_marker_that_carries_the_label_is_caught(synthetic):
    root, table = synthetic["border"]
    result = Shortcuts().compute(_context(table, str(root), "mask"))
    v = result.occlusion["variants"]
    # hand-checked: with the centre at the mean, the marker alone sets the mean (+-0.4 / 0.25 over 16 of 1024 px),
    # so the border-only input separates the classes perfectly; without the marker only noise is left
    assert v["full"]["value"] == 1.0 and v["border_only"]["value"] == 1.0
    assert v["border_only"]["low"] == 1.0
    assert v["centre_only"]["low"] < 0.5 < v["centre_only"]["high"]
    assert v["mask_removed"]["value"] == 1.0 and v["mask_only"]["low"] < 0.5 < v["mask_only"]["high"]
    assert result.flagged
    assert "clearly above chance" in result.verdicts[0] and "outside the centre" in result.verdicts[0]
    assert any("reads something outside the masked region" in s for s in result.verdicts)
    assert result.to_dict()["shortcuts"]["flagged"] is True


def test_a_label_in_the_centre_is_not_flagged(synthetic):
    root, table = synthetic["centre"]
    result = Shortcuts().compute(_context(table, str(root), "mask"))
    v = result.occlusion["variants"]
    assert v["full"]["value"] == 1.0 and v["centre_only"]["value"] == 1.0 and v["mask_only"]["value"] == 1.0
    assert v["border_only"]["low"] < 0.5 < v["border_only"]["high"]
    assert not above_chance(v["mask_removed"]) and v["mask_removed"]["low"] < 0.5
    assert not result.flagged
    assert result.verdicts[0].startswith("Border only: AUC") and "not clearly above chance" in result.verdicts[0]


# -- medclass evaluate, as typed ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("shortcut_cli")
    run = make_run(root)
    split = pd.read_csv(run / "split.csv")
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 255
    Image.fromarray(mask).save(root / "images" / "lungs.png")
    split["mask"] = "lungs.png"  # relative: read from the run's data folder, like its images
    split.to_csv(run / "split.csv", index=False)
    return run


def _cli(*args: str):
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    _register_all()
    return CliRunner().invoke(app, ["evaluate", *args])


def test_evaluate_shows_the_section_in_console_json_report_and_card(tiny_run):
    out = _cli(str(tiny_run), "--n-boot", "50", "--cam-samples", "0", "--num-workers", "0", "--shortcut-images", "6",
               "--mask-column", "mask")
    assert out.exit_code == 0, out.output
    m = json.loads((tiny_run / "metrics.json").read_text())
    assert m["sections"]["shortcuts"]["applied"] is True
    s = m["shortcuts"]
    assert set(s["occlusion"]["variants"]) == {"full", "border_only", "centre_only", "mask_only", "mask_removed"}
    preds = pd.read_csv(tiny_run / "predictions.csv")
    auc = roc_auc_score(preds["label"] == "PNEUMONIA", preds["prob_PNEUMONIA"])
    assert s["occlusion"]["variants"]["full"]["value"] == pytest.approx(auc)
    cam = s["cam"]
    assert cam["n_images"] == 6 and cam["band_area"] == pytest.approx(1 - 24 * 24 / 32 ** 2)
    assert {"border_share", "mask_share", "mask_hit_rate"} <= set(cam)
    assert "Shortcuts: Border only" in out.output
    report = (tiny_run / "report.html").read_text()
    assert 'id="shortcuts"' in report and "What these checks cannot rule out" in report
    assert "**Shortcuts" in (tiny_run / "model_card.md").read_text()


def test_shortcuts_none_turns_the_section_off(tiny_run, tmp_path):
    out = _cli(str(tiny_run), "--n-boot", "0", "--cam-samples", "0", "--num-workers", "0", "--shortcuts", "none",
               "--out", str(tmp_path / "ev"))
    assert out.exit_code == 0, out.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["sections"]["shortcuts"] == {"title": "Shortcuts: occlusion and where the model looks", "applied": False,
                                          "reason": "turned off (--shortcuts none)"}
    bad = _cli(str(tiny_run), "--shortcuts", "occlusio", "--out", str(tmp_path / "ev2"))
    assert bad.exit_code != 0 and "did you mean" in bad.output.lower()


def test_masks_that_cannot_be_read_leave_the_mask_checks_out_and_say_so(tmp_path):
    """Every mask missing: the border/centre checks still run; the mask variants are named as not run, no crash."""
    run = make_run(tmp_path)
    split = pd.read_csv(run / "split.csv")
    split["mask"] = "nowhere.png"
    split.to_csv(run / "split.csv", index=False)
    out = _cli(str(run), "--n-boot", "20", "--cam-samples", "0", "--num-workers", "0", "--shortcut-images", "4",
               "--mask-column", "mask")
    assert out.exit_code == 0, out.output
    assert "not used (file does not exist)" in out.output
    s = json.loads((run / "metrics.json").read_text())["shortcuts"]
    assert set(s["occlusion"]["variants"]) == {"full", "border_only", "centre_only"}
    assert "no readable mask" in s["not_run"]["mask"] and "mask_share" not in s["cam"]
