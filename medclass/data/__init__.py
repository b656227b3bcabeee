"""Data layer: sources -> table -> patients/splits -> leak audit -> quality -> streamed Dataset.

>>> from medclass.data import load_source, prepare_data                 # doctest: +SKIP
>>> table = prepare_data(DataConfig(path="../shared/data/chest_xray"))   # doctest: +SKIP
"""
from .audit import LeakReport, apply_leak_policy, audit_leaks
from .catalog import dataset_path, list_datasets
from .check import check_data
from .dicom import WINDOW_PRESETS, parse_window, read_dicom
from .io import image_info, read_image
from .patients import patient_from_name
from .prepare import prepare_data
from .presets import DATA_PRESETS, get_preset, patient_rule_summary, sublabel_from_name
from .quality import QualityThresholds, filter_quality, quality_report
from .sources import detect_source, from_csv, from_dicom, from_folders, from_npz, load_source
from .splits import assign_folds, fold_tables, split_patients, split_summary
from .table import DataTable

__all__ = [
    "DATA_PRESETS", "WINDOW_PRESETS", "DataTable", "LeakReport", "QualityThresholds", "apply_leak_policy", "assign_folds",
    "audit_leaks", "check_data", "dataset_path", "detect_source", "filter_quality", "fold_tables", "from_csv",
    "from_dicom", "from_folders", "from_npz", "get_preset", "image_info", "list_datasets", "load_source", "parse_window",
    "patient_from_name", "patient_rule_summary", "prepare_data", "quality_report", "read_dicom", "read_image",
    "split_patients", "split_summary", "sublabel_from_name",
]
