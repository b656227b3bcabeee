"""Evaluation workflow of a trained run: load the checkpoint, predict a split, explain, write the files.

:func:`~medclass.evaluation.evaluate.evaluate` writes ``metrics.json``, ``predictions.csv``,
``patients.csv`` and ``report.html`` (:mod:`.report`) into the run's evaluation folder. The pure
array functions it builds on (metrics, bootstrap CIs, thresholds, calibration, paired tests,
per-patient views, curves and plots) live in :mod:`medclass.metrics`, which imports no model code.

Example:
    >>> from medclass.evaluation.evaluate import evaluate
    >>> result = evaluate("workspace/default/resnet18", split="test")  # doctest: +SKIP
    >>> result.metrics["roc_auc"]                                       # doctest: +SKIP
    0.97
"""
