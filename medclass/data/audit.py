"""The leak audit: patients and (near-)identical images shared between splits, and what to do about them.

:func:`audit_leaks` finds

1. patients that appear in more than one split; where rows have no patient id, an estimate: groups of
   file names that differ only in their last number (``IM-0115-0001`` / ``IM-0115-0002``, see
   :func:`~medclass.data.naming.name_prefixes`) and cross splits are counted as *probable* patient
   leaks, beside the near-duplicate groups that cross splits (neither is proof; both are reported);
2. groups of byte-identical images (same ``sha256``): all of them, those that cross splits and
   those filed under different patients;
3. near-duplicates: images whose perceptual hashes differ in at most ``max_distance`` bits (of the
   256 of :mod:`~medclass.data.fingerprint`), joined into groups (connected components), excluding
   groups that are one exact-duplicate group. The default 16 lies between re-encoded, resized or
   brightened copies (<= 16 bits on chest_xray) and different X-rays (>= 38 bits);
4. duplicates (exact or near) that carry different labels.

:func:`apply_leak_policy` then acts on the report:

- ``fail``: raise :class:`LeakError` with a readable summary when anything crosses splits;
- ``drop``: for each leaking group (a patient, identical images, near-duplicates) keep the rows of
  its earliest split in the order train, val, test and drop its rows in later splits, so no copy
  stays in val/test while one is in train;
- ``merge``: give all images linked by duplication one patient id, so that a following
  :func:`~medclass.data.splits.split_patients` keeps them together. Use it **before** splitting:
  it cannot move rows that already have a split (it warns if merged patients span splits);
- ``warn``: log the summary and keep everything.

Example:
    >>> report = audit_leaks(table, fingerprints)
    >>> print(report.summary())
    >>> table, info = apply_leak_policy(table, report, "drop")
    >>> info["dropped"][:2]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..config import DuplicatePolicy, choices
from ..errors import LeakError, check_choice
from .fingerprint import hash_words
from .naming import name_prefixes
from .neardup import hamming_edges
from .patients import LINKED_PREFIX, known_patient
from .splits import patient_groups
from .table import SPLITS, DataTable

log = logging.getLogger(__name__)

POLICIES = choices(DuplicatePolicy)
PROBABLE_LISTED = 20  # file-name groups listed in the report (all are counted)
LIST_LIMIT = 1000  # items of each kind listed in a JSON report; the counts always cover all of them


@dataclass
class LeakReport:
    """What :func:`audit_leaks` found. Groups hold positional ``rows`` of the audited table."""

    n_rows: int  # rows of the audited table (reports only apply to that table)
    max_distance: int  # near-duplicate threshold in phash bits (-1 when not checked)
    patient_overlap: list[dict] = field(default_factory=list)  # {"patient", "splits": {split: images}}
    exact_groups: list[dict] = field(default_factory=list)  # every byte-identical group (see _describe)
    near_groups: list[dict] = field(default_factory=list)  # near-duplicate groups that are not one exact group
    unhashed: int = 0  # rows without a fingerprint (unreadable), not audited
    without_patient: int = 0  # rows with a split but no patient id: patient overlap cannot be checked for them
    prefix_cross_split: int = 0  # among those, file-name prefix groups that cross splits (probable patients)
    prefix_cross_split_images: int = 0  # images in those groups
    prefix_examples: list[dict] = field(default_factory=list)  # {"prefix", "splits": {split: images}}, the first few

    @property
    def exact_cross_split(self) -> list[dict]:
        """Byte-identical groups with members in more than one split."""
        return [g for g in self.exact_groups if g["cross_split"]]

    @property
    def near_cross_split(self) -> list[dict]:
        """Near-duplicate groups with members in more than one split."""
        return [g for g in self.near_groups if g["cross_split"]]

    @property
    def has_leaks(self) -> bool:
        """True when a patient or a (near-)duplicate image is shared between splits."""
        return bool(self.patient_overlap or self.exact_cross_split or self.near_cross_split)

    def counts(self) -> dict[str, int]:
        """The headline numbers of the report."""
        exact, near = self.exact_groups, self.near_groups
        return {
            "patients_in_several_splits": len(self.patient_overlap),
            "exact_groups": len(exact),
            "exact_images": sum(len(g["rows"]) for g in exact),
            "exact_cross_split": len(self.exact_cross_split),
            "exact_cross_patient": sum(g["cross_patient"] for g in exact),
            "exact_conflicting_labels": sum(g["conflicting_labels"] for g in exact),
            "near_groups": len(near),
            "near_cross_split": len(self.near_cross_split),
            "near_within_split": sum(not g["cross_split"] for g in near),
            "near_conflicting_labels": sum(g["conflicting_labels"] for g in near),
            "unhashed": self.unhashed,
            "images_without_patient": self.without_patient,
            "prefix_groups_cross_split": self.prefix_cross_split,
            "probable_patient_leaks": self.prefix_cross_split + len(self.near_cross_split) if self.without_patient else 0,
        }

    def to_dict(self, limit: int | None = LIST_LIMIT) -> dict:
        """JSON-able dict: counts, summary text and the groups, at most ``limit`` of each kind (those across
        splits first; ``listed`` tells how many of how many are listed; ``None`` lists all)."""
        out = {"counts": self.counts(), "summary": self.summary(),
               **{f.name: getattr(self, f.name) for f in fields(self)}, "listed": {}}
        for key in ("patient_overlap", "exact_groups", "near_groups"):
            items = getattr(self, key)
            if limit is not None and len(items) > limit:
                items = sorted(items, key=lambda g: not g.get("cross_split", True))[:limit]
            out[key] = items
            out["listed"][key] = {"listed": len(items), "total": len(getattr(self, key))}
        return out

    def _patient_line(self, c: dict[str, int]) -> str:
        if not self.without_patient:
            return f"{c['patients_in_several_splits']} patient(s) in more than one split."
        estimate = (f"estimate: {self.prefix_cross_split} group(s) of file names that differ only in their last number "
                    f"({self.prefix_cross_split_images} images) and {c['near_cross_split']} near-duplicate group(s) cross "
                    f"splits: {c['probable_patient_leaks']} probable patient leak(s)")
        if self.without_patient == self.n_rows:
            return f"No patient ids: patient overlap between splits cannot be checked; {estimate}."
        return (f"{c['patients_in_several_splits']} patient(s) in more than one split; {self.without_patient} image(s) "
                f"without a patient id could not be checked ({estimate}).")

    def summary(self) -> str:
        """A few lines for people."""
        c = self.counts()
        lines = [
            self._patient_line(c),
            f"{c['exact_groups']} group(s) of byte-identical images ({c['exact_images']} images): "
            f"{c['exact_cross_split']} across splits, {c['exact_cross_patient']} under different patients, "
            f"{c['exact_conflicting_labels']} with conflicting labels.",
        ]
        if self.max_distance >= 0:
            lines.append(
                f"{c['near_groups']} near-duplicate group(s) (phash distance <= {self.max_distance}): "
                f"{c['near_cross_split']} across splits, {c['near_within_split']} within one split, "
                f"{c['near_conflicting_labels']} with conflicting labels."
            )
        if self.unhashed:
            lines.append(f"{self.unhashed} unreadable image(s) were not audited.")
        return "\n".join(lines)


def _describe_groups(df: pd.DataFrame, groups: pd.Series, rows: np.ndarray, group: np.ndarray) -> list[dict]:
    """JSON-able groups (rows, paths, splits, patients, labels and the three flags) of the rows ``rows`` of ``df``
    grouped by ``group``, ordered by their first row; vectorised but for building the dicts."""
    order = np.lexsort((rows, group))
    rows, group = np.asarray(rows, dtype=np.int64)[order], np.asarray(group)[order]
    sub = df.iloc[rows]
    cols = {"rows": rows.tolist(), "paths": sub["path"].tolist(), "splits": sub["split"].tolist(),
            "patients": sub["patient"].tolist(), "labels": sub["label"].tolist()}
    keyed = pd.DataFrame({"g": group, "split": sub["split"].to_numpy(), "patient": groups.to_numpy()[rows],
                          "label": sub["label"].to_numpy()})
    keyed["split"] = keyed["split"].where(keyed["split"] != "")  # unsplit rows do not make a group cross splits
    flags = keyed.groupby("g", sort=False).nunique() > 1  # one row per group, in order of appearance
    cuts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]).tolist() + [len(rows)]
    out = []
    flag_lists = (flags[c].tolist() for c in ("split", "patient", "label"))
    for lo, hi, split, patient, label in zip(cuts[:-1], cuts[1:], *flag_lists):
        item = {name: values[lo:hi] for name, values in cols.items()}
        item.update(cross_split=split, cross_patient=patient, conflicting_labels=label)
        out.append(item)
    return sorted(out, key=lambda g: g["rows"][0])


def _describe(df: pd.DataFrame, groups: pd.Series, rows: list[int]) -> dict:
    """One JSON-able group (see :func:`_describe_groups`)."""
    return _describe_groups(df, groups, np.asarray(rows, dtype=np.int64), np.zeros(len(rows), dtype=np.int64))[0]


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes of the graph with edges ``a - b``."""
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _aligned(table: DataTable, fingerprints: pd.DataFrame) -> pd.DataFrame:
    same = len(fingerprints) == len(table) and (
        fingerprints["path"].astype(str).to_numpy() == table.frame["path"].to_numpy()
    ).all()
    if not same:
        raise ValueError(
            f"Fingerprints ({len(fingerprints)} rows) do not line up with the table ({len(table)} rows); "
            "compute them with fingerprint(table) on this very table."
        )
    return fingerprints.reset_index(drop=True)


