"""bspm_jax: graph-filter and diffusion collaborative filtering in JAX, and the trained models it is measured against.

Fit a model on a binary user-item matrix and score user rows::

    from bspm_jax import BSPM, load_sample
    data = load_sample()
    model = BSPM(rank=256).fit(data.train)
    items, scores = recommend(model, data.train, users=[0, 1, 2], k=20)
    model.save("bspm-sample")                 # and later: load_model("bspm-sample")
"""

from .data import Dataset, holdout_split, load_dataset, load_lightgcn, load_pairs, load_sample
from .errors import BSPMError, ConfigError, DataError, ResourceError
from .evaluation import Evaluation, evaluate
from .experiment import run_experiment
from .filters import AbstractFilter, HeatBlur, IdealBlur, MixedBlur, Sharpen
from .graph import ItemGraph, build_graph
from .models import (BSPM, GMF, ChebyCF, GiffCF, Ensemble, AbstractSpectralFilter, LGCNIDE, MFBPR, MLP, LightGCN, MODELS, MultDAE, MultVAE, NeuMF, AbstractBPR, AbstractPairwise,
                     AbstractRecommender, AbstractTrainedRecommender, AbstractTrainingFree, FitCache, Popularity, SDiff,
                     TrainInfo, TurboCF, load_model, make_model)
from .ranking import Ranking, rank_rows, recommend, recommend_for
from .serial import ModelFileError
from .spectral import Spectrum, SpectrumCache, normalize, spectrum, truncated_svd
from .training import TrainResult, TrainSettings, train
from .operators import AbstractOperator, Dense, Gram, Identity, LowRank, SparseMatrix
from .config import Config, get_preset, load_config, preset_names
from .solvers import RK4, AbstractIntegrator, ClassicRK4, Dopri5, Euler, make_integrator

__version__ = "0.1.0"

__all__ = [
    "SDiff",
    "GiffCF",
    "BSPM",
    "ChebyCF",
    "Ensemble",
    "TurboCF",
    "AbstractSpectralFilter",
    "GMF",
    "LGCNIDE",
    "LightGCN",
    "MFBPR",
    "MLP",
    "MODELS",
    "MultDAE",
    "MultVAE",
    "NeuMF",
    "RK4",
    "AbstractFilter",
    "AbstractIntegrator",
    "AbstractOperator",
    "AbstractBPR",
    "AbstractPairwise",
    "AbstractRecommender",
    "AbstractTrainedRecommender",
    "AbstractTrainingFree",
    "BSPMError",
    "Config",
    "ClassicRK4",
    "ConfigError",
    "DataError",
    "Dataset",
    "Dense",
    "Dopri5",
    "Euler",
    "FitCache",
    "Evaluation",
    "Gram",
    "HeatBlur",
    "IdealBlur",
    "Identity",
    "ItemGraph",
    "LowRank",
    "MixedBlur",
    "ModelFileError",
    "Popularity",
    "Ranking",
    "ResourceError",
    "Sharpen",
    "SparseMatrix",
    "Spectrum",
    "SpectrumCache",
    "TrainInfo",
    "TrainResult",
    "TrainSettings",
    "build_graph",
    "evaluate",
    "get_preset",
    "holdout_split",
    "load_config",
    "load_dataset",
    "load_lightgcn",
    "load_model",
    "load_pairs",
    "load_sample",
    "make_integrator",
    "make_model",
    "normalize",
    "preset_names",
    "rank_rows",
    "recommend",
    "recommend_for",
    "run_experiment",
    "spectrum",
    "train",
    "truncated_svd",
]
