"""External validation (issue 13): label mapping, patient-level bootstrap on external data, internal vs
external comparison, calibration slope/in-the-large, subgroups against a direct computation, the report
section and the model card."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from _run_fixture import make_run, pattern, write_image
from medclass.errors import ConfigError, DatasetError
from medclass.evaluation.evaluate import evaluate
from medclass.metrics.bootstrap import bootstrap_metrics
from medclass.metrics.external import calibration_fit, compare_sets, recalibrate_split, shift_warnings
from medclass.metrics.subgroups import parse_subgroups, subgroup_labels, subgroup_metrics

EXT_LABELS = {"NORMAL": "no_finding", "PNEUMONIA": "pneumonia"}
LABEL_MAP = "no_finding=NORMAL,pneumonia=PNEUMONIA"


def _external_csv(root: Path, n_patients: int = 12, images_per_patient: int = 3, seed: int = 5) -> Path:
    """An adult-style manifest: file names without the run's patient pattern, a patient_id column, metadata."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = p % 2
        for k in range(images_per_patient):
            path = write_image(root / "ext" / "images" / f"{1000 + 7 * p + k:08d}.png", pattern(rng, label))
            rows.append({"image": str(Path(path).relative_to(root / "ext")), "finding": list(EXT_LABELS.values())[label],
                         "patient_id": f"{500 + p}", "sex": "MF"[p % 3 == 0], "age": 10 + 6 * p,
                         "view": ["PA", "AP"][k % 2]})
    csv = root / "ext" / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


FLAGS = {"path_column": "image", "label_column": "finding", "patient_column": "patient_id", "label_map": LABEL_MAP}


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    run = make_run(root, seed=3)
    evaluate(run, n_boot=100, cam_samples=0, num_workers=0, report=False)  # the internal test evaluation
    csv = _external_csv(root)
    res = evaluate(run, data=str(csv), n_boot=100, cam_samples=0, num_workers=0, data_settings=FLAGS,
                   subgroups="sex,age:18:65,view", recalibrate=True)
    return run, csv, res


def test_unmapped_labels_are_refused_with_their_names(tmp_path):
    run = make_run(tmp_path, seed=4)
    csv = _external_csv(tmp_path, n_patients=4, images_per_patient=1)
    with pytest.raises(DatasetError, match=r"'no_finding' \(2 image\(s\)\), 'pneumonia' \(2 image\(s\)\).*--label-map"):
        evaluate(run, data=str(csv), n_boot=0, cam_samples=0, num_workers=0, report=False,
                 data_settings={k: v for k, v in FLAGS.items() if k != "label_map"})


def test_patient_column_drives_the_bootstrap_on_external_data(external):
    _, csv, res = external
    m, table = res.metrics, pd.read_csv(csv)
    n_ids = table["patient_id"].nunique()
    assert m["data"]["n_patients"] == n_ids == m["patients"]["n_patients"] == 12  # not one per image (36)
    assert res.predictions["patient"].astype(str).nunique() == n_ids
    y = (res.predictions["label"] == "PNEUMONIA").to_numpy(int)
    P = res.predictions[["prob_NORMAL", "prob_PNEUMONIA"]].to_numpy()
    by_patient = bootstrap_metrics(y, P, res.predictions["patient"].astype(str).to_numpy(), ["roc_auc"],
                                   m["threshold"], n_boot=100)
    by_image = bootstrap_metrics(y, P, None, ["roc_auc"], m["threshold"], n_boot=100)
    assert m["ci"]["roc_auc"] == pytest.approx(by_patient["roc_auc"])
    assert m["ci"]["roc_auc"]["low"] != pytest.approx(by_image["roc_auc"]["low"])


