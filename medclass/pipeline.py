"""The main job, end to end: data check -> patient-level split -> short training -> held-out evaluation.

This is what the README's first command runs on the embedded default data
(``../shared/data/chest_xray``). It is a small composition of the public API, so it doubles as
an example of it.

Example:
    >>> from medclass.pipeline import quickstart
    >>> out = quickstart(epochs=2, image_size=64)   # doctest: +SKIP
    >>> out["report"]                                # doctest: +SKIP
    PosixPath('workspace/quickstart/resnet18-64px/evaluation/report.html')
"""
from __future__ import annotations

import logging
from pathlib import Path

from .config import DEFAULT_DATA, RunConfig, apply_overrides

log = logging.getLogger(__name__)


def quickstart(data: str = DEFAULT_DATA, *, workspace: str = "workspace", model: str = "resnet18",
               image_size: int = 64, epochs: int = 3, in_chans: int = 1, overrides: list[str] | None = None,
               progress: bool = True) -> dict:
    """Check ``data``, train ``model`` on a leak-free patient split, evaluate on the held-out test split.

    Returns the paths of what was written (data check, run folder, metrics, report) and the
    headline test metrics. The default data is read with its preset (``data.preset=kermany_chest_xray``:
    patients from its file names); other data gets no preset unless ``overrides`` name one.
    """
    from .data.check import check_data
    from .evaluation.evaluate import evaluate
    from .training import train

    preset = "kermany_chest_xray" if data == DEFAULT_DATA else ""
    cfg = apply_overrides(RunConfig(), [
        f"data.path={data}", f"data.preset={preset}", f"workspace={workspace}", "project=quickstart", f"experiment={model}-{image_size}px",
        f"model.name={model}", f"model.image_size={image_size}", f"model.in_chans={in_chans}",
        f"train.epochs={epochs}", "train.augment=xray", "train.class_weights=balanced", "train.monitor=val_auc",
        *(overrides or []),
    ])
    run_dir = cfg.run_dir()
    check_dir = run_dir / "data_check"
    check = check_data(cfg.data, out=check_dir, cache_dir=Path(workspace) / ".cache")
    result = train(resume=run_dir, progress=progress) if (run_dir / "checkpoints" / "last.ckpt").is_file() \
        else train(cfg, progress=progress)
    evaluation = evaluate(result.run_dir, split="test")
    return {"data_check": check_dir / "data_check.json", "run_dir": result.run_dir, "baseline": result.baseline,
            "evaluation": evaluation, "report": evaluation.files.get("report"), "check": check,
            "wall_time_s": result.wall_time_s}
