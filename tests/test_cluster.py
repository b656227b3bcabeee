"""More than one machine: fingerprints, the data check, the image cache and `predict` on a local Dask cluster of two
worker processes give exactly what one machine gives (medclass.data.cluster)."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medclass.config import DataConfig
from medclass.data.cluster import check_cluster, open_cluster
from medclass.errors import ConfigError
from medclass.data.catalog import sample_path
from _helpers import make_checkpoint


def test_a_cluster_is_named_by_an_address_or_local_n():
    assert check_cluster("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786" and check_cluster("local:2") == "local:2"
    with pytest.raises(ConfigError, match="tcp://HOST:8786.*local:N"):
        check_cluster("10.0.0.5")


def test_without_the_extra_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ConfigError, match=r'pip install "medclass\[cluster\]"'):
        with open_cluster("local:2"):
            pass


@pytest.fixture(scope="module")
def scheduler() -> str:
    """A local cluster of two worker processes (one thread each), shared by the tests below."""
    distributed = pytest.importorskip("distributed", reason='the cluster extra: pip install -e ".[cluster]"')
    environ = dict(os.environ)  # distributed leaves its workers' settings (OMP_NUM_THREADS=1...) in os.environ
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            yield cluster.scheduler_address
    finally:
        os.environ.clear()
        os.environ.update(environ)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Two class folders of five real X-rays each, one image twice (a leak to find) and one broken file."""
    root = tmp_path_factory.mktemp("cluster_data")
    sample = sample_path()
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir()
        for path in sorted((sample / label).glob("*.jpeg"))[:5]:  # 5 per class: enough patients for a split
            shutil.copy(path, root / label / path.name)
    first = next((root / "NORMAL").iterdir())
    shutil.copy(first, root / "PNEUMONIA" / f"copy_of_{first.name}")
    (root / "NORMAL" / "broken.jpeg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_fingerprints_and_image_cache_on_the_cluster_equal_one_machine(scheduler, images, tmp_path):
    from medclass.data.cache import build_cache
    from medclass.data.fingerprint import PART_GLOB, SHA256_COLUMNS, fingerprint
    from medclass.data.sources import load_source

    table = load_source(DataConfig(path=str(images), split_by="image"))
    here = fingerprint(table, workers=1)
    there = fingerprint(table, cluster=scheduler, cache_dir=tmp_path / "shared")  # the cache: on shared storage
    pd.testing.assert_frame_equal(there, here)
    assert (there["error"] != "").sum() == 1 and there.duplicated(list(SHA256_COLUMNS)).sum() == 1
    assert list((tmp_path / "shared").glob(PART_GLOB))
    local = build_cache(table, 32, 1, folder=tmp_path / "local", workers=1)
    remote = build_cache(table, 32, 1, folder=tmp_path / "remote", cluster=scheduler)
    np.testing.assert_array_equal(remote.images, local.images)
    np.testing.assert_array_equal(remote.valid, local.valid)


def test_cli_data_check_and_predict_on_the_cluster_equal_one_machine(scheduler, images, tmp_path, monkeypatch):
    from medclass.cli import _register_all, app
    from medclass.serving import predictor as predictor_module

    _register_all()
    runner = CliRunner()
    reports = {}
    for name, extra in (("here", []), ("there", ["--cluster", scheduler])):
        result = runner.invoke(app, ["data", "check", str(images), "--split-by", "image", "--workers", "1",
                                     "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
        reports[name] = json.loads((tmp_path / name / "data_check.json").read_text())
    assert reports["there"]["audit"] == reports["here"]["audit"] and reports["there"]["audit"]["exact_groups"]
    assert reports["there"]["sizes"] == reports["here"]["sizes"]

    ckpt = make_checkpoint(tmp_path / "m.safetensors")
    monkeypatch.setattr(predictor_module, "STREAM_ROWS", 4)  # three parts, spread over the two workers
    outputs = {}
    for name, extra in (("here", []), ("there", ["--cluster", scheduler])):
        out = tmp_path / f"{name}.csv"
        result = runner.invoke(app, ["predict", str(ckpt), str(images), "--out", str(out), "--quiet", *extra])
        assert result.exit_code == 0, result.output
        outputs[name] = pd.read_csv(out, keep_default_na=False)
    assert "Predicting on the cluster" in result.output and len(outputs["there"]) == 12
    here, there = outputs["here"], outputs["there"]
    probs = [c for c in here.columns if c.startswith("prob_")]
    pd.testing.assert_frame_equal(there.drop(columns=probs), here.drop(columns=probs))
    np.testing.assert_allclose(there[probs].replace("", np.nan).astype(float),
                               here[probs].replace("", np.nan).astype(float), atol=1e-6)


def test_a_local_cluster_leaves_this_process_environment_as_it_was():
    """distributed writes its workers' settings (OMP_NUM_THREADS=1, PYTHONHASHSEED...) into os.environ; after the
    local cluster closes they are gone, so later training and its subprocesses run as without the cluster (the
    resume-exactness tests failed after this file before)."""
    pytest.importorskip("distributed", reason='the cluster extra: pip install -e ".[cluster]"')
    before = dict(os.environ)
    with open_cluster("local:1") as client:
        assert sum(client.nthreads().values()) == 1
    assert dict(os.environ) == before


def test_volumes_are_prepared_on_the_cluster_before_training(scheduler, tmp_path):
    """volume.cache on the cluster (data.cluster): the workers write every prepared volume into the shared cache
    folder before training, the same values one machine prepares; a broken file is counted, not fatal."""
    nib = pytest.importorskip("nibabel")
    from medclass.config import RunConfig, apply_overrides
    from medclass.data.table import DataTable
    from medclass.data.volumes.prepare import VolumeCache, prepare, prepare_volumes
    from medclass.data.volumes.read import read_volume
    from medclass.models import model_info
    from medclass.training.datamodule import volume_cache_dir, volume_prep
    from medclass.training.runner import build_caches

    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        path = tmp_path / f"v{i}.nii.gz"
        nib.save(nib.Nifti1Image(rng.normal(0, 300, (10, 9, 6)).astype(np.float32), np.diag([0.9, 0.9, 2.0, 1])), path)
        rows.append({"path": str(path), "label": "ab"[i % 2], "split": ("train", "val")[i // 2]})
    (tmp_path / "broken.nii.gz").write_bytes(b"not a volume")
    rows.append({"path": str(tmp_path / "broken.nii.gz"), "label": "a", "split": "train"})
    table = DataTable(pd.DataFrame(rows), ["a", "b"])
    cfg = apply_overrides(RunConfig(), ["model.name=resnet10_3d", "volume.input=3d", "model.in_chans=1", "volume.size=[12,12,8]", f"data.cache={tmp_path / 'shared'}",
                                        f"data.cluster={scheduler}"])
    assert build_caches(table, cfg) == {}  # volumes: no 2-D image cache, but ...
    folder = volume_cache_dir(cfg)
    prep = volume_prep(cfg, *model_info(cfg.model.name).mean_std(1))
    assert len(list(folder.rglob("*.npy"))) == 4  # ... every readable volume prepared by the cluster's workers
    for row in rows[:4]:
        there = np.load(VolumeCache(folder, prep).file(row["path"], -1))
        np.testing.assert_array_equal(there, prepare(read_volume(row["path"]), prep).astype(np.float16))
    assert prepare_volumes(table, prep, folder, cluster=scheduler) == {"volumes": 5, "unreadable": 1}
    assert len(list(folder.rglob("*.npy"))) == 4  # the second pass finds them (nothing rewritten or added)
