"""Pure metrics over numpy arrays (``y_true`` class indices, ``probs`` (n, n_classes)): no model code.

Metrics (:mod:`.metrics`), patient-level bootstrap CIs (:mod:`.bootstrap`), decision thresholds
(:mod:`.threshold`), calibration (:mod:`.calibration`), paired AUC tests (:mod:`.stats`),
per-patient views (:mod:`.patients`), ROC/PR curves (:mod:`.curves`) and figures (:mod:`.plots`).
This package imports no model, torch, Lightning or data code; training, the evaluation workflow
(:mod:`medclass.evaluation`) and the experiments build on it.

Example:
    >>> from medclass.metrics import compute_metrics, bootstrap_metrics
    >>> m = compute_metrics([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.3], threshold=0.5)
    >>> m["accuracy"], m["roc_auc"]
    (0.75, 1.0)
"""
from .bootstrap import BootstrapCI, bootstrap_ci, bootstrap_metrics, percentile_interval, resample_weights
from .calibration import apply_temperature, fit_temperature, reliability_curve, temperature_nll
from .metrics import (
    UndefinedMetricWarning, accuracy, as_prob_matrix, balanced_accuracy, best_mode, brier_score, calibration_bins,
    check_inputs, classification_report_dict, compute_metrics, confusion_matrix, expected_calibration_error,
    f1_score, metric_names, npv, per_class_accuracy, ppv, pr_auc, precision, predict_labels, recall, roc_auc,
    scalar_metric, sensitivity, sensitivity_at_specificity, specificity,
)
from .patients import aggregate_by_patient, natural_key, patient_errors
from .stats import delong_test, describe_difference, paired_bootstrap_auc
from .threshold import ThresholdChoice, choose_threshold, parse_rule

__all__ = [
    "BootstrapCI", "ThresholdChoice", "UndefinedMetricWarning",
    "accuracy", "aggregate_by_patient", "apply_temperature", "as_prob_matrix", "balanced_accuracy",
    "best_mode", "bootstrap_ci", "bootstrap_metrics", "brier_score", "calibration_bins", "check_inputs", "choose_threshold",
    "classification_report_dict", "compute_metrics", "confusion_matrix", "delong_test", "describe_difference",
    "expected_calibration_error", "f1_score", "fit_temperature", "metric_names", "natural_key", "npv",
    "paired_bootstrap_auc", "parse_rule", "patient_errors", "per_class_accuracy", "percentile_interval", "ppv",
    "pr_auc", "precision", "predict_labels", "recall", "reliability_curve", "resample_weights", "roc_auc",
    "scalar_metric", "sensitivity", "sensitivity_at_specificity", "specificity", "temperature_nll",
]
