"""RunConfig: choices, ranges, types and formats declared on the fields, refused with a clear ConfigError by
apply_overrides / load_config / validate(), before any data is read; `medclass config` prints them all."""
from __future__ import annotations

import dataclasses
import time
import typing
from pathlib import Path

import pytest
import yaml

from medclass import config as C
from medclass.config import (DEFAULT_MODELS, VOLUME_DEFAULT, RunConfig, apply_overrides, choices, choose_model, commented_yaml,
                             load_config)
from medclass.errors import ConfigError


@pytest.mark.parametrize("override, match", [
    ("train.lr=-1", r"train.lr=-1.0 is out of range: expected a value > 0"),
    ("train.lr=.nan", r"train.lr=nan is not a valid float: expected a finite number"),
    ("train.lr=.inf", r"train.lr=inf is not a valid float: expected a finite number"),
    ("train.lr=fast", r"train.lr='fast' is not a valid float: expected a finite number"),
    ("train.epochs=-2", r"train.epochs=-2 is out of range: expected a value >= 1"),
    ("train.epochs=1.5", r"train.epochs=1.5 is not a valid int: expected a whole number"),
    ("train.batch_size=0", r"train.batch_size=0 is out of range"),
    ("train.accumulate=0", r"train.accumulate=0 is out of range"),
    ("train.num_workers=-1", r"train.num_workers=-1 is out of range: expected a value >= 0"),
    ("train.weight_decay=-0.1", r"train.weight_decay=-0.1 is out of range"),
    ("train.label_smoothing=5", r"train.label_smoothing=5.0 is out of range: expected a value >= 0 and < 1"),
    ("data.limit_per_class=-3", r"data.limit_per_class=-3 is out of range"),
    ("data.val_fraction=1.2", r"data.val_fraction=1.2 is out of range"),
    ("data.val_fraction=0.9", r"data.val_fraction \+ data.test_fraction = 1.05 leaves no patients for training"),
    ("model.dropout=1", r"model.dropout=1.0 is out of range"),
    ("train.seed=-1", r"train.seed=-1 is out of range"),
    ("train.precision=17", r"Unknown train.precision '17'; expected one of 'auto', '32-true'"),
    ("train.optimizer=adam", r"Unknown train.optimizer 'adam'.*Did you mean 'adamw'"),
    ("train.scheduler=cosin", r"Did you mean 'cosine'"),
    ("train.monitor=val_auroc", r"Did you mean 'val_auc'"),
    ("train.sampler=weighed", r"Did you mean 'weighted'"),
    ("train.augment=xrya", r"Did you mean 'xray'"),
    ("train.accelerator=tpu", r"Unknown train.accelerator 'tpu'"),
    ("model.pool=maxx", r"Unknown model.pool 'maxx'"),
    ("model.in_chans=2", r"Unknown model.in_chans '2'; expected one of '1', '3'"),
    ("data.source=folder", r"Did you mean 'folders'"),
    ("data.duplicates=dropp", r"Did you mean 'drop'"),
    ("data.window=lugn", r"Unknown DICOM window 'lugn' \(data.window\).*Did you mean 'lung'"),
    ("data.window=40,0", r"width must be at least 1"),
    ("eval.cam_method=gradcamm", r"Unknown eval.cam_method 'gradcamm'"),
    ("eval.threshold=yuoden", r"Did you mean 'youden'"),
    ("eval.threshold=sensitivity:95", r"must be in \(0, 1\]"),
    ("train.class_weights=1,x", r"train.class_weights='1,x': expected 'none', 'balanced' or positive numbers"),
    ("train.class_weights=balancd", r"Did you mean 'balanced'"),
    ("train.devices=0,0", r"train.devices='0,0': expected 'auto', a device count"),
    ("data.classes={a: b}", r"data.classes=\{'a': 'b'\}: expected a list of names.*got a mapping"),
    ("data.classes=[[a], b]", r"expected a list of names.*a list holding mappings or lists"),
    ("data.path=[a, b]", r"data.path=\['a', 'b'\]: expected text, got a list"),
    ("train.deterministic=maybe", r"train.deterministic='maybe' is not a valid bool: expected true or false"),
    ("model.name=resnet81", r"Unknown model 'resnet81'.*Did you mean 'resnet18'"),
])
def test_bad_values_are_refused_with_the_field_and_what_was_expected(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        apply_overrides(RunConfig(), [override]).validate(devices=False)


def test_a_named_model_gets_its_minimum_input_size_checked_at_once_auto_once_the_data_chose_it() -> None:
    with pytest.raises(ConfigError, match=r"model.image_size=8 is below the minimum 32 px of resnet18"):
        apply_overrides(RunConfig(), ["model.name=resnet18", "model.image_size=8"]).validate(devices=False)
    auto = apply_overrides(RunConfig(), ["model.image_size=8"]).validate(devices=False)  # volumes may take 8 voxels
    images, why = choose_model(auto, 2)
    assert images.model.name == "resnet18" and "default for 2-D images" in why
    with pytest.raises(ConfigError, match=r"model.image_size=8 is below the minimum 32 px of resnet18"):
        images.validate(devices=False)


def test_auto_model_and_volume_input_are_chosen_from_the_data() -> None:
    cfg, why = choose_model(RunConfig(), 3)  # volumes, nothing named: the measured volume default
    chosen = DEFAULT_MODELS[VOLUME_DEFAULT]
    assert (cfg.model.name, cfg.volume.input, cfg.model.in_chans, cfg.model.image_size) == \
        (chosen.name, VOLUME_DEFAULT, chosen.in_chans, chosen.image_size)
    assert why.startswith(f"{chosen.name} (volume.input={VOLUME_DEFAULT}") and "--model" in why
    three_d, _ = choose_model(apply_overrides(RunConfig(), ["volume.input=3d", "model.image_size=48"]), 3)
    assert (three_d.model.name, three_d.model.in_chans, three_d.model.image_size) == ("resnet10_3d", 1, 48)  # kept
    named, why = choose_model(apply_overrides(RunConfig(), ["model.name=simple_cnn"]), 3)
    assert (named.model.name, named.volume.input, named.model.image_size, why) == ("simple_cnn", "2.5d", 224, "")
    assert choose_model(apply_overrides(RunConfig(), ["model.name=resnet10_3d"]), 3)[0].volume.input == "3d"


def test_values_set_in_code_are_checked_too() -> None:
    cfg = RunConfig()
    cfg.train.lr = float("nan")
    with pytest.raises(ConfigError, match="train.lr=nan is not a valid float"):
        cfg.validate()
    cfg = RunConfig()
    cfg.model.pool = "maxx"
    with pytest.raises(ConfigError, match="model.pool"):
        cfg.validate()


@pytest.mark.parametrize("override, field, value", [
    ("train.precision=32", ("train", "precision"), "32"),  # YAML reads 32 as a number
    ("eval.threshold=0.5", ("eval", "threshold"), "0.5"),
    ("train.devices=2", ("train", "devices"), "2"),
    ("data.classes=[b, a]", ("data", "classes"), ["b", "a"]),
    ("data.classes=b,a", ("data", "classes"), ["b", "a"]),
    ("model.in_chans=1", ("model", "in_chans"), 1),
    ("data.window=Lung", ("data", "window"), "Lung"),
    ("train.deterministic=no", ("train", "deterministic"), False),
])
def test_good_values_are_converted_to_the_declared_type(override: str, field: tuple[str, str], value: object) -> None:
    cfg = apply_overrides(RunConfig(), [override]).validate(devices=False)
    assert getattr(getattr(cfg, field[0]), field[1]) == value


def test_gpu_that_torch_does_not_see_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match=r"asks for 1 GPU\(s\) but torch sees 0.*train.accelerator=cpu"):
        apply_overrides(RunConfig(), ["train.accelerator=gpu"]).validate()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"asks for 4 GPU\(s\) but torch sees 2"):
        apply_overrides(RunConfig(), ["train.accelerator=cuda", "train.devices=4"]).validate()
    apply_overrides(RunConfig(), ["train.accelerator=gpu", "train.devices=0,1"]).validate()


