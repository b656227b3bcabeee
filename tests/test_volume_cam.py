"""Grad-CAM of CT/MRI volumes: every 3-D model, a known-answer 3-D CAM, 2.5-D maps, montages, orthogonal views,
the share of the CAM inside a lesion mask, and `medclass evaluate --mask-column` as typed."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from medclass.cli import _register_all, app
from medclass.data.volumes.prepare import VolumePrep, prepare, prepare_mask
from medclass.data.volumes.read import Volume
from medclass.explain import compute_cam, find_target_layer
from medclass.explain.volume import (cam_peak, colour_bar, montage_slices, orthogonal_views, slice_montage,
                                     volume_cams)
from medclass.metrics.cam_location import cam_peak_inside, cam_share_inside, mask_fraction, summarise_cam_location
from medclass.models import create_model, list_models, model_info

_register_all()
runner = CliRunner()
HEAVY_3D = {"densenet121_3d"}  # needs >= 32 voxels a side: slow on a CPU


def _side(name: str) -> int:
    return model_info(name).min_input_size


@cache
def _binary_3d(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=2, in_chans=1)


def _n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY_3D else n
                                  for n in list_models(spatial_dims=3)])
def test_cam_for_every_registered_3d_model(name: str) -> None:
    model = _binary_3d(name).train()
    assert find_target_layer(model) is model.get_submodule(model_info(name).cam_layer)
    side = _side(name)
    torch.manual_seed(1)
    cams = compute_cam(model, torch.randn(2, 1, side, side, side - 2 if side > 16 else side), target_class=[0, 1])
    assert cams.shape == (2, side, side, side - 2 if side > 16 else side) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0.0 and cams.max() <= 1.0 and cams.max() > 0
    assert _n_hooks(model) == 0 and model.training


class _Brightness3D(nn.Module):
    """logit = mean(ReLU(x)): its Grad-CAM at ``features`` is ReLU(x) itself (gradient 1/N on every channel)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 1, 1), nn.ReLU())
        self.pool, self.fc = nn.AdaptiveAvgPool3d(1), nn.Linear(1, 1)
        for layer in (self.features[0], self.fc):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))

    def get_classifier(self) -> nn.Module:
        return self.fc


