"""compare_runs on synthetic run folders: table values, files, paired tests against known answers."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclass.config import RunConfig
from medclass.artifacts.checkpoint import stored_parameters
from medclass.experiments._runs import best_epoch, resolve_run
from medclass.experiments.compare import compare_runs, run_names
from _helpers import make_fake_run


def test_table_values_and_files(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    a = make_fake_run(ws, "p", "cnn", epochs=3, gpu=True,
                      metrics_json={"metrics": {"roc_auc": 0.91, "accuracy": 0.8},
                                    "ci": {"roc_auc": {"low": 0.85, "high": 0.95}}})
    make_fake_run(ws, "p", "vit", model="vit_tiny", epochs=4, image_size=64)
    cmp = compare_runs([a, "p/vit"], out=tmp_path / "out", workspace=ws, plots=True)
    t = cmp.table.set_index("name")
    assert list(t.index) == ["cnn", "vit"]
    assert t.loc["cnn", "params"] == 148 and t.loc["vit", "model"] == "vit_tiny"
    assert t.loc["cnn", "epochs"] == 3 and t.loc["vit", "image_size"] == 64
    assert t.loc["cnn", "train_time_s"] == pytest.approx(2 + 3 + 4)
    assert t.loc["vit", "train_time_s"] == pytest.approx(2 + 3 + 4 + 5)
    assert t.loc["vit", "peak_rss_mb"] == pytest.approx(530.0)
    assert t.loc["cnn", "gpu_max_mb"] == pytest.approx(102.0) and np.isnan(t.loc["vit", "gpu_max_mb"])
    assert t.loc["cnn", "best_val"] == pytest.approx(0.8) and t.loc["cnn", "best_epoch"] == 1
    assert t.loc["cnn", "test_roc_auc"] == pytest.approx(0.91)
    assert (t.loc["cnn", "test_roc_auc_low"], t.loc["cnn", "test_roc_auc_high"]) == pytest.approx((0.85, 0.95))
    assert np.isnan(t.loc["cnn", "test_accuracy_low"]) and np.isnan(t.loc["vit", "test_roc_auc"])
    assert cmp.sentences == []  # no predictions: nothing to pair
    written = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert written["params"].tolist() == [148, 148]
    for name in ("loss.png", "accuracy_auc.png", "cost.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "out" / "comparison.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "vit_tiny" in page and 'src="loss.png"' not in page
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(cmp.rich_table())
    assert "0.910 (0.850-0.950)" in console.export_text()


def test_best_epoch_follows_monitor_direction() -> None:
    h = pd.DataFrame({"epoch": [0, 1, 2], "val_loss": [0.5, 0.3, 0.4], "val_auc": [0.7, 0.6, 0.9]})
    assert best_epoch(h, "val_loss") == (1, 0.3)
    assert best_epoch(h, "val_auc") == (2, 0.9)
    assert best_epoch(h, "val_acc")[0] is None


def test_resolve_run_errors_name_near_runs(tmp_path: Path) -> None:
    make_fake_run(tmp_path, "chest", "resnet18")
    assert resolve_run("chest/resnet18", tmp_path) == tmp_path / "chest" / "resnet18"
    with pytest.raises(FileNotFoundError, match="chest/resnet18"):
        resolve_run("chest/resnet19", tmp_path)
    with pytest.raises(ValueError, match="twice"):
        compare_runs(["chest/resnet18", tmp_path / "chest" / "resnet18"], out=tmp_path / "o", workspace=tmp_path)


def test_run_names_disambiguate() -> None:
    assert run_names([Path("w/a/x"), Path("w/b/x"), Path("w/a/y")]) == ["a/x", "b/x", "y"]


def test_stored_parameters_missing_checkpoint(tmp_path: Path) -> None:
    assert stored_parameters(tmp_path / "none.safetensors") is None


def _scores(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    good = 1 / (1 + np.exp(-(2.5 * y + rng.normal(0, 1, n))))
    weak = 1 / (1 + np.exp(-(0.5 * y + rng.normal(0, 1, n))))
    return y, good, weak


def test_paired_tests_match_stats_and_sklearn(tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    from medclass.metrics.stats import delong_test

    y, good, weak = _scores(0)
    patients = [f"p{i // 2}" for i in range(len(y))]  # two images per patient
    ws = tmp_path / "ws"
    make_fake_run(ws, "p", "good", probs=good, labels=y, patients=patients)
    make_fake_run(ws, "p", "weak", probs=weak, labels=y, patients=patients)
    make_fake_run(ws, "p", "other", probs=good[:100], labels=y[:100])  # other images: not paired
    cmp = compare_runs(["p/good", "p/weak", "p/other"], out=tmp_path / "out", workspace=ws, n_boot=300)
    assert len(cmp.pairs) == 1
    pair = cmp.pairs.iloc[0]
    assert (pair["run_a"], pair["run_b"], pair["n_images"]) == ("good", "weak", 120)
    assert pair["auc_a"] == pytest.approx(roc_auc_score(y, good))
    assert pair["auc_b"] == pytest.approx(roc_auc_score(y, weak))
    assert pair["delong_p"] == pytest.approx(delong_test(y, good, weak)["p_value"])
    assert pair["delong_p"] < 0.001 and pair["significant"]
    assert pair["bootstrap_ci_low"] > 0 and pair["bootstrap_method"] == "paired bootstrap over patients"
    assert cmp.sentences[0].startswith(f"AUC of good {roc_auc_score(y, good):.3f} vs weak")
    assert "statistically significant at alpha = 0.05" in cmp.sentences[0]
    assert pd.read_csv(tmp_path / "out" / "paired_tests.csv")["run_a"].tolist() == ["good"]
    assert cmp.sentences[0] in html.unescape((tmp_path / "out" / "comparison.html").read_text())


def test_same_model_twice_is_not_significant(tmp_path: Path) -> None:
    y, good, _ = _scores(1)
    rng = np.random.default_rng(2)
    jitter = np.clip(good + rng.normal(0, 0.01, len(good)), 0, 1)
    make_fake_run(tmp_path, "p", "a", probs=good, labels=y)
    make_fake_run(tmp_path, "p", "b", probs=jitter, labels=y)
    pair = compare_runs(["p/a", "p/b"], out=tmp_path / "o", workspace=tmp_path, n_boot=200, plots=False).pairs.iloc[0]
    assert abs(pair["difference"]) < 0.01 and pair["delong_p"] > 0.05 and not pair["significant"]
    assert pair["delong_ci_low"] < 0 < pair["delong_ci_high"]


def test_cli_compare_prints_table_and_sentences(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medclass.cli import app, _register_all

    _register_all()
    y, good, weak = _scores(3)
    make_fake_run(tmp_path, "p", "good", probs=good, labels=y)
    make_fake_run(tmp_path, "p", "weak", probs=weak, labels=y)
    result = CliRunner().invoke(app, ["compare", "p/good", "p/weak", "--workspace", str(tmp_path), "--n-boot", "100"],
                                terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "Run comparison" in result.output and "AUC of good" in result.output
    assert (tmp_path / "comparisons" / "good-vs-weak" / "comparison.html").is_file()
    missing = CliRunner().invoke(app, ["compare", "p/goood", "--workspace", str(tmp_path)])
    assert missing.exit_code == 2 and "p/good" in missing.output  # near names are suggested


@pytest.mark.slow
def test_compare_two_real_short_runs(tmp_path: Path) -> None:
    """Two real runs on the same patient split of chest X-rays (the sample shipped in the package), evaluated on the
    same test images, compared."""
    from medclass.config import apply_overrides
    from medclass.evaluation.evaluate import evaluate
    from medclass.training import train

    runs = []
    for model in ("simple_cnn", "resnet18"):
        cfg = apply_overrides(RunConfig(), [
            "data.path=chest_xray_sample", "data.preset=kermany_chest_xray", "data.limit_per_class=80",
            f"workspace={tmp_path}",
            "project=cmp", f"experiment={model}", f"model.name={model}", "model.in_chans=1", "model.image_size=32",
            "train.epochs=1", "train.num_workers=0", "train.baseline=false",
        ])
        result = train(cfg, progress=False)
        evaluate(result.run_dir, split="test", n_boot=100, cam_samples=0, report=False, num_workers=0)
        runs.append(result.run_dir)
    comparison = compare_runs(["cmp/simple_cnn", "cmp/resnet18"], tmp_path / "cmp_out", workspace=str(tmp_path))
    assert list(comparison.table["model"]) == ["simple_cnn", "resnet18"]
    assert (comparison.table["train_time_s"] > 0).all()
    assert len(comparison.pairs) == 1
    pair = comparison.pairs.iloc[0]
    assert 0.0 <= pair["delong_p"] <= 1.0 and pair["n_images"] > 0
    assert 0.0 <= pair["auc_a"] <= 1.0 and pair["difference"] == pytest.approx(pair["auc_a"] - pair["auc_b"])
    assert comparison.sentences and "DeLong" in comparison.sentences[0]
    assert (tmp_path / "cmp_out" / "comparison.csv").is_file() and (tmp_path / "cmp_out" / "comparison.html").is_file()


# -- multi-label runs -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ml_runs(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Two tiny multi-label runs on one patient split (other training seeds), each evaluated on its test images."""
    from medclass.evaluation.evaluate import evaluate
    from medclass.training import train
    from _helpers import multilabel_config, write_multilabel_csv

    root = tmp_path_factory.mktemp("mlcmp")
    csv = write_multilabel_csv(root / "data")
    runs = []
    for name, seed in (("ml_a", 0), ("ml_b", 1)):
        cfg = multilabel_config(csv, root / "ws", name, "project=p", "data.split_seed=0", f"train.seed={seed}",
                                "train.baseline=false")
        run = train(cfg, progress=False).run_dir
        evaluate(run, n_boot=50, cam_samples=0, report=False, num_workers=0)
        runs.append(run)
    return root / "ws", runs