def _estimate_unnamed(report: LeakReport, unnamed: pd.DataFrame) -> None:
    """Rows with a split but no patient id: count the file-name prefix groups that cross splits."""
    report.without_patient = len(unnamed)
    if unnamed.empty:
        return
    prefix = name_prefixes(unnamed["path"], numbered_only=True).to_numpy()
    per = unnamed.groupby([prefix, unnamed["split"].to_numpy()]).size().unstack(fill_value=0)
    crossing = per[((per > 0).sum(axis=1) > 1) & (per.index != "")]
    report.prefix_cross_split = len(crossing)
    report.prefix_cross_split_images = int(crossing.to_numpy().sum())
    report.prefix_examples = [{"prefix": str(p), "splits": {s: int(n) for s, n in row.items() if n}}
                              for p, row in crossing.head(PROBABLE_LISTED).iterrows()]


def audit_leaks(
    table: DataTable,
    fingerprints: pd.DataFrame | None = None,
    near_duplicates: bool = True,
    max_distance: int = 16,
) -> LeakReport:
    """Find patients and identical or near-identical images shared between splits.

    Args:
        table: the data, usually after splitting (without splits only duplicates are found).
        fingerprints: from :func:`~medclass.data.fingerprint.fingerprint` on ``table`` (computed if None).
        near_duplicates: also compare perceptual hashes.
        max_distance: largest Hamming distance between perceptual hashes that counts as a near-duplicate.

    Example:
        >>> report = audit_leaks(table, fingerprint(table, cache_dir="cache"))
        >>> report.counts()["exact_groups"]
        25
    """
    if fingerprints is None:
        from .fingerprint import fingerprint

        fingerprints = fingerprint(table)
    fp = _aligned(table, fingerprints)
    df = table.frame
    groups = patient_groups(df)
    report = LeakReport(n_rows=len(df), max_distance=max_distance if near_duplicates else -1)

    named = df[(df["patient"] != "") & (df["split"] != "")]
    per_patient = named.groupby(["patient", "split"]).size().unstack(fill_value=0)
    for patient, row in per_patient[(per_patient > 0).sum(axis=1) > 1].iterrows():
        report.patient_overlap.append({"patient": str(patient), "splits": {s: int(n) for s, n in row.items() if n}})
    _estimate_unnamed(report, df[~known_patient(df["patient"]) & (df["split"] != "")])

    hashed = np.flatnonzero(fp["error"].fillna("").to_numpy() == "")  # unreadable rows have no hashes
    report.unhashed = len(df) - len(hashed)
    _, sha, copies = np.unique(hash_words(fp, "sha256")[hashed].view("V32").ravel(), return_inverse=True,
                               return_counts=True)  # sha: one id per distinct file content
    copied = copies[sha] > 1
    if copied.any():
        report.exact_groups = _describe_groups(df, groups, hashed[copied], sha[copied])

    if near_duplicates:
        edges = hamming_edges(hash_words(fp, "phash")[hashed], max_distance)
        label = _components(len(hashed), *edges) if len(hashed) else np.zeros(0, dtype=np.int64)
        members = pd.DataFrame({"label": label, "sha": sha})
        per = members.groupby("label")["sha"].agg(["size", "nunique"])
        near = per.index[(per["size"] > 1) & (per["nunique"] > 1)]  # not one exact-duplicate group
        keep = np.isin(label, near)
        if keep.any():
            report.near_groups = _describe_groups(df, groups, hashed[keep], label[keep])
    log.debug("Leak audit:\n%s", report.summary())  # callers report the audit that matters, once
    return report


