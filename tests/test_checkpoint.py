"""The checkpoint contract (medclass.artifacts): typed metadata round trip, and one clear error for each kind of
invalid metadata instead of a KeyError, TypeError or RuntimeError from deep inside the loader."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from safetensors.torch import save_file

from medclass.artifacts import CheckpointMeta, RunDir, build_meta, load_checkpoint, read_meta, save_checkpoint
from medclass.artifacts.checkpoint import META_KEY
from medclass.errors import CheckpointError
from medclass.models import create_model


def _meta(classes: tuple[str, ...] = ("a", "b"), in_chans: int = 1) -> CheckpointMeta:
    return build_meta(classes=classes, model_name="simple_cnn", in_chans=in_chans, image_size=32, mean=[0.5] * in_chans,
                      std=[0.25] * in_chans, threshold=0.3, threshold_rule="youden", temperature=1.5,
                      config={"model": {"name": "simple_cnn"}}, metrics={"epoch": 4, "val_auc": 0.9})


def _write_raw(path: Path, meta_text: str, classes: int = 2, in_chans: int = 1) -> Path:
    """A safetensors file with real simple_cnn tensors and ``meta_text`` as its medclass metadata."""
    model = create_model("simple_cnn", classes, in_chans=in_chans)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={META_KEY: meta_text})
    return path


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    meta = _meta()
    path = save_checkpoint(tmp_path / "m.safetensors", create_model("simple_cnn", 2, in_chans=1), meta)
    model, loaded = load_checkpoint(path)
    assert loaded == meta and read_meta(path) == meta
    assert loaded.classes == ("a", "b") and loaded.threshold == 0.3 and loaded.temperature == 1.5
    assert loaded.preprocessing.mean == (0.5,) and loaded.model.num_outputs == 1 and loaded.epoch == 4
    assert CheckpointMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
    assert "config" not in meta.exported() and meta.exported()["threshold"] == 0.3


def test_file_of_the_documented_layout_with_defaults_loads(tmp_path: Path) -> None:
    """Version-1 files written before the typed metadata (no dropout/pool/window/threshold/...) still load."""
    old = {"format": "medclass-checkpoint/1", "classes": ["a", "b"],
           "model": {"name": "simple_cnn", "num_outputs": 1, "in_chans": 1},
           "preprocessing": {"image_size": 32, "in_chans": 1, "mean": [0.5], "std": [0.25]}}
    _, meta = load_checkpoint(_write_raw(tmp_path / "old.safetensors", json.dumps(old)))
    assert (meta.threshold, meta.temperature, meta.model.pool, meta.preprocessing.window) == (0.5, 1.0, "avg", "")
    assert meta.config == {} and meta.epoch is None


def _valid() -> dict:
    return _meta().to_dict()


def _without_model(d: dict) -> dict:
    del d["model"]
    return d


@pytest.mark.parametrize("name, text, expected", [
    ("invalid JSON", '{"format": "medclass-checkpoint/1", "classes": [', "metadata is not JSON"),
    ("a list", json.dumps([1, 2]), "must be a JSON object, got a list"),
    ("no model entry", json.dumps(_without_model(_valid())), "entry 'model' must be an object, got nothing"),
    ("string threshold", json.dumps({**_valid(), "threshold": "0.4"}), "threshold must be a finite number, got '0.4'"),
    ("string image size", json.dumps({**_valid(), "preprocessing": {**_valid()["preprocessing"], "image_size": "32"}}),
     "preprocessing.image_size must be an integer"),
    ("mean of the wrong length", json.dumps({**_valid(), "preprocessing": {**_valid()["preprocessing"], "mean": [0.5] * 3}}),
     "preprocessing.mean must be a list of 1 numbers"),
    ("unknown format", json.dumps({**_valid(), "format": "medclass-checkpoint/9"}), "unknown format"),
    ("one class", json.dumps({**_valid(), "classes": ["a"]}), "classes must be a list of at least 2"),
])
def test_invalid_metadata_gives_one_clear_error(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = _write_raw(tmp_path / "bad.safetensors", text)
    prefix = re.escape(f"{path} is not a valid medclass checkpoint: ")
    with pytest.raises(CheckpointError, match=f"^{prefix}.*{re.escape(expected)}"):
        load_checkpoint(path)


@pytest.mark.parametrize("classes, in_chans, expected", [
    (("a", "b", "c"), 1, "model.num_outputs 1 does not fit 3 classes"),  # class list edited, tensors of 2 classes
])
def test_class_list_that_does_not_match_num_outputs_is_refused(tmp_path: Path, classes, in_chans, expected) -> None:
    text = json.dumps({**_valid(), "classes": list(classes)})
    with pytest.raises(CheckpointError, match=f"not a valid medclass checkpoint: {expected}"):
        load_checkpoint(_write_raw(tmp_path / "bad.safetensors", text))


@pytest.mark.parametrize("meta_classes, meta_chans, tensor_classes, tensor_chans", [
    (("a", "b", "c"), 1, 4, 1),  # metadata says 3 classes, the tensors hold 4 outputs
    (("a", "b"), 3, 2, 1),  # metadata says RGB input, the tensors were trained on 1 channel
])
def test_metadata_that_does_not_fit_the_tensors_is_refused(tmp_path: Path, meta_classes, meta_chans, tensor_classes,
                                                           tensor_chans) -> None:
    text = json.dumps(_meta(meta_classes, meta_chans).to_dict())
    path = _write_raw(tmp_path / "bad.safetensors", text, classes=tensor_classes, in_chans=tensor_chans)
    with pytest.raises(CheckpointError, match="is not a valid medclass checkpoint: its tensors do not fit the metadata"):
        load_checkpoint(path)


def test_meta_is_frozen_and_changed_by_copies() -> None:
    meta = _meta()
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.threshold = 0.9  # type: ignore[misc]
    decided = meta.with_decision(0.7, "youden", 2.0)
    assert (decided.threshold, decided.temperature, meta.threshold) == (0.7, 2.0, 0.3)
    assert meta.with_metrics({"epoch": 9}).epoch == 9


def test_run_dir_state_and_best_checkpoint(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert not run.is_run and not run.is_resumable and not run.is_finished
    with pytest.raises(CheckpointError, match="has no best.safetensors or last.safetensors"):
        run.best_checkpoint()
    run.config.write_text("project: p\n")
    run.checkpoints.mkdir()
    run.resume_state.write_bytes(b"")
    assert run.is_resumable and not run.is_finished
    save_checkpoint(run.last, create_model("simple_cnn", 2, in_chans=1), _meta())
    assert run.best_checkpoint() == run.last
    save_checkpoint(run.best, create_model("simple_cnn", 2, in_chans=1), _meta())
    run.threshold.write_text("{}")
    assert run.best_checkpoint() == run.best and run.is_finished
    _, meta = load_checkpoint(tmp_path)  # a run folder loads its best checkpoint
    assert meta == _meta()
