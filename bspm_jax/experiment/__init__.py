"""Orchestration: a configuration taken apart once (:mod:`.settings`), and what it drives: runs (:mod:`.run`),
tuning (:mod:`.tune`) and the papers' figures (:mod:`.plot`)."""

from .plot import FIGURES, Plotted, plot_config, response_config
from .run import fit_config, recommend_config, run_config, run_experiment
from .settings import RunSettings, dataset_from_config, model_from_config, saved_config, train_settings
from .tune import TuneRun, tune_config, tune_plan

__all__ = ["FIGURES", "Plotted", "RunSettings", "TuneRun", "dataset_from_config", "fit_config", "model_from_config",
           "plot_config", "recommend_config", "response_config", "run_config", "run_experiment", "saved_config",
           "train_settings", "tune_config", "tune_plan"]