def _flat(groups: list[dict], key: str) -> np.ndarray:
    """One field of every group, end to end."""
    return np.concatenate([np.asarray(g[key], dtype=object) for g in groups]) if groups else np.zeros(0, dtype=object)


def _check_report(table: DataTable, report: LeakReport) -> None:
    groups = report.exact_groups + report.near_groups
    rows = _flat(groups, "rows").astype(np.int64)
    same = report.n_rows == len(table) and bool(
        (table.frame["path"].to_numpy()[rows] == _flat(groups, "paths")).all()
    )
    if not same:
        raise ValueError("The leak report was computed on another table; run audit_leaks(table) on this one first.")


def _drop_reasons(table: DataTable, report: LeakReport) -> dict[int, list[str]]:
    """Row -> reasons, for rows in a later split than their leaking group's earliest split."""
    df = table.frame
    reasons: dict[int, list[str]] = {}
    split_rank = {s: i for i, s in enumerate(SPLITS)}
    patients = {item["patient"] for item in report.patient_overlap}
    shared = np.flatnonzero(df["patient"].isin(patients).to_numpy() & (df["split"] != "").to_numpy())
    if len(shared):
        sub = df.iloc[shared]
        rank = sub["split"].map(split_rank).to_numpy()
        keep = pd.Series(rank).groupby(sub["patient"].to_numpy()).transform("min").to_numpy()
        for r, patient, k in zip(shared[rank != keep], sub["patient"].to_numpy()[rank != keep], keep[rank != keep]):
            reasons.setdefault(int(r), []).append(f"patient {patient} is also in {SPLITS[k]}")
    kinds = ((report.exact_cross_split, "byte-identical to"), (report.near_cross_split, "near-duplicate of"))
    for group_list, words in kinds:
        if not group_list:
            continue
        rows, paths = _flat(group_list, "rows").astype(np.int64), _flat(group_list, "paths")
        gid = np.repeat(np.arange(len(group_list)), [len(g["rows"]) for g in group_list])
        rank = pd.Series(_flat(group_list, "splits")).map(split_rank).to_numpy()  # NaN: no split
        keep = pd.Series(rank).groupby(gid).transform("min").to_numpy()
        at_keep = np.flatnonzero(rank == keep)
        kept_path = paths[pd.Series(at_keep).groupby(gid[at_keep]).first().to_numpy()]  # first copy in that split
        for r, g, k in zip(rows[rank > keep], gid[rank > keep], keep[rank > keep]):
            reasons.setdefault(int(r), []).append(f"{words} {kept_path[g]} in {SPLITS[int(k)]}")
    return reasons