def test_external_section_compares_with_the_internal_test(external):
    run, _, res = external
    ext = res.metrics["external"]
    internal = json.loads((run / "metrics.json").read_text())
    c = ext["comparison"]["roc_auc"]
    assert c["internal"]["value"] == pytest.approx(internal["metrics"]["roc_auc"])
    assert c["external"]["value"] == pytest.approx(res.metrics["metrics"]["roc_auc"])
    assert c["difference"]["value"] == pytest.approx(c["external"]["value"] - c["internal"]["value"])
    assert set(ext["comparison"]) == {"roc_auc", "sensitivity", "specificity"}
    assert ext["prevalence"]["external"]["PNEUMONIA"] == pytest.approx(0.5)
    assert {"intercept_in_the_large", "slope"} <= set(ext["calibration"])
    ops = ext["operating_points"]
    assert ops["stored"]["threshold"] == res.metrics["threshold"]
    assert "optimistic" in ops["rechosen"]["declared"]
    rec = ext["recalibration"]
    assert rec["fit"]["n_patients"] + rec["evaluated"]["n_patients"] == 12
    assert rec["fit"]["n_images"] + rec["evaluated"]["n_images"] == 36


def test_internal_test_is_evaluated_first_when_missing(tmp_path):
    run = make_run(tmp_path, seed=6)
    csv = _external_csv(tmp_path, n_patients=4, images_per_patient=1)
    ext = evaluate(run, data=str(csv), n_boot=0, cam_samples=0, num_workers=0, report=False,
                   data_settings=FLAGS).metrics["external"]
    internal = json.loads((run / "metrics.json").read_text())  # written on the way
    assert internal["data"]["source"] == "run split" and internal["data"]["split"] == "test"
    assert ext["comparison"]["roc_auc"]["internal"] == {"value": pytest.approx(internal["metrics"]["roc_auc"])}
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.safetensors").write_bytes((run / "best.safetensors").read_bytes())
    ext = evaluate(bare / "model.safetensors", data=str(csv), n_boot=0, cam_samples=0, num_workers=0, report=False,
                   data_settings=FLAGS).metrics["external"]
    assert "no run folder" in ext["internal_missing"] and "comparison" not in ext


def test_subgroups_match_a_direct_computation(external):
    _, _, res = external
    df, m = res.predictions, res.metrics
    groups = {(g["column"], g["subgroup"]): g for g in m["subgroups"]["groups"]}
    assert {s for c, s in groups if c == "age"} == {"<18", "18-65", ">=65"}
    for sex in ("M", "F"):
        rows = df["sex"] == sex
        g = groups[("sex", sex)]
        y = (df.loc[rows, "label"] == "PNEUMONIA").to_numpy(int)
        assert g["n_images"] == rows.sum() and g["n_patients"] == df.loc[rows, "patient"].nunique()
        assert g["metrics"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, df.loc[rows, "prob_PNEUMONIA"]))
        ci = bootstrap_metrics(y, df.loc[rows, ["prob_NORMAL", "prob_PNEUMONIA"]].to_numpy(),
                               df.loc[rows, "patient"].astype(str).to_numpy(), ["roc_auc"], m["threshold"], n_boot=100)
        assert g["metrics"]["roc_auc"] == pytest.approx(ci["roc_auc"])


def test_subgroup_flag_and_unknown_column():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 200)
    good = np.where(y == 1, 0.9, 0.1) + rng.normal(0, 0.05, y.size)
    site = np.repeat(["a", "b"], 200)
    site[:6] = "c"  # 6 patients: too few to flag, however bad
    p = np.where(site == "a", np.clip(good, 0, 1), rng.uniform(size=y.size))  # sites b and c: noise
    out = subgroup_metrics(y, np.clip(p, 0, 1), np.arange(y.size).astype(str), pd.DataFrame({"site": site}),
                           parse_subgroups("site"), ["neg", "pos"], 0.5, n_boot=200)
    flagged = {g["subgroup"]: g["flagged"] for g in out["groups"]}
    assert "roc_auc" in flagged["b"] and flagged["a"] == flagged["c"] == []
    with pytest.raises(ConfigError, match="'site'"):
        subgroup_metrics(y, p, y, pd.DataFrame({"site": site}), parse_subgroups("sit"), ["n", "p"], 0.5, n_boot=0)