def test_compare_two_multilabel_runs(ml_runs, tmp_path: Path) -> None:
    import json

    from medclass.metrics.stats import paired_bootstrap_macro_auc

    ws, runs = ml_runs
    cmp = compare_runs(["p/ml_a", "p/ml_b"], out=tmp_path / "out", workspace=ws, n_boot=200)
    t = cmp.table.set_index("name")
    assert t["task"].tolist() == ["multi_label", "multi_label"]
    for name, run in zip(("ml_a", "ml_b"), runs):
        findings = json.loads((run / "metrics.json").read_text())["findings"]
        assert t.loc[name, "test_macro_auc"] == pytest.approx(findings["summary"]["macro_auc"])
        assert t.loc[name, "test_micro_auc"] == pytest.approx(findings["summary"]["micro_auc"])
        assert t.loc[name, "test_macro_auc_low"] == pytest.approx(findings["ci"]["macro_auc"]["low"])
    assert len(cmp.pairs) == 1 and not cmp.notes
    pair = cmp.pairs.iloc[0]
    test_rows = (pd.read_csv(runs[0] / "split.csv")["split"] == "test").sum()
    assert (pair["metric"], pair["n_images"]) == ("macro_auc", test_rows)
    assert pair["auc_a"] == pytest.approx(t.loc["ml_a", "test_macro_auc"])
    assert pair["difference"] == pytest.approx(t.loc["ml_a", "test_macro_auc"] - t.loc["ml_b", "test_macro_auc"])
    # the same test from the two predictions.csv directly (masked labels blank there)
    pa, pb = (pd.read_csv(r / "predictions.csv").sort_values("path") for r in runs)
    findings = [c[len("label_"):] for c in pa.columns if c.startswith("label_")]
    direct = paired_bootstrap_macro_auc(pa[[f"label_{f}" for f in findings]].to_numpy(float),
                                        pa[[f"prob_{f}" for f in findings]].to_numpy(float),
                                        pb[[f"prob_{f}" for f in findings]].to_numpy(float),
                                        groups=pa["patient"].to_numpy(str), n_boot=200)
    assert (pair["bootstrap_ci_low"], pair["bootstrap_ci_high"]) == pytest.approx((direct["ci_low"], direct["ci_high"]))
    assert cmp.sentences == [pair["sentence"]] and cmp.sentences[0].startswith("macro AUC of ml_a")
    page = html.unescape((tmp_path / "out" / "comparison.html").read_text())
    assert cmp.sentences[0] in page and "multi_label" in page
    from rich.console import Console

    console = Console(record=True, width=250)
    console.print(cmp.rich_table())
    text = console.export_text()
    assert "test macro AUC (95% CI)" in text and "multi_label" in text


def test_compare_multilabel_with_single_label_run_says_why_there_is_no_test(ml_runs, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    ws, _ = ml_runs
    y, good, _ = _scores(5)
    make_fake_run(ws, "p", "single", probs=good, labels=y, metrics_json={"metrics": {"roc_auc": 0.9}})
    cmp = compare_runs(["p/ml_a", "p/single"], out=tmp_path / "mixed", workspace=ws, n_boot=50)
    assert cmp.table["task"].tolist() == ["multi_label", "single_label"]
    assert cmp.table.set_index("name").loc["single", "test_roc_auc"] == pytest.approx(0.9)
    assert len(cmp.pairs) == 0 and cmp.sentences == []
    assert len(cmp.notes) == 1 and "No paired test of ml_a (multi_label) vs single (single_label)" in cmp.notes[0]
    assert cmp.notes[0] in html.unescape((tmp_path / "mixed" / "comparison.html").read_text())
    _register_all()
    result = CliRunner().invoke(app, ["compare", "p/ml_a", "p/single", "--workspace", str(ws), "--n-boot", "50",
                                      "--out", str(tmp_path / "cli")], terminal_width=250)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "answer different questions" in out and "not evaluated on the same images" not in out
