"""One builder of the test_lock.py race: fingerprints a table into a shared fingerprint cache, then builds its
image cache in a shared folder, in this process, and prints what it decoded and a digest of each result.

    python tests/_lock_builder.py TABLE.csv FOLDER [GATE]

With GATE, its first decode writes GATE.started and waits until the file GATE exists: the test then knows this
builder holds the fingerprint lock, starts the second builder, waits until that one says it waits, and opens the
gate (events, not times).
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medclass.data import cache as cache_mod
from medclass.data import fingerprint as fp_mod
from medclass.data.table import DataTable


def main(csv: str, folder: str, gate: str = "") -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    decoded = {"fingerprints": 0, "cache": 0}

    def counted(real, what):
        def run(*args):
            decoded[what] += 1
            if gate and not Path(gate).exists():
                Path(f"{gate}.started").touch()
                while not Path(gate).exists():
                    time.sleep(0.05)
            return real(*args)
        return run

    fp_mod.fingerprint_image = counted(fp_mod.fingerprint_image, "fingerprints")
    cache_mod._encode = counted(cache_mod._encode, "cache")
    table = DataTable(pd.read_csv(csv, keep_default_na=False), ["x", "y"])
    fp = fp_mod.fingerprint(table, workers=1, cache_dir=Path(folder) / "fp")
    images = cache_mod.build_cache(table, 16, 1, folder=Path(folder) / "images", workers=1)
    print(json.dumps({"decoded": decoded,
                      "fingerprints": hashlib.sha256(pd.util.hash_pandas_object(fp).to_numpy().tobytes()).hexdigest(),
                      "cache": hashlib.sha256(np.asarray(images.images).tobytes()).hexdigest()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
