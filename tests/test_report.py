"""report.html: self-contained (no external assets), every section present, renders in headless Chromium."""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile

import pytest

from _run_fixture import make_run
from medclass.metrics import plots
from medclass.evaluation.evaluate import evaluate
from medclass.evaluation.report import write_report

SECTIONS = ["summary", "leak-check", "data", "metrics", "confusion-matrix", "curves", "calibration", "training",
            "baseline", "gallery", "top-losses", "cam", "patients", "shortcuts", "disclaimer"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    result = evaluate(make_run(root, classes=("a", "b", "c")), n_boot=50, cam_samples=1, num_workers=0, report=False)
    path = write_report(result, root / "out" / "report.html", pdf=True)
    return result, path


def test_self_contained_with_every_section(report):
    result, path = report
    html = path.read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(href|src)="(https?:|//)', html) and "<link" not in html and "<script" not in html
    # confusion matrix, ROC, PR, calibration, training, gallery, top losses, one CAM grid per class, CAM most outside
    assert len(srcs) == 7 + 3 + 1
    assert "not a medical device" in html.lower()
    assert result.metrics["leak_check"]["statement"].split(":")[0] in html


def test_pdf_export(report):
    result, path = report
    pdf = path.with_suffix(".pdf")
    assert result.files["pdf"] == pdf and pdf.read_bytes()[:5] == b"%PDF-"


def test_contaminated_report_warns(report, tmp_path):
    result = dataclasses.replace(report[0], examples={}, metrics=dict(report[0].metrics))  # no image grids: faster
    result.metrics["leak_check"] = {**result.metrics["leak_check"], "clean": False,
                                    "statement": "WARNING: overlap", "counts": {"same_path": 1},
                                    "same_path": ["/x/a.png"]}
    result.metrics["contaminated"] = True
    html = write_report(result, tmp_path / "r.html").read_text()
    assert 'class="bad"' in html and "/x/a.png" in html and "NOT held-out" in html


def test_plots_take_computed_results():
    fig = plots.roc_figure({"b": {"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1], "auc": 0.8}},
                           [{"fpr": 0.5, "tpr": 0.8, "label": "threshold 0.4"}])
    line = fig.axes[0].lines[0]
    assert line.get_xdata().tolist() == [0, 0.5, 1] and "auc 0.800" in line.get_label()
    assert plots.figure_png(fig)[:4] == b"\x89PNG"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_renders_in_headless_chromium(report, tmp_path):
    _, path = report
    url = path.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120).stdout
    for sid in SECTIONS:
        assert f'id="{sid}"' in dom
    assert dom.count("<img") == 11
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1280,4000", url], capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 4000)
        assert len(im.convert("L").getcolors(maxcolors=1 << 16) or [0] * 1000) > 50  # not a blank page


def test_report_details_of_issue_12(report):
    """Epochs from 1 in text as in the plots, labelled probabilities, early stopping, no empty header row."""
    from medclass.evaluation.report import _caption, _training_note

    result, path = report
    html = path.read_text()
    summary = html.split('<section id="summary">')[1].split("</section>")[0]
    assert "<th></th>" not in summary and "<th>" not in summary.split("<table>")[1].split("</table>")[0]
    best = result.metrics["training"]["best_epoch"]
    assert f"best epoch {best + 1} (validation)" in html and f"Best checkpoint: epoch {best + 1}." in html
    ex = result.examples["gallery"][0]
    assert f"p(pred)={ex.prob_predicted:.2f}" in _caption(ex, "gallery")
    assert f"p(true)={ex.prob_true:.2f}" in _caption(ex, "top_losses")
    stopped = {"history": {"epoch": [0, 1, 2]}, "best_epoch": 0, "max_epochs": 10, "early_stopping": 2,
               "monitor": "val_loss"}
    assert _training_note(stopped) == ("Trained 3 of at most 10 epochs; early stopping ended the run after 2 epochs "
                                        "without improvement of val_loss. Best checkpoint: epoch 1.")