def test_subgroup_with_two_negative_patients_is_not_flagged_and_says_how_many():
    """Issue 26: a subgroup was flagged for low specificity on 2 negative images of 2 patients."""
    from medclass.serving._card_markdown import _subgroups

    rng = np.random.default_rng(1)
    site = np.repeat(["a", "b"], [200, 42])
    y = np.concatenate([np.tile([0, 1], 100), np.r_[np.ones(40, int), 0, 0]])  # site b: 40 positive, 2 negative patients
    p = np.where(y == 1, 0.8, 0.2) + rng.normal(0, 0.05, y.size)
    p[-2:] = 0.95  # both negatives of site b wrong: specificity 0 there
    out = subgroup_metrics(y, np.clip(p, 0, 1), np.arange(y.size).astype(str), pd.DataFrame({"site": site}),
                           parse_subgroups("site"), ["neg", "pos"], 0.5, n_boot=200)
    b = next(g for g in out["groups"] if g["subgroup"] == "b")
    assert b["metrics"]["specificity"]["high"] < out["overall"]["specificity"]  # what flagged it before
    assert b["flagged"] == [] and b["patients_per_class"] == {"neg": 2, "pos": 40}
    assert b["not_flaggable"] == "too few patients to flag: 2 neg (fewer than 10 of a class)"
    assert "10 patients of each class" in out["flag_rule"]
    table = "\n".join(_subgroups({**out, "spec": "site"}))  # the model card's table
    assert "| site | b | 42 | 42 (neg 2, pos 40) |" in table and "⚠" not in table.split("\n", 3)[3]  # no flagged cell


def test_numeric_bins_and_bad_specs():
    spec = parse_subgroups("age:18:65")[0]
    assert subgroup_labels(pd.Series(["17", "18", "64.9", "65", "", None]), spec).tolist() == [
        "<18", "18-65", "18-65", ">=65", "missing", "missing"]
    with pytest.raises(ConfigError, match="increasing"):
        parse_subgroups("age:65:18")
    with pytest.raises(ConfigError, match="no numbers"):
        subgroup_labels(pd.Series(["M", "F"]), parse_subgroups("sex:1")[0])


def test_calibration_slope_and_intercept_on_a_known_case():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, 40000)
    y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-z))).astype(int)
    too_extreme = calibration_fit(y, 1 / (1 + np.exp(-2 * z)))
    assert too_extreme.slope == pytest.approx(0.5, abs=0.03)
    assert too_extreme.intercept_in_the_large == pytest.approx(0.0, abs=0.05)
    shifted = calibration_fit(y, 1 / (1 + np.exp(-(z + 1.0))))  # over-predicts the positive class by 1 logit
    assert shifted.slope == pytest.approx(1.0, abs=0.05)
    assert shifted.intercept_in_the_large == pytest.approx(-1.0, abs=0.05)


def test_difference_ci_and_shift_warning():
    rng = np.random.default_rng(2)
    y = np.tile([0, 1], 300)
    inner = np.clip(np.where(y == 1, 0.8, 0.2) + rng.normal(0, 0.1, y.size), 0, 1)
    outer = np.clip(np.where(y == 1, 0.55, 0.45) + rng.normal(0, 0.2, y.size), 0, 1)
    c = compare_sets((y, outer, None), (y, inner, None), threshold=0.5, n_boot=200)
    d = c["roc_auc"]["difference"]
    assert d["high"] < 0 and d["low"] < d["value"] < d["high"]
    assert len(shift_warnings(c)) >= 1 and "roc_auc" in shift_warnings(c)[0]
    same = compare_sets((y, outer, None), (y, outer, None), threshold=0.5, n_boot=200)
    assert shift_warnings(same) == [] and same["roc_auc"]["difference"]["low"] < 0 < same["roc_auc"]["difference"]["high"]


def test_recalibration_halves_are_patient_disjoint():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(400).astype(str), 2)
    y = np.repeat(np.tile([0, 1], 200), 2)
    z = 3 * (y - 0.5) + rng.normal(0, 1, y.size)  # true log-odds 3 z
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = recalibrate_split(y, 1 / (1 + np.exp(-9 * z)), groups, 0.5, "youden", n_boot=50)
    assert out["fit"]["n_patients"] == out["evaluated"]["n_patients"] == 200
    assert out["fit"]["temperature_factor"] == pytest.approx(3.0, rel=0.25)  # 3x over-confident: softened
    assert out["evaluated"]["recalibrated"]["ece"] < out["evaluated"]["stored"]["ece"]


