"""Settings chosen on validation: a grid search (:mod:`.grid`) and gradient tuning of ChebyCF's filter (:mod:`.gradient`)."""

from .grid import TuneResult, grid_points, tune, validation_record, validation_split, write_tune_results

__all__ = ["TuneResult", "grid_points", "tune", "validation_record", "validation_split", "write_tune_results"]
