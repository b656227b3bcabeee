"""Compare finished runs: size, cost, learning curves, test metrics with CIs, and paired AUC tests.

Numbers first, plots second: :func:`compare_runs` builds the table and the paired tests from the run
folders, then :mod:`._report` draws them and writes ``comparison.csv``, PNGs and a self-contained
``comparison.html``.

Multi-label runs compare like the others: their test macro and micro AUC in the table, and a paired
bootstrap of the macro AUC difference (:func:`paired_findings_test`) for two runs with the same
findings on the same images. A multi-label run beside a single-label one shares the table (size,
cost, curves) but no paired test: their AUCs answer different questions, and ``notes`` says so.

Example:
    >>> cmp = compare_runs(["chest/resnet18", "chest/simple_cnn"], out=Path("cmp"))  # doctest: +SKIP
    >>> cmp.table[["model", "params", "train_time_s", "test_roc_auc"]]                # doctest: +SKIP
    >>> print("\\n".join(cmp.sentences))                                                # doctest: +SKIP
    AUC of resnet18 0.951 vs simple_cnn 0.944: difference +0.007 (95% CI -0.004 to +0.018), p = 0.21 (DeLong); ...
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from ..artifacts import CompareDir
from ..data.splits import patient_groups
from ..utils import epoch_number
from ._report import write_report
from ._runs import prob_columns, read_history, read_predictions, resolve_run, run_summary

MULTI = "multi_label"

log = logging.getLogger(__name__)

ALPHA = 0.05  # significance level of the paired tests


@dataclass
class Comparison:
    """The result of :func:`compare_runs`: tables, paired tests, sentences and the files written."""

    table: pd.DataFrame  # one row per run (see _runs.run_summary)
    pairs: pd.DataFrame  # one row per pair of runs tested on the same images
    sentences: list[str]  # the paired tests in words
    histories: dict[str, pd.DataFrame]  # metrics.csv per run name
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)  # what was written: csv, html, plots
    notes: list[str] = field(default_factory=list)  # pairs left untested and why (e.g. multi- vs single-label)

    def rich_table(self) -> Table:
        """A compact rich table for the terminal (columns with no value in any run are left out)."""
        monitors = set(self.table["monitor"])
        best = f"best {monitors.pop()}" if len(monitors) == 1 else "best val"
        cols = [("name", "run"), ("model", "model"), ("params", "params"), ("image_size", "size"), ("epochs", "epochs"),
                ("train_time_s", "time s"), ("peak_rss_mb", "RSS MiB"), ("gpu_max_mb", "GPU MiB"),
                ("best_val", best), ("best_epoch", "epoch"), ("test_roc_auc", "test AUC (95% CI)"),
                ("test_accuracy", "test acc (95% CI)"), ("test_macro_auc", "test macro AUC (95% CI)")]
        if (self.table["task"] == MULTI).any():
            cols.insert(2, ("task", "task"))
        cols = [(k, title) for k, title in cols if k in self.table.columns and self.table[k].notna().any()]
        t = Table(title="Run comparison")
        for _, title in cols:
            t.add_column(title, justify="left" if title in ("run", "model") else "right")
        for _, row in self.table.iterrows():
            t.add_row(*(_cell(row, key, len(monitors) > 1) for key, _ in cols))
        return t


def _cell(row: pd.Series, key: str, show_monitor: bool = False) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if key == "params":
        return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{int(value):,}"
    if key.startswith("test_"):
        low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
        ci = f" ({low:.3f}-{high:.3f})" if low is not None and np.isfinite(low) and np.isfinite(high) else ""
        return f"{value:.3f}{ci}"
    if key == "best_epoch":  # the index in metrics.csv; people count epochs from 1
        return str(epoch_number(value))
    if key == "best_val":
        return f"{value:.4f}" + (f" ({row['monitor']})" if show_monitor else "")
    if isinstance(value, float):
        return f"{value:.0f}" if key.endswith(("_s", "_mb")) else f"{value:.4g}"
    return str(value)


def run_names(run_dirs: list[Path]) -> list[str]:
    """Short unique names: the experiment folder name, or ``project/experiment`` when those repeat.

    >>> run_names([Path("ws/a/resnet"), Path("ws/b/resnet"), Path("ws/a/cnn")])
    ['a/resnet', 'b/resnet', 'cnn']
    """
    short = [p.name for p in run_dirs]
    return [f"{p.parent.name}/{p.name}" if short.count(p.name) > 1 else p.name for p in run_dirs]


def _aligned_pair(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame | None:
    """Rows of two predictions tables joined by image (path, frame), or None when the image sets differ."""
    keys = ["path", "frame"] if "frame" in a.columns and "frame" in b.columns else ["path"]
    if set(map(tuple, a[keys].to_numpy())) != set(map(tuple, b[keys].to_numpy())) or len(a) != len(b):
        return None
    merged = a.merge(b, on=keys, suffixes=("_a", "_b"))
    if (merged["label_a"] != merged["label_b"]).any():
        return None
    return merged


def paired_test(name_a: str, name_b: str, a: pd.DataFrame, b: pd.DataFrame, *, n_boot: int = 2000,
                seed: int = 0) -> dict | None:
    """DeLong test and patient-level paired bootstrap of the AUC difference of two runs on the same images.

    Binary tasks only (the AUC of the positive class, the second ``prob_`` column). Returns None when
    the two prediction tables do not hold the same images with the same labels.

    Example:
        >>> paired_test("resnet", "cnn", pred_a, pred_b)["delong_p"]  # doctest: +SKIP
        0.21
    """
    from ..metrics.stats import delong_test, describe_difference, paired_bootstrap_auc

    cols_a, cols_b = prob_columns(a), prob_columns(b)
    if cols_a != cols_b or len(cols_a) != 2:
        log.info("paired test %s vs %s skipped: needs the same two classes (got %s and %s)", name_a, name_b, cols_a, cols_b)
        return None
    merged = _aligned_pair(a, b)
    if merged is None:
        log.info("paired test %s vs %s skipped: not tested on the same images", name_a, name_b)
        return None
    positive = cols_a[1][len("prob_"):]
    y = (merged["label_a"] == positive).to_numpy(dtype=np.int64)
    p_a, p_b = merged[f"{cols_a[1]}_a"].to_numpy(float), merged[f"{cols_a[1]}_b"].to_numpy(float)
    patients = patient_groups(merged.rename(columns={"patient_a": "patient"})).to_numpy() \
        if "patient_a" in merged.columns else None  # images without a patient id are their own patient
    delong = delong_test(y, p_a, p_b, alpha=ALPHA)
    boot = paired_bootstrap_auc(y, p_a, p_b, groups=patients, n_boot=n_boot, seed=seed, alpha=ALPHA)
    row = {"run_a": name_a, "run_b": name_b, "metric": "roc_auc", "n_images": int(len(y)), "auc_a": delong["auc1"],
           "auc_b": delong["auc2"],
           "difference": delong["diff"], "delong_ci_low": delong["ci_low"], "delong_ci_high": delong["ci_high"],
           "delong_p": delong["p_value"], "bootstrap_ci_low": boot["ci_low"], "bootstrap_ci_high": boot["ci_high"],
           "bootstrap_p": boot["p_value"], "bootstrap_method": boot["method"],
           "significant": bool(delong["p_value"] < ALPHA)}
    row["sentence"] = describe_difference(delong, ALPHA, (name_a, name_b))
    row["bootstrap_sentence"] = describe_difference(boot, ALPHA, (name_a, name_b))
    return row


def _findings(predictions: pd.DataFrame) -> list[str]:
    """The findings of a multi-label ``predictions.csv`` (its ``label_<finding>`` columns beside ``prob_<finding>``)."""
    return [c[len("prob_"):] for c in prob_columns(predictions) if f"label_{c[len('prob_'):]}" in predictions.columns]


def paired_findings_test(name_a: str, name_b: str, a: pd.DataFrame, b: pd.DataFrame, *, n_boot: int = 2000,
                         seed: int = 0) -> dict | None:
    """Paired bootstrap (over patients) of the macro AUC difference of two multi-label runs on the same images.

    Returns None when the two ``predictions.csv`` do not hold the same findings, images and labels.

    Example:
        >>> paired_findings_test("resnet", "cnn", pred_a, pred_b)["bootstrap_p"]  # doctest: +SKIP
        0.04
    """
    from ..metrics.stats import describe_difference, paired_bootstrap_macro_auc

    findings = _findings(a)
    if not findings or findings != _findings(b):
        log.info("paired test %s vs %s skipped: different findings (%s and %s)", name_a, name_b, findings, _findings(b))
        return None
    merged = _aligned_pair(a, b)
    if merged is None:
        log.info("paired test %s vs %s skipped: not tested on the same images", name_a, name_b)
        return None
    labels = {side: merged[[f"label_{f}_{side}" for f in findings]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
              for side in ("a", "b")}
    if not np.array_equal(labels["a"], labels["b"], equal_nan=True):  # masked (blank) labels must match too
        log.info("paired test %s vs %s skipped: the findings' labels differ", name_a, name_b)
        return None
    p_a, p_b = (merged[[f"prob_{f}_{side}" for f in findings]].to_numpy(float) for side in ("a", "b"))
    patients = patient_groups(merged.rename(columns={"patient_a": "patient"})).to_numpy() \
        if "patient_a" in merged.columns else None
    boot = paired_bootstrap_macro_auc(labels["a"], p_a, p_b, groups=patients, n_boot=n_boot, seed=seed, alpha=ALPHA)
    nan = float("nan")
    row = {"run_a": name_a, "run_b": name_b, "metric": "macro_auc", "n_images": int(len(merged)),
           "auc_a": boot["auc1"], "auc_b": boot["auc2"], "difference": boot["diff"], "delong_ci_low": nan,
           "delong_ci_high": nan, "delong_p": nan, "bootstrap_ci_low": boot["ci_low"],
           "bootstrap_ci_high": boot["ci_high"], "bootstrap_p": boot["p_value"], "bootstrap_method": boot["method"],
           "significant": bool(boot["p_value"] < ALPHA)}
    row["sentence"] = describe_difference(boot, ALPHA, (name_a, name_b), metric="macro AUC")
    row["bootstrap_sentence"] = ""  # DeLong has no multi-label form: the bootstrap is the one test
    return row


def _pair(na: str, nb: str, pa: pd.DataFrame | None, pb: pd.DataFrame | None, tasks: dict[str, str],
          n_boot: int, notes: list[str]) -> dict | None:
    """The paired test of two runs that fits their task, or None (with a note when the tasks differ)."""
    if tasks[na] != tasks[nb] and MULTI in (tasks[na], tasks[nb]):
        notes.append(f"No paired test of {na} ({tasks[na] or 'unknown task'}) vs {nb} ({tasks[nb] or 'unknown task'}): "
                     "a multi-label run's macro AUC over its findings and a single-label run's AUC answer different "
                     "questions; compare each with a run of its own task.")
        return None
    if pa is None or pb is None:
        return None
    if tasks[na] == MULTI:
        row = paired_findings_test(na, nb, pa, pb, n_boot=n_boot)
        if row is None:
            notes.append(f"No paired test of {na} vs {nb}: two multi-label runs are tested on the same findings, "
                         "images and labels only (see their predictions.csv).")
        return row
    return paired_test(na, nb, pa, pb, n_boot=n_boot)


def compare_runs(runs: list[str | Path], out: str | Path, workspace: str | Path = "workspace", *,
                 n_boot: int = 2000, plots: bool = True) -> Comparison:
    """Compare run folders and write ``comparison.csv``, plots and ``comparison.html`` into ``out``.

    Args:
        runs: run folders, as paths or ``project/experiment`` names under ``workspace``.
        out: output folder (created).
        workspace: where ``project/experiment`` names are looked up.
        n_boot: bootstrap resamples of the paired AUC test.
        plots: also draw the PNGs and the HTML page (the CSV is always written).

    Raises:
        FileNotFoundError: a run is not a run folder.
        ValueError: fewer than one run, or the same run twice.

    Example:
        >>> cmp = compare_runs(["chest/resnet18", "chest/densenet121"], out="comparisons/chest")  # doctest: +SKIP
        >>> cmp.files["html"]                                                                      # doctest: +SKIP
        PosixPath('comparisons/chest/comparison.html')
    """
    if not runs:
        raise ValueError("compare_runs needs at least one run (a run folder or project/experiment).")
    dirs = [resolve_run(r, workspace) for r in runs]
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise ValueError(f"The same run is listed twice in {[str(r) for r in runs]}; list each run once.")
    names = run_names(dirs)
    table = pd.DataFrame([run_summary(d) for d in dirs])
    table.insert(0, "name", names)
    histories = {n: read_history(d) for n, d in zip(names, dirs)}
    predictions = {n: read_predictions(d) for n, d in zip(names, dirs)}
    tasks = dict(zip(names, table["task"]))
    rows, notes = [], []
    for (na, pa), (nb, pb) in itertools.combinations(predictions.items(), 2):
        if (row := _pair(na, nb, pa, pb, tasks, n_boot, notes)) is not None:
            rows.append(row)
    pairs = pd.DataFrame(rows, columns=None if rows else ["run_a", "run_b", "sentence", "bootstrap_sentence"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sentences = [s for r in rows for s in (r["sentence"], r["bootstrap_sentence"]) if s]
    result = Comparison(table, pairs, sentences, histories, out, notes=notes)
    from ..utils import atomic_write_text

    folder = CompareDir(out)
    atomic_write_text(folder.table, table.to_csv(index=False))
    result.files["csv"] = folder.table
    if len(pairs):
        atomic_write_text(folder.pairs, pairs.to_csv(index=False))
        result.files["pairs"] = folder.pairs
    if plots:
        result.files.update(write_report(out, table, pairs, sentences, histories, notes))
    return result
