"""Data layer: sources -> table -> patients/splits -> leak audit -> quality -> streamed Dataset."""
from .table import DataTable

__all__ = ["DataTable"]