def test_report_section_and_model_card(external):
    run, _, res = external
    html = res.files["report"].read_text()
    assert 'id="external-validation"' in html and 'id="subgroups"' in html and 'id="model-card"' in html
    card = (res.out_dir / "model_card.md").read_text()
    assert "Not a medical device" in card and "External validation" in card and "Subgroups" in card
    assert (run / "model_card.md").is_file()  # the internal evaluation wrote one beside the checkpoint


def test_shift_box_in_the_report_summary():
    from medclass.evaluation._report_external import shift_box

    warning = "External roc_auc 0.600 (95% CI 0.500-0.700) is below the internal test's 0.950"
    box = shift_box({"external": {"warnings": [warning]}})
    assert 'class="bad"' in box and "Dataset shift" in box and "0.500-0.700" in box
    assert shift_box({"external": {"warnings": []}}) == shift_box({}) == ""


def test_web_app_shows_the_evaluated_model_card(external):
    from medclass.serving._card import saved_card

    run, _, _ = external
    card = (run / "model_card.md").read_text()
    assert saved_card(run / "best.safetensors") == saved_card(run) == card
    assert "Internal validation" in card
    import gradio as gr

    from medclass.serving.webapp import create_webapp

    shown = [b.value for b in create_webapp(run / "best.safetensors").blocks.values() if isinstance(b, gr.Markdown)]
    assert card.strip() in [(text or "").strip() for text in shown]


def test_metrics_json_names_the_image_channels_once(external):
    """metrics.json had the key 'channelss' in its image statistics."""
    _, _, res = external
    text = (res.out_dir / "metrics.json").read_text()
    assert '"channelss"' not in text and '"channels"' in text


def test_served_app_shows_the_saved_evaluation(external):
    """`medclass serve` (create_app) loaded the checkpoint into a Predictor and passed that on: the page and
    GET /model showed training-time figures although `evaluate` had saved its card and metrics.json."""
    from fastapi.testclient import TestClient

    from medclass.serving.webapp import create_app

    run, _, _ = external
    card = (run / "model_card.md").read_text()
    held_out = next(line for line in card.splitlines() if line.startswith("Evaluated on"))
    with TestClient(create_app(run / "best.safetensors")) as client:
        model = client.get("/model").json()
        page = client.get("/").text
    assert model["evaluation"]["held_out"] is True and model["evaluation"]["data"]["n_images"] > 0
    assert "ci_low" in str(model["evaluation"]["results"]) or "low" in model["evaluation"]["results"]["roc_auc"]
    assert "ood" in model["evaluation"] and "train_loss_step" not in str(model)
    assert json.dumps(held_out)[1:-1] in page and "No held-out evaluation" not in page  # the page's card


def test_rest_model_card_holds_the_saved_evaluation(external, tmp_path):
    """GET /model showed the checkpoint's own card only, without the test evaluation the web app shows."""
    import shutil

    from fastapi.testclient import TestClient

    from medclass.serving.api import create_api

    run, _, _ = external
    with TestClient(create_api(run / "best.safetensors")) as client:
        card = client.get("/model").json()
    saved = __import__("json").loads((run / "metrics.json").read_text())
    assert card["evaluation"]["held_out"] is True and card["evaluation"]["data"]["split"] == "test"
    assert card["evaluation"]["results"]["roc_auc"]["value"] == saved["metrics"]["roc_auc"]
    alone = tmp_path / "copy.safetensors"  # a checkpoint without an evaluation beside it: its own card only
    shutil.copy2(run / "best.safetensors", alone)
    with TestClient(create_api(alone)) as client:
        assert "evaluation" not in client.get("/model").json()


