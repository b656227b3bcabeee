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
    assert len(srcs) == _n_images(result) + 1  # + the shortcuts part's "CAM most outside" grid
    main = html.split("<main>")[1]
    assert main.lower().count("not a medical device") == 1  # once: the report's own last section, not the card's too
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


def _n_images(result) -> int:
    """Confusion matrix, ROC, PR, calibration, training; a tile per gallery and top-loss image; two per Grad-CAM
    tile (the image and its overlay) and one colour scale per class with Grad-CAM tiles."""
    ex = result.examples
    cams = ex.get("cam", [])
    return 5 + len(ex["gallery"]) + len(ex["top_losses"]) + 2 * len(cams) + len({e.label for e in cams})


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
    assert dom.count("<img") == _n_images(report[0]) + 1  # + the shortcuts part's "CAM most outside" grid
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


LONG = "/data/hospital_a/export 2024/PNEUMONIA/person1234_bacteria_5678_{}_scanner-export_frontal-view.jpeg"


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_tiles_captions_card_heading_and_disclaimer_in_the_browser(report, tmp_path):
    """Issue 26, measured in the rendered page: captions of the gallery, top-loss and Grad-CAM tiles stay inside their
    tile and never overlap one another, long file names wrap at separators (never cut) with the full path in the
    tooltip, images are >= 224 px with the original beside each CAM and a colour scale, the embedded model card's
    headings are not larger than the report's title, and "not a medical device" is said once."""
    from playwright.sync_api import sync_playwright

    from medclass.serving._card import DISCLAIMER

    result, _ = report
    examples = {k: [dataclasses.replace(e, path=LONG.format(f"{k}{i}")) if hasattr(e, "path") else e for i, e in enumerate(v)]
                for k, v in result.examples.items()}
    card = (f"# Model card: simple_cnn\n\n**{DISCLAIMER}**\n\n## Limitations\n\nSome.\n\n"
            f"## Not a medical device\n\n{DISCLAIMER}\n")
    path = write_report(dataclasses.replace(result, examples=examples, model_card=card), tmp_path / "r.html")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(path.resolve().as_uri())
            tiles = page.evaluate("""() => [...document.querySelectorAll('figure.tile')].map(f => {
                const r = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
                return {section: f.closest('section').id, tile: r(f), caption: r(f.querySelector('figcaption')),
                        title: f.title, name: f.querySelector('.name').innerText,
                        imgs: [...f.querySelectorAll('img')].map(i => [i.getBoundingClientRect().width,
                                                                      i.getBoundingClientRect().top])}; })""")
            scale = page.locator("#cam .scale img").count()
            sizes = page.evaluate("""() => ({title: parseFloat(getComputedStyle(document.querySelector('header h1')).fontSize),
                card: Math.max(...[...document.querySelectorAll('#model-card h1, #model-card h2, #model-card h3, #model-card h4')]
                               .map(h => parseFloat(getComputedStyle(h).fontSize)))})""")
            main_text = page.locator("main").inner_text().lower()
            page.screenshot(path=str(tmp_path / "tiles.png"), full_page=True)
            page.screenshot(path=str(tmp_path / "tiles.png"), full_page=True)
        finally:
            browser.close()
    ex = result.examples
    assert len(tiles) == len(ex["gallery"]) + len(ex["top_losses"]) + len(ex["cam"]) > 0
    for t in tiles:
        (l, top, r, b), (cl, ct, cr, cb) = t["tile"], t["caption"]
        assert l <= cl and cr <= r + 0.5 and cb <= b + 0.5, t  # the caption stays inside its tile
        assert t["title"].startswith("/data/hospital_a/") and t["name"] == t["title"].rsplit("/", 1)[1]
        assert all(w >= 224 for w, _ in t["imgs"]), t
        if t["section"] == "cam":  # the image the model saw beside its overlay, on one row
            assert len(t["imgs"]) == 2 and abs(t["imgs"][0][1] - t["imgs"][1][1]) < 1, t
    for i, a in enumerate(tiles):  # no caption overlaps another tile's caption
        for b in tiles[i + 1:]:
            (al, at, ar, ab), (bl, bt, br, bb) = a["caption"], b["caption"]
            assert ar <= bl or br <= al or ab <= bt or bb <= at, (a, b)
    assert scale == len({e.label for e in ex["cam"]}) >= 1
    assert sizes["card"] <= sizes["title"], sizes
    assert main_text.count("not a medical device") == 1


def test_short_names_are_cut_at_separators_only():
    from medclass.evaluation._tiles import breakable, short_name

    name = "person1234_bacteria_5678_scanner-export_frontal-view.jpeg"
    short = short_name(name)
    assert short.endswith("….jpeg") and name.startswith(short[:-6]) and short[:-6][-1] in "_-."
    assert "<wbr>" in breakable(name) and breakable(name).replace("<wbr>", "") == name
