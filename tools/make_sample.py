"""Build the embedded sample data set (``medclass/sample_data/chest_xray``) from the full chest X-ray set.

The sample is what ``medclass quickstart`` runs on when no ``--data`` is given: real paediatric
chest X-rays (Kermany et al. 2018, CC BY 4.0), whole patients only, original file names kept so
the chest X-ray patient rule still finds every patient, downscaled to small grayscale JPEGs.

The choice of patients is medclass's own ``limit_per_class`` (whole patients, seeded), so the
same seed and the same source give the same files:

    python tools/make_sample.py                      # ../shared/data/chest_xray -> medclass/sample_data/chest_xray
    python tools/make_sample.py --per-class 300 --size 96 --seed 0

The output folder is replaced; the attribution (``medclass/sample_data/README.md`` and ``LICENSE``)
lives beside it and is written by hand.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from medclass.data.sources import from_folders, limit_per_class

ROOT = Path(__file__).resolve().parents[1]


def build(source: Path, out: Path, per_class: int, size: int, seed: int, quality: int) -> dict[str, int]:
    """Write ``per_class`` images per class (whole patients) from ``source`` to ``out``; return the counts."""
    table = limit_per_class(from_folders(source), per_class, seed)
    if out.exists():
        shutil.rmtree(out)
    counts: dict[str, int] = {}
    for path, label in sorted(zip(table.frame["path"], table.frame["label"])):
        target = out / label / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            im.convert("L").resize((size, size), Image.Resampling.LANCZOS).save(target, "JPEG", quality=quality)
        counts[label] = counts.get(label, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "chest_xray")
    parser.add_argument("--out", type=Path, default=ROOT / "medclass" / "sample_data" / "chest_xray")
    parser.add_argument("--per-class", type=int, default=300, help="at most this many images per class (whole patients)")
    parser.add_argument("--size", type=int, default=96, help="square side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    args = parser.parse_args()
    counts = build(args.source, args.out, args.per_class, args.size, args.seed, args.quality)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{sum(counts.values())} images {counts} at {args.size} px in {args.out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
