"""MLflow tracking: a run folder logged to a SQLite store and to a real `mlflow server`; the live callback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from medclass.experiments.tracking import MLflowCallback, flatten, log_run_folder, tracking_uri  # noqa: E402
from _helpers import make_fake_run  # noqa: E402


def _check_logged(client: MlflowClient, run_id: str) -> None:
    run = client.get_run(run_id)
    assert run.data.params["model.name"] == "simple_cnn"
    assert run.data.params["model.image_size"] == "32"
    assert run.data.params["train.monitor"] == "val_auc"
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_auc"))
    assert history == [(0, 0.6), (1, 0.8), (2, 0.75)]
    assert [m.value for m in client.get_metric_history(run_id, "epoch_time_s")] == [2.0, 3.0, 4.0]
    assert run.data.metrics["test_roc_auc"] == pytest.approx(0.9)
    assert run.data.metrics["test_roc_auc_ci_low"] == pytest.approx(0.8)
    names = {f.path for f in client.list_artifacts(run_id)}
    assert {"config.yaml", "metrics.csv", "classes.json", "metrics.json", "model"} <= names
    assert [f.path for f in client.list_artifacts(run_id, "model")] == ["model/best.safetensors"]
    assert run.info.status == "FINISHED"


def _run_folder(tmp_path: Path) -> Path:
    return make_fake_run(tmp_path / "ws", "proj", "cnn", metrics_json={"metrics": {"roc_auc": 0.9},
                                                                         "ci": {"roc_auc": {"value": 0.9, "low": 0.8, "high": 0.97}}})


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_flatten_and_uri(tmp_path: Path) -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": ""}) == {"a.b": "1", "a.c": "1,2", "d": ""}
    assert tracking_uri(tmp_path / "mlruns") == (tmp_path / "mlruns").as_uri()


def test_log_run_folder_to_sqlite_store(tmp_path: Path, sqlite_uri: str) -> None:
    run_id = log_run_folder(_run_folder(tmp_path), sqlite_uri)
    client = MlflowClient(tracking_uri=sqlite_uri)
    _check_logged(client, run_id)
    assert client.get_experiment_by_name("proj") is not None
    db_dir = Path(sqlite_uri[len("sqlite:///"):]).parent
    assert (db_dir / "mlartifacts" / "proj").is_dir()  # artefacts beside the database, not in the cwd


class _Tiny(pl.LightningModule):
    """A logistic regression that logs val_loss per epoch, like the medclass module does."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.binary_cross_entropy_with_logits(self.lin(x)[:, 0], y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.binary_cross_entropy_with_logits(self.lin(x)[:, 0], y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_callback_logs_every_epoch_live(sqlite_uri: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).float())
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    cb = MLflowCallback(sqlite_uri, "live", "tiny")
    trainer = pl.Trainer(max_epochs=3, callbacks=[cb], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(_Tiny(), loader, loader)
    client = MlflowClient(tracking_uri=sqlite_uri)
    losses = [m.value for m in sorted(client.get_metric_history(cb.run_id, "val_loss"), key=lambda m: m.step)]
    assert len(losses) == 3 and losses[-1] < losses[0]  # one value per epoch, and it learned
    assert [m.value for m in client.get_metric_history(cb.run_id, "lr")] == [0.5, 0.5, 0.5]
    assert client.get_run(cb.run_id).info.status == "FINISHED"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path: Path):
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, proxied artefacts); stopped afterwards."""
    port = _free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "server-artifacts")]
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.skip(f"mlflow server did not start within 60 s: {(tmp_path / 'server.log').read_text()[-500:]}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
def test_log_run_folder_to_real_server(tmp_path: Path, mlflow_server: str) -> None:
    run_id = log_run_folder(_run_folder(tmp_path), mlflow_server, experiment_name="server-test")
    client = MlflowClient(tracking_uri=mlflow_server)
    _check_logged(client, run_id)
    stored = list((tmp_path / "server-artifacts").rglob("best.safetensors"))
    assert len(stored) == 1  # the server stored the checkpoint in its artefact destination
    assert stored[0].read_bytes() == (tmp_path / "ws" / "proj" / "cnn" / "best.safetensors").read_bytes()
    assert np.isfinite(client.get_run(run_id).data.metrics["val_loss"])


@pytest.mark.slow
def test_track_training_logs_live_and_artefacts(tmp_path: Path) -> None:
    """A real 2-epoch run: metrics logged by the callback during training, files added to the same MLflow run."""
    from PIL import Image

    from medclass.config import RunConfig
    from medclass.experiments.tracking import track_training

    rng = np.random.default_rng(0)
    for label in ("neg", "pos"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(12):
            a = rng.integers(0, 120, (40, 40), dtype=np.uint8) + (100 if label == "pos" else 0)
            Image.fromarray(a.astype(np.uint8)).save(tmp_path / "data" / label / f"{label}{i}.png")
    cfg = RunConfig(project="track", experiment="cnn", workspace=str(tmp_path / "ws"))
    cfg.data.path, cfg.data.patient_regex, cfg.data.near_duplicates = str(tmp_path / "data"), "none", False
    cfg.data.split_by = "image"  # one image per (synthetic) patient
    cfg.model.name, cfg.model.image_size, cfg.model.in_chans = "simple_cnn", 32, 1
    cfg.train.epochs, cfg.train.num_workers, cfg.train.baseline, cfg.train.batch_size = 2, 0, False, 8
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result, run_id = track_training(cfg, uri, progress=False)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "cnn" and run.data.params["model.name"] == "simple_cnn"
    logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_loss"))
    assert [s for s, _ in logged] == [0, 1]
    assert [v for _, v in logged] == pytest.approx(result.metrics["val_loss"].tolist(), rel=1e-5)  # = metrics.csv
    assert {"config.yaml", "metrics.csv", "split.csv", "threshold.json"} <= {f.path for f in client.list_artifacts(run_id)}
    assert [f.path for f in client.list_artifacts(run_id, "model")] == ["model/best.safetensors"]
    assert run.info.status == "FINISHED"


def test_cross_validation_summary_is_one_mlflow_run(tmp_path: Path, sqlite_uri: str) -> None:
    from medclass.config import RunConfig
    from medclass.experiments.tracking import log_cross_validation

    cfg = RunConfig(project="cvproj", experiment="cv5")
    (tmp_path / "cv_summary.json").write_text("{}")
    (tmp_path / "cv_folds.csv").write_text("fold\n0\n")
    summary = {"k": 5, "mean": {"roc_auc": 0.9}, "sd": {"roc_auc": 0.02},
               "pooled": {"roc_auc": {"value": 0.91, "low": 0.85, "high": float("nan")}}}
    run_id = log_cross_validation(tmp_path, sqlite_uri, summary, cfg)
    run = MlflowClient(tracking_uri=sqlite_uri).get_run(run_id)
    assert run.info.run_name == "cv5" and run.data.params["cv.k"] == "5"
    assert run.data.metrics == {"cv_mean_roc_auc": 0.9, "cv_sd_roc_auc": 0.02, "cv_pooled_roc_auc": 0.91,
                                "cv_pooled_roc_auc_ci_low": 0.85}
    names = {f.path for f in MlflowClient(tracking_uri=sqlite_uri).list_artifacts(run_id)}
    assert names == {"cv_summary.json", "cv_folds.csv"}


@pytest.mark.slow
def test_cross_validation_tracks_every_fold_and_the_summary(tmp_path: Path) -> None:
    """`train --folds K --mlflow URI`: one MLflow run per fold (live metrics and files) and one for the summary."""
    from medclass.experiments.crossval import cross_validate
    from _helpers import make_images, tiny_config

    data = make_images(tmp_path / "data", n_per_class=8)
    cfg = tiny_config(data, tmp_path / "ws", experiment="cv", **{"train.epochs": "1", "train.baseline": "false"})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cv = cross_validate(cfg, folds=2, progress=False, n_boot=20, mlflow=uri)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {"cv", "cv-fold0", "cv-fold1"}
    assert by_name["cv"].data.metrics["cv_pooled_roc_auc"] == pytest.approx(cv.summary["pooled"]["roc_auc"]["value"])
    for k in (0, 1):
        fold = by_name[f"cv-fold{k}"]
        assert fold.info.status == "FINISHED" and "val_loss" in fold.data.metrics


def test_multilabel_run_logs_its_macro_auc(tmp_path: Path, sqlite_uri: str) -> None:
    """A tiny multi-label run tracked live (val_auc = the macro AUC over the findings), then evaluated and
    logged again: the test macro and micro AUC with their CIs, as metrics.json has them."""
    import json

    from medclass.evaluation.evaluate import evaluate
    from medclass.experiments.tracking import track_training
    from _helpers import multilabel_config, write_multilabel_csv

    csv = write_multilabel_csv(tmp_path / "data")
    cfg = multilabel_config(csv, tmp_path / "ws", "ml", "project=mltrack", "train.baseline=false")
    uri = sqlite_uri
    result, run_id = track_training(cfg, uri, progress=False)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.params["data.labels_from"] == "finding_labels"
    logged = [m.value for m in sorted(client.get_metric_history(run_id, "val_auc"), key=lambda m: m.step)]
    assert logged == pytest.approx(result.metrics["val_auc"].tolist(), rel=1e-5) and len(logged) == 1
    assert "test_macro_auc" not in run.data.metrics  # not evaluated yet

    evaluate(result.run_dir, n_boot=50, cam_samples=0, report=False, num_workers=0)
    findings = json.loads((result.run_dir / "metrics.json").read_text())["findings"]
    again = client.get_run(log_run_folder(result.run_dir, uri)).data.metrics
    assert again["test_macro_auc"] == pytest.approx(findings["summary"]["macro_auc"])
    assert again["test_micro_auc"] == pytest.approx(findings["summary"]["micro_auc"])
    assert (again["test_macro_auc_ci_low"], again["test_macro_auc_ci_high"]) == pytest.approx(
        (findings["ci"]["macro_auc"]["low"], findings["ci"]["macro_auc"]["high"]))
    assert "test_roc_auc" not in again
