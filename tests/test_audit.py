"""The leak audit and the leak policies, on hand-made fingerprints and on chest_xray."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass.data._fpstore import hex_words
from medclass.data.audit import apply_leak_policy, audit_leaks
from medclass.data.neardup import hamming_pairs as _phash_pairs
from medclass.data.fingerprint import PART_GLOB, fingerprint, from_hex, hex_digests
from medclass.data.splits import split_patients
from medclass.data.table import DataTable
from medclass.errors import ConfigError, LeakError

#            path    label  patient split    sha  phash (hex of 64 bits)
ROWS = [
    ("a.png", "A", "p1", "train", "s1", "0000000000000000"),
    ("b.png", "A", "p1", "test", "s2", "00000000000000ff"),  # patient p1 in train and test
    ("c.png", "A", "p2", "train", "s3", "ffff000000000000"),
    ("d.png", "A", "p3", "test", "s3", "ffff000000000000"),  # byte-identical to c, other patient, other split
    ("e.png", "B", "p4", "val", "s4", "0f0f0f0f00000000"),
    ("f.png", "B", "p4", "val", "s4", "0f0f0f0f00000000"),  # identical within one split and patient
    ("g.png", "A", "p5", "val", "s5", "f0f0f0f000000000"),
    ("h.png", "B", "p6", "test", "s6", "f0f0f0f000000007"),  # 3 bits from g, other split and label
    ("i.png", "B", "p7", "train", "s7", "00ff00ff00ff00ff"),
    ("j.png", "B", "p8", "train", "s8", "00ff00ff00ff0007"),  # 5 bits from i: not near at 4
    ("k.png", "B", "", "train", "s9", "aaaaaaaaaaaaaaaa"),
    ("l.png", "A", "", "train", "s9", "aaaaaaaaaaaaaaaa"),  # identical, no patients, conflicting labels
    ("m.png", "B", "p9", "train", "", ""),  # unreadable
]


def make():
    df = pd.DataFrame(ROWS, columns=["path", "label", "patient", "split", "sha256", "phash"])
    table = DataTable(df[["path", "label", "patient", "split"]].copy(), ["A", "B"])
    sha = [hashlib.sha256(s.encode()).hexdigest() if s else "" for s in df["sha256"]]  # 's1' stands for a digest
    fp = from_hex(df[["path"]].assign(sha256=sha, phash=df["phash"].str.rjust(64, "0").where(df["phash"] != "", ""),
                                      error=np.where(df["sha256"] == "", "broken", "")))
    return table, fp


def test_phash_pairs_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    flips = rng.integers(0, 64, size=(40, 3)).astype(np.uint64)
    near = base ^ (np.uint64(1) << flips[:, 0]) ^ (np.uint64(1) << flips[:, 1])
    hashes = np.concatenate([base, near])
    a, b = _phash_pairs(hashes, 4)
    expected = {(i, j) for i in range(80) for j in range(i + 1, 80) if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= 4}
    assert set(zip(a.tolist(), b.tolist())) == expected
    assert len(expected) >= 40


def test_multi_word_hashes_add_their_bit_differences():
    hashes = hex_words(["00" * 8 + "00" * 8, "ff" * 8 + "00" * 8, "00" * 8 + "0f" + "00" * 7, "f0" * 16], words=2)
    assert hashes.shape == (4, 2) and hashes.dtype == np.uint64
    a, b = _phash_pairs(hashes, 64)
    assert set(zip(a.tolist(), b.tolist())) == {(0, 1), (0, 2), (0, 3), (1, 3)}  # d(1, 2) = d(2, 3) = 68
    a, b = _phash_pairs(hashes, 4)
    assert set(zip(a.tolist(), b.tolist())) == {(0, 2)}
    with pytest.raises(ValueError, match=r"Hashes of \[16, 32\] hex digits where 64 were expected"):
        hex_words(["00" * 8, "00" * 16])


def test_audit_finds_patients_exact_and_near_duplicates():
    table, fp = make()
    report = audit_leaks(table, fp, max_distance=4)
    assert report.patient_overlap == [{"patient": "p1", "splits": {"test": 1, "train": 1}}]
    by_paths = {tuple(g["paths"]): g for g in report.exact_groups}
    assert set(by_paths) == {("c.png", "d.png"), ("e.png", "f.png"), ("k.png", "l.png")}
    assert by_paths[("c.png", "d.png")]["cross_split"] and by_paths[("c.png", "d.png")]["cross_patient"]
    assert not by_paths[("e.png", "f.png")]["cross_split"] and not by_paths[("e.png", "f.png")]["cross_patient"]
    assert by_paths[("k.png", "l.png")]["conflicting_labels"] and by_paths[("k.png", "l.png")]["cross_patient"]
    assert [g["paths"] for g in report.near_groups] == [["g.png", "h.png"]]
    counts = report.counts()
    assert counts == {
        "patients_in_several_splits": 1, "exact_groups": 3, "exact_images": 6, "exact_cross_split": 1,
        "exact_cross_patient": 2, "exact_conflicting_labels": 1, "near_groups": 1, "near_cross_split": 1,
        "near_within_split": 0, "near_conflicting_labels": 1, "unhashed": 1,
        "images_without_patient": 2, "prefix_groups_cross_split": 0, "probable_patient_leaks": 1,
    }
    assert report.has_leaks
    assert "3 group(s) of byte-identical images (6 images): 1 across splits" in report.summary()
    json.dumps(report.to_dict())
    assert audit_leaks(table, fp, max_distance=5).counts()["near_groups"] == 2
    assert audit_leaks(table, fp, near_duplicates=False).near_groups == []


def test_policies_fail_warn_and_drop():
    table, fp = make()
    report = audit_leaks(table, fp, max_distance=4)
    with pytest.raises(LeakError, match="data.duplicates=drop"):
        apply_leak_policy(table, report, "fail")
    with pytest.raises(ConfigError, match="Did you mean 'drop'"):
        apply_leak_policy(table, report, "dorp")
    assert len(apply_leak_policy(table, report, "warn")[0]) == len(table)
    out, info = apply_leak_policy(table, report, "drop")
    dropped = {d["path"]: d["reason"] for d in info["dropped"]}
    assert dropped == {
        "b.png": "patient p1 is also in train",
        "d.png": "byte-identical to c.png in train",
        "h.png": "near-duplicate of g.png in val",
    }
    assert sorted(set(table.frame["path"]) - set(out.frame["path"])) == ["b.png", "d.png", "h.png"]
    assert {s["path"] for s in out.skipped} == set(dropped)
    assert not audit_leaks(out, fp[~fp["path"].isin(dropped)], max_distance=4).has_leaks


def test_merge_joins_duplicate_patients_so_a_split_keeps_them_together():
    table, fp = make()
    unsplit = table.with_frame(table.frame.assign(split=""))
    report = audit_leaks(unsplit, fp, max_distance=4)
    assert not report.has_leaks  # nothing crosses splits before splitting
    merged, info = apply_leak_policy(unsplit, report, "merge")
    patient = dict(zip(merged.frame["path"], merged.frame["patient"]))
    assert patient["c.png"] == patient["d.png"] == "p2"
    assert patient["g.png"] == patient["h.png"] == "p5"
    assert patient["k.png"] == patient["l.png"] == "dup:k"
    assert {m["into"] for m in info["merged"]} == {"p2", "p5", "dup:k"}
    split = split_patients(merged, 0.3, 0.3, seed=0)
    assert split.frame.groupby("patient")["split"].nunique().max() == 1


def test_a_report_of_another_table_is_refused():
    table, fp = make()
    report = audit_leaks(table, fp, max_distance=4)
    with pytest.raises(ValueError, match="another table"):
        apply_leak_policy(table.subset(np.arange(len(table)) > 0), report, "drop")
    with pytest.raises(ValueError, match="do not line up"):
        audit_leaks(table, fp.iloc[1:])


@pytest.mark.slow
def test_chest_xray_has_the_25_documented_duplicate_groups(shared_data, request):
    root = shared_data / "chest_xray"
    from medclass.data.patients import patient_from_name

    paths = sorted(root.glob("*/*.jpeg"))
    df = pd.DataFrame({"path": [str(p) for p in paths], "label": [p.parent.name for p in paths]})
    df["patient"] = [patient_from_name(p.name, "chest_xray") for p in paths]
    table = DataTable(df, ["NORMAL", "PNEUMONIA"])
    cache = request.config.cache.mkdir("medclass-fingerprints")  # warm on reruns
    report = audit_leaks(table, fingerprint(table, cache_dir=cache))
    assert report.counts()["exact_groups"] == 25
    pairs = [set(g["patients"]) for g in report.exact_groups]
    assert {"NORMAL2-IM-0095", "NORMAL2-IM-0096"} in pairs


@pytest.fixture
def pngs(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(6):
        arr = (rng.random((64, 48)) * 255).astype(np.uint8)
        arr[:, : 8 * i] = 0  # different structure per image, so perceptual hashes differ
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(arr).save(paths[-1])
    # a smooth 128 px image and its JPEG re-encoding (perceptual hashes of tiny noise are unstable)
    smooth = Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).resize((128, 128), Image.BICUBIC)
    smooth.save(tmp_path / "smooth.png")
    smooth.save(tmp_path / "smooth_q70.jpg", quality=70)
    paths += [tmp_path / "smooth.png", tmp_path / "smooth_q70.jpg"]
    df = pd.DataFrame({"path": [str(p) for p in paths], "label": "x", "split": ["train"] * 7 + ["test"]})
    return DataTable(df, ["x"])


def test_fingerprint_fields_match_the_libraries(pngs):
    fp = fingerprint(pngs, workers=1)
    first = Path(fp["path"][0])
    assert fp["sha256_0"].dtype == np.uint64 and fp["phash_3"].dtype == np.uint64  # fixed width, no hex text
    assert hex_digests(fp, "sha256")[0] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert hex_digests(fp, "phash")[0] == str(imagehash.phash(Image.open(first), hash_size=16))
    assert (fp["width"][0], fp["height"][0], fp["channels"][0], fp["mode"][0]) == (48, 64, 1, "L")
    pixels = np.asarray(Image.open(first), dtype=np.float32) / 255
    assert fp["mean"][0] == pytest.approx(pixels.mean(), abs=1e-6)
    assert fp["std"][0] == pytest.approx(pixels.std(), abs=1e-6)
    assert (fp["error"] == "").all()
    # the re-encoded JPEG is a near-duplicate across splits
    report = audit_leaks(pngs, fp)
    assert [sorted(Path(p).name for p in g["paths"]) for g in report.near_groups] == [["smooth.png", "smooth_q70.jpg"]]
    assert report.near_groups[0]["cross_split"]
    assert hex_digests(fp, "sha256")[6] != hex_digests(fp, "sha256")[7]


def test_fingerprint_in_parallel_and_from_the_cache(pngs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cold = fingerprint(pngs, workers=2, cache_dir=cache)
    pd.testing.assert_frame_equal(cold, fingerprint(pngs, workers=1))
    assert sum(len(np.load(p)["key"]) for p in cache.glob(PART_GLOB)) == len(pngs)

    def no_reading(*args):
        raise AssertionError(f"read {args} although it is cached")

    monkeypatch.setattr("medclass.data.fingerprint.fingerprint_image", no_reading)
    pd.testing.assert_frame_equal(fingerprint(pngs, workers=1, cache_dir=cache), cold)

    changed = Path(pngs.frame["path"][0])
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(changed)  # new size and mtime: read again
    monkeypatch.undo()
    warm = fingerprint(pngs, workers=1, cache_dir=cache)
    assert (warm["width"][0], warm["height"][0]) == (12, 10)
    pd.testing.assert_frame_equal(warm.iloc[1:], cold.iloc[1:])


def test_fingerprint_of_frames_hashes_pixels(shared_data):
    path = str(shared_data / "dicom" / "OBXXXX1A_2frame.dcm")
    table = DataTable(pd.DataFrame({"path": [path, path, path], "label": "x", "frame": [0, 1, 0]}), ["x"])
    fp = fingerprint(table, workers=1)
    assert (fp["error"] == "").all(), fp["error"].tolist()
    sha = hex_digests(fp, "sha256")
    assert sha[0] == sha[2] != sha[1]
    assert sha[0] != hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_an_interrupted_fingerprint_pass_resumes_from_its_cache_parts(pngs, tmp_path, monkeypatch):
    from medclass.data import fingerprint as fp_module

    cache, real, calls = tmp_path / "cache", fp_module.fingerprint_image, []

    def dies_at_the_fifth(*args):
        calls.append(args[0])
        if len(calls) == 5:
            raise KeyboardInterrupt  # the user's Ctrl-C, or a kill, in the middle of a pass
        return real(*args)

    monkeypatch.setattr(fp_module, "FLUSH_ROWS", 2)
    monkeypatch.setattr(fp_module, "fingerprint_image", dies_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        fingerprint(pngs, workers=1, cache_dir=cache)
    assert len(list(cache.glob(PART_GLOB))) == 2  # 4 kept, in two parts

    calls.clear()
    monkeypatch.setattr(fp_module, "fingerprint_image", lambda *args: calls.append(args[0]) or real(*args))
    resumed = fingerprint(pngs, workers=1, cache_dir=cache)
    assert len(calls) == len(pngs) - 4  # only the images not done before the interruption
    pd.testing.assert_frame_equal(resumed, fingerprint(pngs, workers=1))
    assert sum(len(np.load(p)["key"]) for p in cache.glob(PART_GLOB)) == len(pngs)  # the rest appended


def test_the_cache_is_fixed_width_parts_merged_when_many_and_an_old_csv_is_converted(pngs, tmp_path, monkeypatch):
    from medclass.data import _fpstore, fingerprint as fp_module

    cache = tmp_path / "cache"
    cold = fingerprint(pngs, workers=1)
    monkeypatch.setattr(fp_module, "FLUSH_ROWS", 2)
    monkeypatch.setattr(_fpstore, "COMPACT_PARTS", 3)
    pd.testing.assert_frame_equal(fingerprint(pngs, workers=1, cache_dir=cache), cold)
    (part,) = cache.glob(PART_GLOB)  # 4 parts of 2 rows written as the pass went, then merged into one
    with np.load(part, allow_pickle=False) as npz:  # numbers, no pickled Python objects
        assert npz["sha256"].dtype == np.uint64 and npz["key"].shape == (len(pngs), 2)

    # the CSV cache of earlier versions: read once (no image decoded), converted to a part, removed
    part.unlink()
    keys = [f"{Path(p).resolve()}|{os.stat(p).st_size}|{os.stat(p).st_mtime_ns}|-1|" for p in cold["path"]]
    old = cold.drop(columns=[c for c in cold if c[:-2] in ("sha256", "phash")]).assign(
        key=keys, sha256=hex_digests(cold, "sha256"), phash=hex_digests(cold, "phash"))
    old.drop(columns=["path", "frame"]).to_csv(cache / "fingerprints.csv", index=False)
    monkeypatch.setattr(fp_module, "fingerprint_image", lambda *a: pytest.fail(f"decoded {a} although cached"))
    pd.testing.assert_frame_equal(fingerprint(pngs, workers=1, cache_dir=cache), cold)
    assert not (cache / "fingerprints.csv").exists() and list(cache.glob(PART_GLOB))
