"""What does the out-of-distribution score cost? Time per image with and without it, on CPU.

Loads a checkpoint with OOD statistics (``--run``: a run folder or ``best.safetensors``, e.g. the main job's
model from ``medclass quickstart``) into a :class:`~medclass.serving.Predictor` and times, on ``--images``
chest X-rays of the packaged sample already preprocessed into model input (reading and decoding are left out):

- ``probabilities``: the prediction alone (one forward pass);
- ``probabilities + OOD``: :meth:`Predictor.probabilities_with_ood`, what ``predict``, ``evaluate``, the REST
  API and the web app run: the input and its band-limited copy as one batch (``forward_with_features``);
- ``two calls (before)``: the same outputs from two forward calls, the input, then its band-limited copy
  (how ``forward_with_features`` worked before; public functions only, so both run on one machine);
- ``web app analysis`` (batch 1 only): :func:`medclass.serving.webapp.analysis`, decision, OOD score and
  Grad-CAM of one image, with the number of model forward calls it makes (counted by a hook).

at batch sizes 1 (an API call / the web app) and 32 (``predict`` over a folder). Each cell is the median of
``--repeats`` timed rounds over all images, in ms per image. Prints a Markdown table and writes ``cost.json``::

    python bench/bench_ood_cost.py --run /tmp/ws/quickstart/chest_xray_sample-efficientnet_lite0-128px --out /tmp/cost
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "medclass" / "sample_data" / "chest_xray"


def two_calls(predictor, batch: np.ndarray) -> np.ndarray:
    """Probabilities and OOD scores from two forward calls (the input, then its band-limited copy)."""
    from medclass.inference import band_limited, forward_with_features, to_probs

    x = torch.from_numpy(batch)
    with torch.inference_mode():
        logits, _, _ = forward_with_features(predictor.model, x)
        _, _, stages = forward_with_features(predictor.model, band_limited(x, predictor.ood.lowpass))
    probs = to_probs(logits, predictor.temperature, predictor.multi_label).numpy()
    return np.column_stack([probs, predictor.ood.scores(stages.numpy())])


def per_image_ms(fn, batches: list[np.ndarray], repeats: int) -> float:
    """Median over ``repeats`` rounds of the time per image (ms) of ``fn`` over every batch (one warm-up round first)."""
    n = sum(len(b) for b in batches)
    for b in batches:
        fn(b)
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            fn(b)
        rounds.append((time.perf_counter() - start) / n * 1000)
    return statistics.median(rounds)


def count_forwards(model: torch.nn.Module, fn) -> int:
    """How many times ``model`` itself is called while ``fn()`` runs."""
    calls = [0]
    handle = model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        fn()
    finally:
        handle.remove()
    return calls[0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="A run folder or checkpoint with OOD statistics.")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument("--out", type=Path, default=Path("bench_ood_cost"))
    args = parser.parse_args(argv)
    from medclass.serving.predictor import Predictor
    from medclass.serving.webapp import analysis

    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.run)
    if predictor.ood is None:
        raise SystemExit(f"{args.run} has no OOD statistics; fit them with `medclass ood-fit RUN`.")
    files = sorted(SAMPLE.rglob("*.jpeg"))[:: max(1, len(list(SAMPLE.rglob("*.jpeg"))) // args.images)][:args.images]
    units = [predictor.load(f) for f in files]
    inputs = predictor.preprocess(units)
    rows = []
    for size in (1, 32):
        batches = [inputs[i:i + size] for i in range(0, len(inputs), size)]
        row = {"batch": size,
               "probabilities_ms": per_image_ms(predictor.probabilities, batches, args.repeats),
               "with_ood_ms": per_image_ms(predictor.probabilities_with_ood, batches, args.repeats),
               "two_calls_ms": per_image_ms(lambda b: two_calls(predictor, b), batches, args.repeats)}
        if size == 1:
            row["webapp_ms"] = per_image_ms(lambda b: analysis(predictor, units[0]), batches[:8], args.repeats)
            row["webapp_forward_calls"] = count_forwards(predictor.model, lambda: analysis(predictor, units[0]))
        rows.append(row)
    same = np.allclose(predictor.probabilities_with_ood(inputs[:8]), two_calls(predictor, inputs[:8]), rtol=1e-4,
                       atol=1e-4)
    result = {"run": str(args.run), "model": predictor.meta.model.name,
              "image_size": predictor.meta.preprocessing.image_size, "threads": torch.get_num_threads(),
              "images": len(inputs), "one_batch_equals_two_calls": bool(same), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost.json").write_text(json.dumps(result, indent=2))
    lines = ["| batch | probabilities only | + OOD, one batched call | + OOD, two calls (before) | web app analysis "
             "(forward calls) |", "|---|---|---|---|---|"]
    for r in rows:
        web = f"{r['webapp_ms']:.1f} ms ({r['webapp_forward_calls']})" if "webapp_ms" in r else "-"
        lines.append(f"| {r['batch']} | {r['probabilities_ms']:.1f} ms | {r['with_ood_ms']:.1f} ms | "
                     f"{r['two_calls_ms']:.1f} ms | {web} |")
    print("\n".join(lines))
    print(f"{result['model']} at {result['image_size']} px, {result['images']} images, {result['threads']} threads, "
          f"ms per image (median of {args.repeats}); one batched call gives the two calls' outputs: {same}")
    return result


if __name__ == "__main__":
    main()