def test_cli_external_evaluation_with_subgroups_and_pdf(tmp_path):
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    _register_all()
    run = make_run(tmp_path, seed=7)
    csv = _external_csv(tmp_path, n_patients=6, images_per_patient=1)
    out = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(csv), "--path-column", "image", "--label-column",
                                   "finding", "--patient-column", "patient_id", "--label-map", LABEL_MAP,
                                   "--subgroups", "sex,age:18:65", "--n-boot", "20", "--cam-samples", "0",
                                   "--num-workers", "0", "--pdf"])
    assert out.exit_code == 0, out.output
    assert (run / "metrics.json").is_file()  # the internal test evaluated first, for the comparison
    folder = run / "evaluation-labels-test"
    assert (folder / "report.pdf").is_file() and (folder / "model_card.md").is_file()
    m = json.loads((folder / "metrics.json").read_text())
    assert m["subgroups"]["spec"] == "sex,age:18:65"
    # what the user reads (issue 26): the subgroup table, the data named as external (not "(test)"), the per-patient
    # counts per class with the few-patients warning (3 + 3 patients), full cells in piped output (no "…" cut)
    text = out.output
    assert "Subgroups (sex,age:18:65)" in text and "sex=M" in text and "age=<18" in text
    assert "images (external data)" in text and "(test)" not in text
    counts = m["patients"]["patients_per_class"]
    assert counts == {"NORMAL": 3, "PNEUMONIA": 3}
    assert "Per patient: 6 patients (NORMAL 3, PNEUMONIA 3" in text and "rest on only 3 NORMAL patients" in text
    assert "…" not in text
    card = (folder / "model_card.md").read_text()
    assert "Per patient (patient label = any positive image): 6 patients, NORMAL 3, PNEUMONIA 3." in card
    assert "**Warning: few patients.**" in card and "External validation" in card and "(external data)" in card


def test_calibration_fit_converges_far_from_the_start():
    # a model that says ~0.97 for everyone on data with half positives (the recipe 7 case): Newton must not diverge
    rng = np.random.default_rng(4)
    y = np.tile([0, 1], 500)
    p = 1 / (1 + np.exp(-(3.5 + rng.normal(0, 1.5, y.size))))
    fit = calibration_fit(y, p)
    assert fit.intercept_in_the_large == pytest.approx(-np.log(np.mean(p / (1 - p))), abs=1.5)
    assert np.isfinite(fit.intercept_in_the_large) and fit.intercept_in_the_large < -2.5


@pytest.mark.slow
def test_nih_cxr_external_evaluation_counts_patients_and_subgroups(shared_data, tmp_path):
    # issue 13: `evaluate --data` on the NIH set reported one patient per image; 1,000 images are 682 patients
    from _helpers import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "bare" / "model.safetensors", image_size=32)  # config: chest_xray file-name rule
    labels = shared_data / "nih_cxr" / "labels.csv"
    res = evaluate(ckpt, data=str(labels), n_boot=50, cam_samples=0, num_workers=0, report=True,
                   data_settings={"path_column": "image", "patient_column": "patient_id",
                                  "label_map": "no_finding=NORMAL,pneumonia=PNEUMONIA"},
                   subgroups="sex,age:18:65,view")
    m = res.metrics
    n_ids = pd.read_csv(labels)["patient_id"].nunique()
    assert m["data"]["n_patients"] == m["patients"]["n_patients"] == n_ids == 682
    subgroups = {(g["column"], g["subgroup"]) for g in m["subgroups"]["groups"]}
    assert {("sex", "F"), ("sex", "M"), ("view", "AP"), ("view", "PA"), ("age", "<18"), ("age", ">=65")} <= subgroups
    assert "no run folder" in m["external"]["internal_missing"]
    assert np.isfinite(m["external"]["calibration"]["intercept_in_the_large"])
    assert 'id="external-validation"' in res.files["report"].read_text()


def test_recalibrate_needs_external_data(tmp_path):
    run = make_run(tmp_path, seed=8)
    with pytest.raises(ConfigError, match="--recalibrate.*--data"):
        evaluate(run, recalibrate=True, report=False)