def _blob_volume(side: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A volume in [0, 1] with a bright 4^3 blob at a random place, and the blob's mask."""
    rng = np.random.default_rng(seed)
    volume = rng.uniform(0.0, 0.2, (side, side, side)).astype(np.float32)
    x, y, z = rng.integers(2, side - 6, 3)
    mask = np.zeros_like(volume, bool)
    mask[x:x + 4, y:y + 4, z:z + 4] = True
    volume[mask] = 1.0
    return volume, mask


def test_known_answer_3d_cam_lies_on_the_planted_blob() -> None:
    volume, mask = _blob_volume()
    model = _Brightness3D()
    x = torch.from_numpy((volume - 0.5) / 0.25)[None, None]  # normalised: background < 0, blob > 0
    cam = compute_cam(model, x, target_class=1, target_layer=model.features)[0]
    assert cam.shape == volume.shape
    assert cam_peak_inside(cam, mask) and mask[cam_peak(cam)]
    share = cam_share_inside(cam, mask)
    assert share > 0.99  # ReLU(x) is zero off the blob
    rng = np.random.default_rng(1)
    random_mask = np.zeros(mask.size, bool)
    random_mask[rng.choice(mask.size, int(mask.sum()), replace=False)] = True
    assert cam_share_inside(cam, random_mask.reshape(mask.shape)) < 0.1 < share
    evidence_against = compute_cam(model, x, target_class=0, target_layer=model.features)[0]
    assert evidence_against.max() == 0.0  # the negated logit has no positive evidence anywhere


def test_2_5d_cam_is_placed_on_the_stacked_slices() -> None:
    prep = VolumePrep(size=(32, 32, 16), input="2.5d", in_chans=3)
    model = create_model("simple_cnn", num_classes=2, in_chans=3)
    torch.manual_seed(0)
    maps = volume_cams(model, torch.randn(2, 3, 32, 32), prep, target_class=1)
    assert maps.shape == (2, 32, 32, 16)
    assert maps[..., 6:9].max() > 0 and maps[..., :6].max() == 0 and maps[..., 9:].max() == 0
    np.testing.assert_array_equal(maps[..., 6], maps[..., 8])  # one in-plane map over the channel stack


def test_montage_and_orthogonal_views() -> None:
    volume, mask = _blob_volume()
    volume[:, :, :3] = volume[:, :, -2:] = 0.0  # empty edge slices (padding) are skipped
    zs = montage_slices(volume, 8)
    assert zs[0] == 3 and zs[-1] == 13 and len(zs) == 8
    cam = mask.astype(np.float32)
    image = slice_montage(volume, cam, k=8, tile=32)
    assert image.dtype == np.uint8 and image.shape[1] == 8 * 32 + colour_bar(10).shape[1]
    assert image.shape[0] == 2 * (32 + 14)  # slices, then the same slices with the CAM
    assert slice_montage(volume, None, k=4, tile=32).shape == (46, 128, 3)  # no CAM: slices only, no scale
    views = orthogonal_views(volume, cam, tile=48)
    assert views.shape[0] == 48 + 14 and views.shape[1] == 3 * 48 + colour_bar(10).shape[1]
    heat = views[14:, :48].astype(int)  # axial view through the peak shows the CAM: reddish pixels
    assert ((heat[..., 0] - heat[..., 2]) > 100).any()
    assert orthogonal_views(volume).shape == (14 + 192, 3 * 192, 3)  # no CAM: through the centre
    with pytest.raises(ValueError, match="same shape|volume's shape"):
        slice_montage(volume, cam[:-1])


def test_cam_location_functions_are_n_dimensional() -> None:
    cam2d = np.array([[0.0, 1.0], [3.0, 0.0]])
    assert cam_share_inside(cam2d, np.array([[0, 0], [1, 0]])) == 0.75
    assert cam_peak_inside(cam2d, np.array([[0, 0], [1, 0]])) and not cam_peak_inside(cam2d, np.array([[0, 1], [0, 0]]))
    assert np.isnan(cam_share_inside(np.zeros((3, 3, 3)), np.ones((3, 3, 3))))
    assert mask_fraction(np.ones((2, 2, 2))) == 1.0
    with pytest.raises(ValueError, match="the map has shape .* but the mask"):
        cam_share_inside(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        cam_share_inside(-np.ones((2, 2)), np.ones((2, 2)))
    rng = np.random.default_rng(0)
    shares = rng.uniform(0.5, 0.9, 60)
    out = summarise_cam_location(np.append(shares, np.nan), np.ones(61), np.full(61, 0.1),
                                 np.repeat(np.arange(31), 2)[:61].astype(str), n_boot=200)
    assert out["n"] == 60 and out["n_empty_cam"] == 1
    s = out["share_inside"]
    assert s["low"] < s["value"] < s["high"] and s["value"] == pytest.approx(shares.mean())
    assert out["excess"]["value"] == pytest.approx(shares.mean() - 0.1) and out["peak_inside"]["value"] == 1.0


def test_mask_is_resampled_like_its_image() -> None:
    hu = np.full((20, 20, 6), -1000.0, np.float32)
    hu[6:16, 4:12, 1:5] = 100.0
    affine = np.diag([-0.7, -0.7, 2.5, 1.0])  # LPS storage, anisotropic voxels (as LIDC)
    prep = VolumePrep(spacing=(1.0, 1.0, 1.0), size=(16, 16, 16), window="lung")
    image = prepare(Volume(hu, affine), prep)[0]
    mask = prepare_mask(Volume((hu > 0).astype(np.float32), affine), prep)
    assert mask.shape == image.shape and mask.dtype == bool and mask.any()
    # the mask lies on the bright lesion (bilinear image edges are partial voxels; the nearest-neighbour mask is not)
    assert image[mask].mean() > 0.8 and image[mask].min() > 0.4 and image[~mask].mean() < 0.3
    assert image[np.roll(mask, 3, axis=0)].mean() < 0.7  # a mask 3 voxels off does not


def _manifest(folder: Path, n: int = 24) -> Path:
    """Synthetic CT-like volumes (HU): class 'nodule' has a bright blob, whose mask is listed; 'clear' has none."""
    rng = np.random.default_rng(0)
    rows = []
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        label = "nodule" if i % 2 else "clear"
        hu = rng.normal(-800, 60, (16, 16, 16)).astype(np.float32)
        mask_path = ""
        if label == "nodule":
            x, y, z = rng.integers(3, 9, 3)
            mask = np.zeros_like(hu)
            mask[x:x + 5, y:y + 5, z:z + 5] = 1
            hu[mask > 0] = 40.0
            mask_path = f"masks/v{i}.nii.gz"
            nib.save(nib.Nifti1Image(mask, np.eye(4)), str(folder / mask_path))
        nib.save(nib.Nifti1Image(hu, np.eye(4)), str(folder / f"images/v{i}.nii.gz"))
        rows.append({"image": f"images/v{i}.nii.gz", "mask": mask_path, "patient_id": f"P{i}", "label": label})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


def _explain_and_serve(run: Path, ct: Path, tmp_path: Path) -> None:
    """`medclass explain` on a NIfTI file and a DICOM series folder; Predictor and the web app's volume view."""
    from PIL import Image

    from _volumes import write_series
    from medclass.serving.predictor import Predictor
    from medclass.serving.webapp import volume_analysis

    nifti = ct / "images" / "v1.nii.gz"
    series = write_series(np.asarray(nib.load(str(nifti)).dataobj, np.float32), (1.0, 1.0, 1.0), tmp_path / "series")
    out = runner.invoke(app, ["explain", str(run), str(nifti), str(series), "--out", str(tmp_path / "cams")])
    assert out.exit_code == 0, out.output
    views, montage = Image.open(tmp_path / "cams" / "v1_gradcam.png"), Image.open(tmp_path / "cams" / "v1_gradcam_montage.png")
    assert views.size[0] > 2.5 * views.size[1] > 0 and montage.size[0] > 3 * montage.size[1]  # 3 views; k slices wide
    assert (tmp_path / "cams" / "series_gradcam_montage.png").is_file()
    predictor = Predictor.from_checkpoint(run / "best.safetensors")
    found = predictor.explain_volume(nifti)
    assert found.cam.shape == found.volume.shape == (16, 16, 16) and 0 <= found.cam.min() <= found.cam.max() <= 1
    overlay, probs = predictor.explain(str(nifti))
    assert np.array_equal(overlay, found.views) and probs.shape == (2,) and probs.sum() == pytest.approx(1)
    calls: list[int] = []  # the model's own calls: one for probabilities and OOD score, one for the CAM
    hook = predictor.model.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    try:
        page = volume_analysis(predictor, nifti)
    finally:
        hook.remove()
    assert calls == [1, 1], calls  # the CAM layer was resolved by explain_volume above; before: 4 calls
    assert np.array_equal(page.overlay, found.views) and "nodule" in page.bars and page.decision
    scored = predictor.predict_with_ood([str(nifti)])
    assert page.decision.split(":")[0] == scored.loc[0, "predicted"]
    assert page.flagged == bool(scored["ood"].fillna(False).iloc[0])
    assert predictor.explain_with_ood(str(nifti))[1] == pytest.approx(
        scored.loc[0, [c for c in scored if c.startswith("prob_")]].to_numpy(float), abs=1e-6)


def test_evaluate_shows_slice_montages_and_cam_share_inside_masks(tmp_path: Path) -> None:
    data = _manifest(tmp_path / "ct")
    out = runner.invoke(app, ["train", "--data", str(data), "--path-column", "image", "--patient-column", "patient_id",
                              "--model", "resnet10_3d", "--in-chans", "1", "--image-size", "16", "--epochs", "1",
                              "--batch-size", "4", "--experiment", "cam", "--quiet", "--set",
                              f"workspace={tmp_path / 'ws'}", "--set", "train.num_workers=0", "--set", "data.window=lung"])
    assert out.exit_code == 0, out.output
    run = tmp_path / "ws" / "default" / "cam"
    out = runner.invoke(app, ["evaluate", str(run), "--mask-column", "mask", "--n-boot", "50", "--cam-samples", "1",
                              "--num-workers", "0", "--out", str(tmp_path / "ev")])
    assert out.exit_code == 0, out.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["sections"]["examples"]["applied"] and metrics["sections"]["cam_location"]["applied"]
    loc = metrics["cam_location"]
    n_nodules = int((pd.read_csv(tmp_path / "ev" / "predictions.csv")["label"] == "nodule").sum())
    assert loc["n_masks_listed"] == n_nodules >= 1 and loc["n"] + loc["n_empty_cam"] == n_nodules
    rows = pd.read_csv(tmp_path / "ev" / "cam_location.csv")
    assert len(rows) == n_nodules and (rows["mask_voxels"] > 0).all()
    assert rows["chance_share"].between(0.01, 0.2).all()  # a 5^3 blob in a 16^3 volume: 125 / 4096
    if loc["n"]:
        assert 0.0 <= loc["share_inside"]["value"] <= 1.0
    html = (tmp_path / "ev" / "report.html").read_text()
    assert "Grad-CAM inside the lesion mask" in html
    assert 'alt="top losses"' in html and 'alt="gallery"' in html
    assert "2-D only" not in html
    _explain_and_serve(run, data.parent, tmp_path)
    card = (tmp_path / "ev" / "model_card.md").read_text()
    assert ("Grad-CAM location" in card) == bool(loc["n"])
    assert "- **Input:** CT/MRI volume: 16 x 16 x 16 voxels" in card and " px," not in card  # not "16 x 16 px"
    # without the flag the section says why it did not run
    out = runner.invoke(app, ["evaluate", str(run), "--n-boot", "0", "--cam-samples", "0", "--num-workers", "0",
                              "--out", str(tmp_path / "ev0")])
    assert out.exit_code == 0, out.output
    status = json.loads((tmp_path / "ev0" / "metrics.json").read_text())["sections"]["cam_location"]
    assert not status["applied"] and "--mask-column" in status["reason"]
