"""The issue 12 hang scenario, run as a script by tests/test_pool.py: efficientnet_lite0 + local ImageNet weights
+ data.cache + DataLoader workers (hung forever at 0 % CPU before the fix). Usage: python _lite0_cache_run.py DIR"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from medclass.config import RunConfig, apply_overrides
from medclass.models import model_info, packaged_weights
from medclass.training import train

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
for label in ("a", "b"):
    (root / "data" / label).mkdir(parents=True)
    for i in range(12):  # 400 x 420: large enough for torch to run its ops in parallel inside the cache workers
        Image.fromarray((rng.random((400, 420)) * 255).astype(np.uint8)).save(root / "data" / label / f"p{label}{i}_0.png")
weights = packaged_weights(model_info("efficientnet_lite0").local_weights)
cfg = apply_overrides(RunConfig(), [
    f"data.path={root / 'data'}", "data.split_by=image", "data.near_duplicates=false", "data.quality_filter=false", f"data.cache={root / 'cache'}",
    "model.name=efficientnet_lite0", f"model.weights={weights}", "model.in_chans=1", "model.image_size=32",
    "train.epochs=1", "train.batch_size=8", "train.num_workers=2", f"workspace={root / 'ws'}", "train.baseline=false"])
train(cfg, progress=False)
print("TRAINED", flush=True)
