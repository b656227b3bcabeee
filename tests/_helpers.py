"""Helpers shared by several test modules: four real X-rays of the chest X-ray sample shipped in the package
(XRAYS, xray_paths: no ../shared needed) and a seeded checkpoint calibrated on them (make_checkpoint), a tiny
learnable image folder and its training config (make_images, tiny_config), a tiny learnable multi-label CSV and
its config (write_multilabel_csv, multilabel_config), a synthetic run folder (make_fake_run) and the loader of
bench/bench_api.py (load_bench_api)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from safetensors.torch import save_file

from medclass.config import RunConfig, apply_overrides, save_config
from medclass.data.catalog import sample_path
from medclass.data.io import read_image
from medclass.data.transforms import build_transform
from medclass.models import create_model
from medclass.artifacts.checkpoint import build_meta, save_checkpoint

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_api.py"

# four real chest X-rays (96 px grey JPEGs) of the sample inside the package (medclass/sample_data/chest_xray)
XRAYS = ["NORMAL/IM-0005-0001.jpeg", "NORMAL/IM-0009-0001.jpeg", "PNEUMONIA/person1002_bacteria_2933.jpeg",
         "PNEUMONIA/person1016_virus_1704.jpeg"]


def xray_paths() -> list[Path]:
    """The files of XRAYS inside the installed package: real images that every clone has."""
    return [sample_path() / name for name in XRAYS]


def make_checkpoint(path: Path, model_name: str = "simple_cnn", classes: tuple[str, ...] = ("NORMAL", "PNEUMONIA"),
                    in_chans: int = 1, image_size: int = 64, threshold: float = 0.4, temperature: float = 1.0,
                    metrics: dict | None = None, seed: int = 0) -> Path:
    """A checkpoint with seeded random weights, well conditioned on the real X-rays in XRAYS: the BatchNorm
    statistics are theirs (an untrained network's features hardly differ between images otherwise, and the head
    would have to amplify float32 rounding a million times), and the classifier is rescaled so that their logits
    are centred with standard deviation 2 (probabilities spread, not all 0.5)."""
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=len(classes), in_chans=in_chans)
    tf = build_transform("none", image_size, in_chans, [0.5] * in_chans, [0.25] * in_chans, train=False)
    condition(model, torch.stack([tf(read_image(p, size_hint=image_size)) for p in xray_paths()]))
    meta = build_meta(classes=list(classes), model_name=model_name, in_chans=in_chans, image_size=image_size,
                      mean=[0.5] * in_chans, std=[0.25] * in_chans, threshold=threshold, temperature=temperature,
                      metrics=metrics or {}, config={"data": {"path": "chest_xray_sample", "patient_regex": "chest_xray"}})
    return save_checkpoint(path, model, meta)


def condition(model: torch.nn.Module, x: torch.Tensor) -> None:
    """BatchNorm statistics = those of the batch ``x``, and the classifier rescaled so that the logits of ``x`` are
    centred with standard deviation 2 (see :func:`make_checkpoint`)."""
    head = model.get_classifier()
    with torch.no_grad():
        norms = {m: m.momentum for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        for m in norms:  # running statistics = those of this one batch
            m.reset_running_stats()
            m.momentum = None
        model.train()(x)
        for m, momentum in norms.items():
            m.momentum = momentum
        z = model.eval()(x)
        scale = 2.0 / z.std(dim=0).clamp_min(1e-8)
        head.bias.copy_((head.bias - z.mean(dim=0)) * scale)
        head.weight.mul_(scale[:, None])


def add_xray_ood(path: Path) -> Path:
    """Store out-of-distribution statistics in a :func:`make_checkpoint` file, fitted on the features of
    every 6th X-ray of the packaged sample (half train, half validation): chest X-rays score low,
    fundus photographs and head CTs far above the threshold."""
    import medclass
    from medclass.artifacts import load_checkpoint
    from medclass.inference import forward_with_features
    from medclass.metrics.ood import fit_mahalanobis
    from medclass.serving.predictor import Predictor

    sample = sorted((Path(medclass.__file__).parent / "sample_data" / "chest_xray").rglob("*.jpeg"))[::6]
    predictor = Predictor.from_checkpoint(path)
    with torch.no_grad():
        x = torch.from_numpy(predictor.preprocess([predictor.load(s) for s in sample]))
        features = forward_with_features(predictor.model, x)[2].numpy()
    labels = np.array([s.parent.name == "PNEUMONIA" for s in sample], int)
    model, meta = load_checkpoint(path)
    return save_checkpoint(path, model, meta, ood=fit_mahalanobis(features[::2], labels[::2], features[1::2]))


def covid_style_csv(folder: Path, per_class: int = 40) -> tuple[Path, list[str]]:
    """An outside data set's CSV over the packaged sample X-rays, as a COVID collection ships it: columns
    ``filename, finding, patient_id, view``, findings ``covid`` / ``non_covid`` (sorted, ``non_covid`` would be
    the positive class), two ``unknown`` rows, two lateral views, and one file listed under two patient ids.
    Returns the CSV and the data flags that read it (images under ``--image-root``)."""
    import medclass

    root = Path(medclass.__file__).parent / "sample_data" / "chest_xray"
    rows = []
    for label, finding in (("PNEUMONIA", "covid"), ("NORMAL", "non_covid")):
        for i, path in enumerate(sorted((root / label).glob("*.jpeg"))[:per_class]):
            rows.append({"filename": f"{label}/{path.name}", "finding": finding, "patient_id": f"{finding}-{i // 2}",
                         "view": "L" if i in (5, 6) else "PA"})
    rows[0]["finding"] = rows[1]["finding"] = "unknown"
    rows.append({**rows[10], "patient_id": "covid-99"})  # the same file under a second patient id
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    return folder / "metadata.csv", ["--image-root", str(root), "--path-column", "filename", "--label-column", "finding",
                                     "--patient-column", "patient_id", "--label-map", "unknown=drop",
                                     "--where", "view == 'PA'"]


def make_images(root: Path, n_per_class: int = 24, size: int = 40, seed: int = 0) -> Path:
    """Two learnable classes: 'disk' images have a bright blob, 'plain' ones only noise; one patient per 2 images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for label in ("disk", "plain"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = rng.normal(0.3, 0.08, (size, size))
            if label == "disk":
                cy, cx = rng.integers(10, size - 10, 2)
                img += 0.5 * (((yy - cy) ** 2 + (xx - cx) ** 2) < 36)
            arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(arr).save(root / label / f"p{label}{i // 2:03d}_{i % 2}.png")
    return root


def tiny_config(data: Path, workspace: Path, experiment: str = "tiny", **overrides: str) -> RunConfig:
    items = {
        "data.path": str(data), "data.patient_regex": r"^(p[a-z]+\d+)_", "data.near_duplicates": "false",
        "model.name": "simple_cnn", "model.in_chans": "1", "model.image_size": "32",
        "train.epochs": "3", "train.batch_size": "8", "train.num_workers": "0", "train.lr": "0.003",
        "train.early_stopping": "0", "train.augment": "light", "workspace": str(workspace), "experiment": experiment,
    }
    items.update(overrides)
    return apply_overrides(RunConfig(), [f"{k}={v}" for k, v in items.items()])


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


def multilabel_config(csv: Path, workspace: Path, experiment: str, *overrides: str) -> RunConfig:
    """A 1-epoch simple_cnn multi-label run at 32 px on ``csv`` (its pipe-list column), one worker."""
    return apply_overrides(RunConfig(), [
        f"data.path={csv}", "data.patient_column=patient", "data.labels_from=finding_labels",
        "data.near_duplicates=false", "model.name=simple_cnn", "model.in_chans=1", "model.image_size=32",
        "train.epochs=1", "train.batch_size=8", "train.num_workers=0", "train.class_weights=balanced",
        f"workspace={workspace}", f"experiment={experiment}", *overrides])


def make_fake_run(workspace: Path, project: str, experiment: str, *, model: str = "simple_cnn", epochs: int = 3,
                  image_size: int = 32, probs: np.ndarray | None = None, labels: np.ndarray | None = None,
                  patients: list[str] | None = None, metrics_json: dict | None = None, gpu: bool = False) -> Path:
    """A run folder with config.yaml, metrics.csv, best.safetensors and optionally predictions/metrics.json."""
    cfg = RunConfig(project=project, experiment=experiment, workspace=str(workspace))
    cfg.model.name, cfg.model.image_size, cfg.train.monitor = model, image_size, "val_auc"
    run = cfg.run_dir()
    run.mkdir(parents=True)
    save_config(cfg, run / "config.yaml")
    e = np.arange(epochs)
    pd.DataFrame({
        "epoch": e, "train_loss": 1.0 / (e + 1), "train_acc": 0.6 + 0.1 * e, "train_auc": 0.7 + 0.05 * e,
        "val_loss": 1.2 / (e + 1), "val_acc": 0.55 + 0.1 * e, "val_auc": [0.6, 0.8, 0.75, 0.7, 0.65][:epochs],
        "lr": 1e-3, "epoch_time_s": 2.0 + e, "peak_rss_mb": 500.0 + 10 * e,
        "gpu_max_allocated_mb": 100.0 + e if gpu else np.nan,
    }).to_csv(run / "metrics.csv", index=False)
    # 4*1*6*6 + 4 = 148 learned values; the BatchNorm statistics are not parameters
    save_file({"conv.weight": torch.zeros(4, 1, 6, 6), "conv.bias": torch.zeros(4), "bn.running_mean": torch.zeros(4),
               "bn.running_var": torch.ones(4), "bn.num_batches_tracked": torch.zeros((), dtype=torch.int64)},
              str(run / "best.safetensors"))
    (run / "classes.json").write_text(json.dumps(["normal", "abnormal"]))
    if probs is not None:
        pd.DataFrame({"path": [f"img{i}.png" for i in range(len(probs))],
                      "patient": patients if patients is not None else [f"p{i}" for i in range(len(probs))],
                      "label": np.where(labels == 1, "abnormal", "normal"), "prob_normal": 1 - probs,
                      "prob_abnormal": probs, "predicted": np.where(probs >= 0.5, "abnormal", "normal"),
                      "correct": (probs >= 0.5) == (labels == 1)}).to_csv(run / "predictions.csv", index=False)
    if metrics_json is not None:
        (run / "metrics.json").write_text(json.dumps(metrics_json))
    return run


def load_bench_api():
    spec = importlib.util.spec_from_file_location("bench_api", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
