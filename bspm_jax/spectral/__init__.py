"""The spectral side of the interaction graph: normalisation and truncated decompositions.

``normalize`` gives ``R~ = U^-1/2 R V^-1/2``; ``truncated_svd`` its top singular triplets;
``spectrum`` bundles both into a :class:`Spectrum`, cached by the train matrix's content
in a :class:`SpectrumCache` so that models and grid points share one decomposition.
"""

from .normalize import degrees, inv_sqrt, item_degrees, normalize
from .spectrum import Spectrum, SpectrumCache, spectrum
from .svd import DENSE_SVD_LIMIT, SvdAttempt, check_rank, svd_attempts, truncated_svd

__all__ = [
    "DENSE_SVD_LIMIT",
    "Spectrum",
    "SpectrumCache",
    "SvdAttempt",
    "check_rank",
    "degrees",
    "inv_sqrt",
    "item_degrees",
    "normalize",
    "spectrum",
    "svd_attempts",
    "truncated_svd",
]
