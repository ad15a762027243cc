"""The spectral side of the interaction graph: normalisation and truncated decompositions.

``normalize`` gives ``R~ = U^-1/2 R V^-1/2``; ``truncated_svd`` its top singular triplets
(dense, block Krylov with float32 device products, PROPACK or ARPACK: ``svd_solver``);
``spectrum`` bundles both into a :class:`Spectrum`, cached by the train matrix's content
in a :class:`SpectrumCache` so that models and grid points share one decomposition.
"""

from .normalize import degree_power, degrees, inv_sqrt, item_degrees, normalize
from .spectrum import Spectrum, SpectrumCache, spectrum
from .block_krylov import BlockKrylovInfo, block_krylov_svd, residuals
from .gram import DeviceProducts, ScipyProducts
from .store import SpectrumStore, default_spectrum_dir
from .svd import (DEFAULT_TOL, DENSE_SVD_LIMIT, SOLVERS, SvdAttempt, check_rank, check_svd_settings, svd_attempts,
                  truncated_svd)

__all__ = [
    "DEFAULT_TOL",
    "DENSE_SVD_LIMIT",
    "SOLVERS",
    "BlockKrylovInfo",
    "DeviceProducts",
    "ScipyProducts",
    "block_krylov_svd",
    "check_svd_settings",
    "residuals",
    "Spectrum",
    "SpectrumCache",
    "SpectrumStore",
    "default_spectrum_dir",
    "SvdAttempt",
    "check_rank",
    "degree_power",
    "degrees",
    "inv_sqrt",
    "item_degrees",
    "normalize",
    "spectrum",
    "svd_attempts",
    "truncated_svd",
]
