"""Evaluation: pure metric, bootstrap, threshold, calibration and statistical-test functions over numpy arrays."""
