"""Build the labelled DICOM input of recipe 5 from real chest X-rays (run from the repo root).

Picks whole patients from ../shared/data/chest_xray (patients with several images first, so that the
per-patient analysis has something to aggregate), up to --per-class images per class, and writes each
image as workspace/recipes/dicom_xray/<CLASS>/<file>.dcm through medclass.data.to_dicom.images_to_dicom:
8-bit MONOCHROME2 pixels of the real radiograph, PatientID = the patient id from the file name.

    .venv/bin/python examples/5_dicom_per_patient/make_dicom.py --per-class 300
"""
from __future__ import annotations

import argparse

import numpy as np

from medclass.data.sources import from_folders
from medclass.data.to_dicom import images_to_dicom


def choose_patients(frame, per_class: int, seed: int = 0) -> np.ndarray:
    """Row mask: whole patients of each class, multi-image patients first, until per_class images."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(frame), dtype=bool)
    for _, rows in frame.groupby("label"):
        sizes = rows.groupby("patient").size()
        # shuffle, then stable-sort by 'has several images' so both kinds are drawn at random
        order = sizes.sample(frac=1.0, random_state=int(rng.integers(1 << 31)))
        order = order.sort_values(key=lambda s: s > 1, ascending=False, kind="stable")
        total = 0
        for patient, n in order.items():
            if total >= per_class:
                break
            keep |= (frame["patient"] == patient).to_numpy() & (frame["label"] == rows["label"].iloc[0]).to_numpy()
            total += n
    return keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="../shared/data/chest_xray")
    ap.add_argument("--out", default="workspace/recipes/dicom_xray")
    ap.add_argument("--per-class", type=int, default=300)
    args = ap.parse_args()
    table = from_folders(args.source, "chest_xray")  # the Kermany file-name patient rule
    subset = table.subset(choose_patients(table.frame, args.per_class))
    dicoms = images_to_dicom(subset, args.out)
    counts = dicoms.frame.groupby("label").agg(images=("path", "size"), patients=("patient", "nunique"))
    print(counts.to_string())
    print(f"wrote {len(dicoms)} DICOM files to {args.out}")


if __name__ == "__main__":
    main()