def test_cpu_devices_take_a_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    apply_overrides(RunConfig(), ["train.accelerator=cpu", "train.devices=3"]).validate()  # DDP on CPU
    for accelerator in ("cpu", "auto"):
        with pytest.raises(ConfigError, match="training on CPU takes a process count such as 2, not device indices"):
            apply_overrides(RunConfig(), [f"train.accelerator={accelerator}", "train.devices=0,1"]).validate()


@pytest.mark.parametrize("content, match", [
    (b"train:\n  lr: [0.1\n", r"bad.yaml is not valid YAML at line 3"),
    (b"train:\n\tlr: 0.1\n", r"bad.yaml is not valid YAML at line 2.*not tabs"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", r"bad.yaml is not a YAML text file \(it holds binary data\)"),
    (b"\xff\xfe\xfa", r"is not a YAML text file"),
    (b"- a\n- b\n", r"bad.yaml: expected a YAML mapping of sections.*got a list"),
    (b"train: 3\n", r"bad.yaml: Config section 'train' must be a mapping of fields, got int 3"),
    (b"train:\n  epoch: 3\n", r"bad.yaml: Unknown config key 'train.epoch'. Did you mean 'epochs'"),
    (b"data:\n  classes: {a: b}\n", r"bad.yaml: data.classes=\{'a': 'b'\}: expected a list"),
])
def test_bad_yaml_files_name_the_file_and_the_fix(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_bad_override_syntax_is_explained() -> None:
    with pytest.raises(ConfigError, match="must look like section.field=value"):
        apply_overrides(RunConfig(), ["train.lr"])
    with pytest.raises(ConfigError, match=r"not valid YAML.*quote it"):
        apply_overrides(RunConfig(), ["data.classes=[a, b"])


def test_config_typo_is_refused_before_any_data_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train, cross-validation, lr-find, tune and quickstart validate first: a typo fails fast with a data path that does not exist."""
    from medclass.experiments.crossval import cross_validate
    from medclass.experiments.tune import tune
    from medclass.pipeline import quickstart
    from medclass.training import lr_find, train

    missing = tmp_path / "no-such-data"
    cfg = apply_overrides(RunConfig(), [f"data.path={missing}", f"workspace={tmp_path}", "model.name=simple_cnn",
                                        "model.pool=maxx"])
    calls = (lambda: train(cfg), lambda: cross_validate(cfg, folds=2), lambda: lr_find.find_lr(cfg, out=tmp_path / "lr"),
             lambda: tune(cfg, 1, storage=tmp_path / "tune.db"),
             lambda: quickstart(str(missing), workspace=str(tmp_path), model="simple_cnn", overrides=["model.pool=maxx"]))
    for call in calls:  # the config error, not the missing data: the config is checked before any data is read
        with pytest.raises(ConfigError, match="model.pool"):
            call()
    assert not (tmp_path / "default").exists()  # no run folder was written


def test_choices_are_declared_once_and_used_by_the_modules() -> None:
    from medclass.data.audit import POLICIES
    from medclass.data.dicom import WINDOW_PRESETS
    from medclass.data.sources import SOURCES
    from medclass.data.transforms import PRESETS
    from medclass.explain.cam import METHODS
    from medclass.models.registry import POOLS
    from medclass.training.module import MONITORS, OPTIMIZERS, SCHEDULERS

    assert POLICIES == choices(C.DuplicatePolicy) and "merge" in POLICIES
    assert SOURCES == choices(C.Source) and POOLS == choices(C.Pool)
    assert (OPTIMIZERS, SCHEDULERS, MONITORS) == (choices(C.Optimizer), choices(C.Scheduler), choices(C.Monitor))
    assert tuple(PRESETS) == choices(C.Augment)  # every preset has parameters, every name is declared
    assert tuple(METHODS) == choices(C.CamMethod)
    assert WINDOW_PRESETS is C.WINDOW_PRESETS


def test_every_field_has_a_meaning_and_the_printed_config_loads_back(tmp_path: Path) -> None:
    text = commented_yaml(RunConfig())
    for section in (RunConfig, C.DataConfig, C.ModelConfig, C.TrainConfig, C.EvalConfig):
        for f in dataclasses.fields(section):
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{f.name}:"))
            assert "  # " in line, f"{f.name} has no comment"
    assert "pool: avg  # global pooling; allowed: avg | max | avgmax" in text
    assert "allowed: fail | drop | merge | warn" in text and "subdural" in text
    assert "lr: 0.001  # peak learning rate; allowed: > 0" in text
    (tmp_path / "c.yaml").write_text(text)
    assert load_config(tmp_path / "c.yaml") == RunConfig()
    assert yaml.safe_load(text)["train"]["precision"] == "auto"


def test_every_choice_field_is_typed() -> None:
    """No free-text field whose comment lists choices: those are Literal (the lists drifted before)."""
    hints = {cls: typing.get_type_hints(cls) for cls in (C.DataConfig, C.ModelConfig, C.TrainConfig, C.EvalConfig)}
    for name in ("source", "duplicates"):
        assert typing.get_origin(hints[C.DataConfig][name]) is typing.Literal
    for name in ("optimizer", "scheduler", "monitor", "sampler", "augment", "precision", "accelerator"):
        assert typing.get_origin(hints[C.TrainConfig][name]) is typing.Literal
    assert typing.get_origin(hints[C.EvalConfig]["cam_method"]) is typing.Literal