def _merged_patients(table: DataTable, report: LeakReport) -> tuple[pd.Series, list[dict]]:
    """New patient id per row, joining every patient linked by an exact or near-duplicate group."""
    df = table.frame
    groups = patient_groups(df)
    keys, node = np.unique(groups.to_numpy(), return_inverse=True)
    patient = df["patient"].copy()
    merges: list[dict] = []
    linked = [np.asarray(g["rows"], dtype=np.int64) for g in report.exact_groups + report.near_groups]
    if not linked:
        return patient, merges
    chains = np.concatenate([node[rows] for rows in linked])
    last = np.cumsum([len(rows) for rows in linked]) - 1  # a chain joins each group's patients; none across groups
    a, b = np.delete(chains[:-1], last[:-1]), np.delete(chains[1:], last[:-1])
    label = _components(len(keys), a, b)
    size = np.bincount(label, minlength=len(keys))
    rows = np.flatnonzero(size[label[node]] > 1)
    if not len(rows):
        return patient, merges
    nodes = pd.DataFrame({"comp": label[node[rows]], "key": keys[node[rows]].astype(str), "row": rows,
                          "split": df["split"].replace("", np.nan).to_numpy()[rows]})
    nodes["real"] = nodes["key"].where(~nodes["key"].str.startswith("#row"))
    per = nodes.groupby("comp").agg(first_row=("row", "min"), rows=("row", "size"),
                                    splits=("split", "nunique"))
    real = nodes.dropna(subset=["real"]).groupby("comp")["real"].agg(lambda s: sorted(set(s)))
    unnamed = nodes[nodes["real"].isna()].groupby("comp")["key"].nunique()
    for comp, info in per.iterrows():  # one entry per merged set (a summary, not per row)
        names = real.get(comp, [])
        new_id = names[0] if names else f"{LINKED_PREFIX}{Path(df['path'].iloc[info['first_row']]).stem}"
        merges.append({"patients": names, "unnamed_rows": int(unnamed.get(comp, 0)), "into": new_id,
                       "rows": int(info["rows"])})
        if len(names) > 1:
            log.warning("Duplicate images link patients %s: they become one patient %r (split.csv shows that id).",
                        ", ".join(names), new_id)
        if info["splits"] > 1:
            log.warning("Merged patient %s spans several splits already; merge before split_patients or use 'drop'.",
                        new_id)
    new_ids = pd.Series([m["into"] for m in merges], index=per.index)
    patient.iloc[rows] = new_ids.loc[nodes["comp"]].to_numpy()
    return patient, merges


