"""bspm_jax: graph-filter and diffusion collaborative filtering in JAX, and the trained models it is measured against.

Fit a model on interactions and recommend::

    from bspm_jax import BSPM, load_sample, recommend
    data = load_sample()                      # or from_frame(df), read_interactions("plays.parquet").split("time")
    model = BSPM(rank=256).fit(data)          # fitted on the train split
    recs = recommend(model, data, users=[0, 1, 2], k=20)   # recs.to_pandas(): user, rank, item, score
    items, scores = recs.items, recs.scores
    model.save("bspm-sample", data=data)      # and later: load_model("bspm-sample"), load_history("bspm-sample")

What a user calls is here; the building blocks stay in their packages: :mod:`bspm_jax.filtering`
(operators, ODE solvers, filters), :mod:`bspm_jax.spectral` (normalisation, truncated SVD),
:mod:`bspm_jax.ranking`, :mod:`bspm_jax.training`, :mod:`bspm_jax.evaluation`, :mod:`bspm_jax.tuning`,
:mod:`bspm_jax.figures`.
"""

from ._version import __version__
from .config import get_preset, load_config, preset_names, presets
from .data import (Dataset, Interactions, carve_validation, from_frame, holdout_split, load_dataset, load_lightgcn,
                   load_pairs, load_sample, read_interactions)
from .errors import BSPMError, ConfigError, DataError, ResourceError, TrainingError
from .evaluation import Evaluation, evaluate
from .compare.comparison import comparison
from .experiment import run_experiment
from .models import (BSPM, GMF, LGCNIDE, MFBPR, MLP, MODELS, AbstractRecommender, ChebyCF, Ensemble, GiffCF, LightGCN,
                     MultDAE, MultVAE, NeuMF, Popularity, SDiff, TurboCF, load_model, make_model)
from .ranking import recommend, recommend_for
from .serial import ModelFileError, load_history
from .training import TrainResult, TrainSettings, train
from .tuning import tune

__all__ = [
    # models
    "BSPM", "ChebyCF", "TurboCF", "Ensemble", "LGCNIDE", "GiffCF", "SDiff", "LightGCN", "MultVAE", "MultDAE",
    "NeuMF", "GMF", "MLP", "MFBPR", "Popularity", "AbstractRecommender", "MODELS", "make_model", "load_model",
    "load_history",
    # data
    "Interactions", "from_frame", "read_interactions", "Dataset", "load_dataset", "load_lightgcn", "load_pairs", "load_sample", "holdout_split", "carve_validation",
    # recommend, evaluate, train, tune, run
    "recommend", "recommend_for", "evaluate", "Evaluation", "train", "TrainSettings", "TrainResult", "tune",
    "run_experiment", "comparison",
    # configs and presets
    "get_preset", "load_config", "preset_names", "presets",
    # errors
    "BSPMError", "ConfigError", "DataError", "ResourceError", "TrainingError", "ModelFileError",
    "__version__",
]