def test_the_runs_label_map_and_filter_do_not_apply_to_external_data(tmp_path):
    # recipe 7: a model trained on a CSV with label_map no_finding=NORMAL was refused on the paediatric folders
    # ("data.label_map names ['no_finding', ...], which ../chest_xray does not hold")
    import dataclasses

    from medclass.artifacts.checkpoint import load_checkpoint, save_checkpoint

    run = make_run(tmp_path, seed=9)
    model, meta = load_checkpoint(run / "best.safetensors")
    config = {**meta.config, "data": {**meta.config["data"], "label_map": {"no_finding": "NORMAL"},
                                      "where": "label == 'NORMAL'"}}
    save_checkpoint(run / "best.safetensors", model, dataclasses.replace(meta, config=config))
    csv = _external_csv(tmp_path, n_patients=4, images_per_patient=1)
    flags = {**FLAGS, "label_map": "pneumonia=PNEUMONIA,no_finding=NORMAL"}
    m = evaluate(run, data=str(csv), n_boot=0, cam_samples=0, num_workers=0, report=False, data_settings=flags).metrics
    assert m["data"]["n_predicted"] == 4 and m["filters"]["where"] == ""
    assert m["filters"]["label_map"] == {"pneumonia": "PNEUMONIA", "no_finding": "NORMAL"}


def test_subgroups_on_the_runs_own_test_split(tmp_path):
    run = make_run(tmp_path, seed=10)
    split = pd.read_csv(run / "split.csv", keep_default_na=False)
    split["site"] = np.where(split["patient"].str[3:].astype(int) % 2 == 0, "north", "south")
    split.to_csv(run / "split.csv", index=False)
    m = evaluate(run, n_boot=20, cam_samples=0, num_workers=0, report=False, subgroups="site").metrics
    test = split[split["split"] == "test"]
    assert {g["subgroup"]: g["n_images"] for g in m["subgroups"]["groups"]} == test["site"].value_counts().to_dict()
    assert "external" not in m
    with pytest.raises(ConfigError, match="no column 'age'.*'site'"):
        evaluate(run, n_boot=0, cam_samples=0, num_workers=0, report=False, subgroups="age:18")


def test_model_card_states_the_ood_section_in_words():
    """model_card.md printed the raw dict of the OOD section."""
    from medclass.serving._card_markdown import _ood

    text = "\n".join(_ood({"ood": {"available": True, "method": "mahalanobis", "threshold": 41.237, "quantile": 0.99,
                                   "n_scored": 200, "n_flagged": 3, "share_flagged": 0.015, "median_score": 20.0,
                                   "flagged": ["a.png"]}}))
    assert "3 of 200 evaluated images (1.5 %) are flagged" in text and "above 41.2, the 99th percentile" in text
    assert "{" not in text
    missing = "\n".join(_ood({"ood": {"available": False, "note": "This checkpoint has no OOD statistics."}}))
    assert "no OOD statistics" in missing and "{" not in missing


def test_the_shift_warning_is_printed_once_with_enough_digits():
    """`evaluate --data` printed the large-shift warning twice (a log line and the console) and rounded a domain AUC of
    0.998 to "1.00 (1.00-1.00)"."""
    import io

    from rich.console import Console

    from medclass.cli._evaluation_output import print_evaluation
    from medclass.evaluation._shift import shift_warning

    warning = shift_warning({"domain_classifier": {"auc": 0.998, "low": 0.9951, "high": 0.99962}}, 0.3)
    assert "AUC 0.998 (0.995-0.9996)" in warning and "1.00" not in warning
    m = {"leak_check": {"statement": "held out", "checked": True, "clean": True}, "task": "binary",
         "shift": {"large": True, "warning": warning}, "model": {"name": "m"}, "classes": ["a", "b"],
         "data": {"n_predicted": 4, "source": "external", "split": "test"}, "metrics": {"roc_auc": 0.9}, "ci": {}}
    buf = io.StringIO()
    print_evaluation(Console(file=buf, width=200), m)
    assert buf.getvalue().count("Large dataset shift") == 1