def apply_leak_policy(table: DataTable, report: LeakReport, policy: str) -> tuple[DataTable, dict]:
    """Act on a :class:`LeakReport`: ``fail``, ``drop``, ``merge`` or ``warn`` (see the module docstring).

    Returns the new table and ``{"policy", "summary", "dropped": [{path, frame, split, label,
    patient, reason}], "merged": [{patients, unnamed_rows, into, rows}]}``. Dropped rows are also
    appended to ``table.skipped``.

    Raises:
        LeakError: policy ``fail`` and something is shared between splits.

    Example:
        >>> table = apply_leak_policy(table, audit_leaks(table, fp), "merge")[0]  # then split_patients
    """
    check_choice("leak policy (data.duplicates)", policy, POLICIES)
    _check_report(table, report)
    info: dict = {"policy": policy, "summary": report.summary(), "dropped": [], "merged": []}
    if policy == "fail":
        if report.has_leaks:
            raise LeakError(
                f"The leak audit of {table.root or 'the data'} found data shared between splits:\n{report.summary()}\n"
                "Fix: set data.duplicates=drop to drop the val/test copies, or use 'merge' before splitting."
            )
        return table, info
    if policy == "warn":
        if report.has_leaks:
            log.warning("Data shared between splits is kept (policy 'warn'):\n%s", report.summary())
        return table, info
    if policy == "merge":
        patient, info["merged"] = _merged_patients(table, report)
        return table.with_frame(table.frame.assign(patient=patient)), info
    reasons = _drop_reasons(table, report)
    df = table.frame
    dropped = sorted(reasons)
    rows = df.iloc[dropped][["path", "frame", "split", "label", "patient"]].assign(
        frame=lambda d: d["frame"].astype(int), reason=["; ".join(reasons[r]) for r in dropped])
    info["dropped"] = rows.to_dict(orient="records")
    out = table.with_frame(df.drop(index=sorted(reasons)))
    out.skipped.extend({"path": d["path"], "reason": f"leak: {d['reason']}"} for d in info["dropped"])
    if reasons:
        log.warning("Dropped %d row(s) shared between splits (policy 'drop').", len(reasons))
    return out, info


__all__ = ["LIST_LIMIT", "POLICIES", "LeakReport", "apply_leak_policy", "audit_leaks"]
