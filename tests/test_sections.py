"""Issue 23: one evaluation path for every task. The same sections for a single-label and a multi-label run
(external data, --subgroups sex,view), values checked against scikit-learn on hand-made cases, and the one
rare-finding rule (a threshold and a CI need enough positive patients) on a set with one positive patient."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medclass.metrics.findings import compare_findings, findings_cis
from medclass.metrics.rare import FALLBACK_THRESHOLD, MIN_POSITIVE_PATIENTS, positive_patients, too_few_patients
from medclass.metrics.subgroups import parse_subgroups, subgroup_findings_metrics
from _helpers import FINDINGS, make_images, multilabel_config, tiny_config, write_multilabel_csv


def _hand_made(seed: int = 0, n: int = 80):
    """Two findings, one image per patient, a few masked labels; probabilities that separate the classes partly."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 2)) < [0.4, 0.3]).astype(float)
    p = np.clip(0.35 * y + 0.65 * rng.random((n, 2)), 0, 1)
    y[rng.random((n, 2)) < 0.1] = np.nan
    return y, p, np.array([f"p{i}" for i in range(n)])


def _sk_auc(y: np.ndarray, p: np.ndarray, k: int) -> float:
    keep = ~np.isnan(y[:, k])
    return float(roc_auc_score(y[keep, k], p[keep, k]))


# -- pure functions against scikit-learn --------------------------------------------------------------
def test_findings_cis_points_are_sklearns_and_macro_is_their_mean():
    y, p, g = _hand_made()
    out = findings_cis(y, p, g, ["a", "b"], [0.5, 0.5], n_boot=200)
    aucs = [_sk_auc(y, p, k) for k in range(2)]
    for k, f in enumerate(["a", "b"]):
        c = out["per_finding"][f]["roc_auc"]
        assert c["value"] == pytest.approx(aucs[k], abs=1e-12) and c["low"] < c["value"] < c["high"]
        keep = ~np.isnan(y[:, k])
        decided = p[keep, k] >= 0.5
        sens = decided[y[keep, k] == 1].mean()
        assert out["per_finding"][f]["sensitivity"]["value"] == pytest.approx(sens, abs=1e-12)
    assert out["macro_auc"]["value"] == pytest.approx(np.mean(aucs), abs=1e-12)
    assert out["macro_auc"]["low"] < out["macro_auc"]["value"] < out["macro_auc"]["high"]


def test_compare_findings_difference_is_external_minus_internal():
    y_e, p_e, g_e = _hand_made(1)
    y_i, p_i, g_i = _hand_made(2)
    c = compare_findings((y_e, p_e, g_e), (y_i, p_i, g_i), ["a", "b"], [0.5, 0.5], n_boot=100)
    for k, f in enumerate(["a", "b"]):
        row = c["per_finding"][f]["roc_auc"]
        assert row["external"]["value"] == pytest.approx(_sk_auc(y_e, p_e, k))
        assert row["internal"]["value"] == pytest.approx(_sk_auc(y_i, p_i, k))
        assert row["difference"]["value"] == pytest.approx(_sk_auc(y_e, p_e, k) - _sk_auc(y_i, p_i, k))
        assert row["difference"]["low"] <= row["difference"]["value"] <= row["difference"]["high"]
    macro = c["macro_auc"]
    assert macro["difference"]["value"] == pytest.approx(macro["external"]["value"] - macro["internal"]["value"])


def test_subgroups_of_findings_match_sklearn_on_the_subgroup_rows():
    y, p, g = _hand_made(3)
    meta = pd.DataFrame({"sex": np.where(np.arange(len(y)) % 2 == 0, "F", "M")})
    sub = subgroup_findings_metrics(y, p, g, meta, parse_subgroups("sex"), ["a", "b"], [0.5, 0.5], n_boot=50)
    assert [grp["subgroup"] for grp in sub["groups"]] == ["F", "M"] and sub["metrics"] == ["macro_auc"]
    for grp in sub["groups"]:
        rows = (meta["sex"] == grp["subgroup"]).to_numpy()
        aucs = [_sk_auc(y[rows], p[rows], k) for k in range(2)]
        assert grp["per_finding"]["a"]["roc_auc"]["value"] == pytest.approx(aucs[0])
        assert grp["metrics"]["macro_auc"]["value"] == pytest.approx(np.mean(aucs))
        assert grp["n_patients"] == rows.sum()


