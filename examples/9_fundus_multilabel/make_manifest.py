"""Recipe 9: the per-eye manifest of ODIR-5K with the patient's eight flags (N D G C A H M O) on each eye.

ODIR's `full_df.csv` names the eyes `<ID>_left.jpg` while the files are `<ID>_<eye>_<age>_<sex>_<flag>.jpg`,
so this writes `workspace/recipes/fundus_eyes_multilabel.csv` (one row per eye photograph) once; medclass
then reads it with flags only (`--label-columns N,D,G,C,A,H,M,O --patient-column ID`).

    python examples/9_fundus_multilabel/make_manifest.py
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

ODIR = Path("../shared/data/fundus_odir")
OUT = Path("workspace/recipes/fundus_eyes_multilabel.csv")
FLAGS = list("NDGCAHMO")  # normal, diabetes, glaucoma, cataract, AMD, hypertension, myopia, other


def main(odir: Path = ODIR, out: Path = OUT) -> Path:
    """Write the manifest ``out`` from the ODIR folder ``odir``; return its path."""
    patients = pd.read_csv(odir / "full_df.csv").drop_duplicates("ID")  # the table repeats some patients
    files: dict[str, str] = {}  # "<ID>_<eye>" -> image file
    for f in sorted((odir / "images").glob("*.jpg")):
        files.setdefault("_".join(f.name.split("_")[:2]), f.name)  # 176 eyes are stored twice: keep one
    eyes = [pd.DataFrame({"path": (patients["ID"].astype(str) + f"_{eye}").map(files), "ID": patients["ID"],
                          "eye": eye, "age": patients["Patient Age"], "sex": patients["Patient Sex"],
                          "keywords": patients[f"{eye.capitalize()}-Diagnostic Keywords"],
                          **{flag: patients[flag] for flag in FLAGS}})
            for eye in ("left", "right")]
    manifest = pd.concat(eyes).dropna(subset=["path"])  # eyes without an image file are left out
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(out, index=False)
    print(f"{out}: {len(manifest)} eyes of {manifest['ID'].nunique()} patients")
    return out


if __name__ == "__main__":
    main()