# -- the rare-finding rule ------------------------------------------------------------------------------
def _one_positive_patient(n: int = 40):
    """Finding 'rare' has ONE positive patient (two images); 'common' has plenty."""
    rng = np.random.default_rng(5)
    g = np.repeat([f"p{i}" for i in range(n // 2)], 2)
    y = np.zeros((n, 2))
    y[:2, 0] = 1  # patient p0, both images
    y[:, 1] = rng.random(n) < 0.5
    p = np.clip(0.4 * y + 0.6 * rng.random((n, 2)), 0, 1)
    return y, p, g


def test_one_positive_patient_gives_no_interval_and_says_why():
    y, p, g = _one_positive_patient()
    assert positive_patients(y[:, 0], g) == (1, 19)
    assert too_few_patients(1, 19) == f"only 1 positive patient (fewer than {MIN_POSITIVE_PATIENTS})"
    out = findings_cis(y, p, g, ["rare", "common"], [0.5, 0.5], n_boot=100)
    rare, common = out["per_finding"]["rare"]["roc_auc"], out["per_finding"]["common"]["roc_auc"]
    assert rare["low"] is None and rare["high"] is None and "1 positive patient" in rare["not_estimable"]
    assert rare["value"] == pytest.approx(_sk_auc(y, p, 0))  # the point estimate is still given
    assert common["low"] is not None and common["low"] < common["high"]

    from medclass.evaluation._multilabel import finding_rows

    rows, _ = finding_rows(y, p, g, ["rare", "common"], [0.5, 0.5], n_boot=50)
    assert rows[0]["positive_patients"] == 1 and rows[0]["roc_auc_low"] is None and "not estimable" in rows[0]["ci_note"]
    assert "ci_note" not in rows[1] and rows[1]["roc_auc_low"] is not None


def test_one_positive_validation_patient_gets_the_fallback_threshold(caplog):
    from medclass.artifacts.meta import CheckpointMeta
    from medclass.config import RunConfig
    from medclass.inference import Predictions
    from medclass.training.finalize import _decide_findings

    y, p, g = _one_positive_patient()
    p[:2, 0] = 1e-8  # Youden would pick a threshold near 0 for the one positive patient
    meta = CheckpointMeta.from_dict({
        "format": "medclass-checkpoint/1", "classes": ["rare", "common"], "task": "multi_label",
        "model": {"name": "simple_cnn", "num_outputs": 2, "in_chans": 1},
        "preprocessing": {"image_size": 32, "in_chans": 1, "mean": [0.5], "std": [0.25]}})
    pred = Predictions(np.zeros_like(p), p, y, patients=list(g))
    with caplog.at_level("WARNING"):
        new, info = _decide_findings(meta, pred, RunConfig())
    assert new.finding_thresholds[0] == FALLBACK_THRESHOLD and info["thresholds"]["rare"]["fallback"] is True
    assert info["thresholds"]["rare"]["val_positive_patients"] == 1
    assert "1 positive patient" in caplog.text and "fallback" in caplog.text
    assert new.finding_thresholds[1] != FALLBACK_THRESHOLD or "fallback" not in info["thresholds"]["common"]


def test_data_check_uses_the_same_rule():
    from medclass.data import advice
    from medclass.metrics import rare

    assert advice.MIN_POSITIVE_PATIENTS is rare.MIN_POSITIVE_PATIENTS


# -- end to end: the same sections for both tasks, through the CLI ------------------------------------------
def _with_metadata(csv: Path, patient_prefix: str = "") -> Path:
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    i = np.arange(len(df))
    df["sex"], df["view"] = np.where(i % 2 == 0, "F", "M"), np.where(i % 3 == 0, "AP", "PA")
    if patient_prefix:
        df["patient"] = patient_prefix + df["patient"]
    df.to_csv(csv, index=False)
    return csv


def _single_label_csv(root: Path, seed: int, patient_prefix: str = "") -> Path:
    make_images(root, n_per_class=30, seed=seed)
    rows = [{"path": str(p.relative_to(root)), "label": p.parent.name, "patient": p.name.split("_")[0]}
            for p in sorted(root.glob("*/*.png"))]
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return _with_metadata(root / "labels.csv", patient_prefix)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from medclass.training.runner import train

    root = tmp_path_factory.mktemp("sections")
    single_csv = _single_label_csv(root / "single", seed=0)
    single_ext = _single_label_csv(root / "single_ext", seed=1, patient_prefix="x")
    single = train(tiny_config(single_csv, root / "ws", "single", **{"data.patient_column": "patient",
                                                                     "data.patient_regex": "", "train.epochs": "2"}),
                   progress=False)
    multi_csv = _with_metadata(write_multilabel_csv(root / "multi", n_patients=40, per_patient=1))
    multi_ext = _with_metadata(write_multilabel_csv(root / "multi_ext", n_patients=40, per_patient=1, seed=1), "x")
    multi = train(multilabel_config(multi_csv, root / "ws", "multi"), progress=False)
    return {"single": (single.run_dir, single_ext), "multi": (multi.run_dir, multi_ext)}


def _cli_evaluate(run: Path, data: Path, *extra: str) -> dict:
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    _register_all()
    out = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(data), "--patient-column", "patient",
                                   "--subgroups", "sex,view", "--baselines", "sex,view", "--n-boot", "30", "--cam-samples", "0",
                                   "--num-workers", "0", *extra])
    assert out.exit_code == 0, out.output
    m = json.loads((run / "evaluation-labels-test" / "metrics.json").read_text())
    return {"metrics": m, "output": out.output, "report": (run / "evaluation-labels-test" / "report.html").read_text()}


def test_single_and_multi_label_external_evaluations_have_the_same_sections(two_runs):
    single = _cli_evaluate(*two_runs["single"])
    multi = _cli_evaluate(*two_runs["multi"], "--labels-from", "finding_labels")
    s, m = single["metrics"], multi["metrics"]
    assert s["sections"].keys() == m["sections"].keys()
    assert {k: v["applied"] for k, v in s["sections"].items()} == {k: v["applied"] for k, v in m["sections"].items()}
    # external data + --subgroups + --baselines: every section runs but cam_location (it needs CT/MRI volumes and
    # --mask-column)
    assert all(v["applied"] for k, v in m["sections"].items() if k != "cam_location")
    assert "--mask-column" in m["sections"]["cam_location"]["reason"] or "multi_label" in m["sections"]["cam_location"]["reason"]
    assert s["leak_check"]["clean"] is True and m["leak_check"]["clean"] is True
    for key in ("external", "subgroups", "baselines", "patients", "ood", "shift"):
        assert s[key] is not None and m[key] is not None, key
    # multi-label: internal vs external per finding and macro, calibration per finding, subgroups per finding
    ext = m["external"]
    assert "internal_missing" not in ext and set(ext["per_finding"]) == set(FINDINGS)
    assert {"internal", "external", "difference"} <= set(ext["comparison"]["macro_auc"])
    assert set(ext["calibration_per_finding"]) == set(FINDINGS)
    assert m["subgroups"]["spec"] == "sex,view" and {g["column"] for g in m["subgroups"]["groups"]} == {"sex", "view"}
    assert all(set(g["per_finding"]) == set(FINDINGS) for g in m["subgroups"]["groups"])
    assert {c["target"] for c in m["baselines"]["comparisons"]} | set(m["baselines"]["skipped"]) == set(FINDINGS)
    # the external per-finding AUC is scikit-learn's on predictions.csv
    df = pd.read_csv(two_runs["multi"][0] / "evaluation-labels-test" / "predictions.csv")
    for f in FINDINGS:
        known = df[f"label_{f}"].notna()
        expected = roc_auc_score(df.loc[known, f"label_{f}"], df.loc[known, f"prob_{f}"])
        assert ext["per_finding"][f]["roc_auc"]["external"]["value"] == pytest.approx(expected)
    assert m["patients"]["n_patients"] == 40 and "macro_auc" in m["patients"]
    for html in (single["report"], multi["report"]):
        for sid in ("external-validation", "subgroups", "metadata-baselines", "patients", "shift"):
            assert f'id="{sid}"' in html
    # the console: macro/micro AUC with CIs, positives per finding, subgroup table, OOD share
    out = multi["output"]
    assert "macro AUC" in out and "micro AUC" in out and "positive" in out and "view=PA" in out
    assert "out-of-distribution" in out
    assert "sex=F" in single["output"]


def test_a_section_that_does_not_apply_says_why(two_runs):
    from medclass.evaluation.evaluate import evaluate

    res = evaluate(two_runs["multi"][0], n_boot=0, cam_samples=0, num_workers=0, report=False)
    status = res.metrics["sections"]
    assert status["external"] == {"title": "External validation", "applied": False,
                                  "reason": "the run's own split was evaluated (external data is given with --data)"}
    assert "--subgroups" in status["subgroups"]["reason"] and status["internal"]["applied"]


# -- console ------------------------------------------------------------------------------------------
def test_piped_output_is_wide_and_a_terminal_keeps_its_width(monkeypatch):
    import io

    from medclass.cli._common import PIPED_WIDTH, _width

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("COLUMNS", raising=False)
    assert _width(io.StringIO()) == PIPED_WIDTH >= 160 and _width(Tty()) is None
    monkeypatch.setenv("COLUMNS", "100")
    assert _width(io.StringIO()) is None  # an explicit width wins


def test_repeated_empty_cam_warnings_are_summarised(caplog):
    import logging

    from medclass.evaluation.sections.examples import summarised_cam_warnings

    cam_log = logging.getLogger("medclass.explain.cam")
    with caplog.at_level("WARNING"):
        with summarised_cam_warnings():
            for _ in range(13):
                cam_log.warning("%s: %d of %d maps are empty (no positive class evidence...)", "gradcam", 2, 4)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "26 of 52 maps in 13 call(s) are empty" in lines[0]


def test_data_check_prints_each_warning_once(tmp_path):
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    _register_all()
    csv = write_multilabel_csv(tmp_path)  # 24 patients: every finding too rare for validation/test
    out = CliRunner().invoke(app, ["data", "check", str(csv), "--patient-column", "patient", "--labels-from",
                                   "finding_labels", "--no-near-duplicates"])
    assert out.exit_code == 0, out.output
    for f in FINDINGS:
        assert out.output.count(f"finding '{f}' has positive patients") == 1, out.output
