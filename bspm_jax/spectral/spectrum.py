"""The spectrum of the normalised interaction graph, computed once per (train content, rank)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data.sparse import matrix_digest
from .decomposition import Spectrum
from .normalize import normalize
from .store import SpectrumStore
from .svd import DEFAULT_TOL, truncated_svd


class SpectrumCache:
    """Spectra and normalised matrices keyed by the content digest of the train matrix (and the SVD's settings).

    Pass one cache to several fits (grid points, figures, models of one run) so that each
    (matrix, rank, solver, tolerance) is decomposed once; equal content shares, whatever
    object holds it. With a ``store`` (:class:`bspm_jax.spectral.store.SpectrumStore`) the
    spectra are also read from and written to disk, across processes.
    """

    def __init__(self, store: SpectrumStore | None = None) -> None:
        self.store = store
        self._normalized: dict[str, tuple[sp.csr_matrix, np.ndarray, np.ndarray]] = {}
        self._spectra: dict[tuple[str, int, str, float], Spectrum] = {}

    def normalized(self, train: sp.spmatrix) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        """:func:`normalize` of ``train``, computed once per content."""
        key = matrix_digest(train)
        if key not in self._normalized:
            self._normalized[key] = normalize(train)
        return self._normalized[key]

    def spectrum(self, train: sp.spmatrix, rank: int, solver: str = "auto", tol: float = DEFAULT_TOL) -> Spectrum:
        """The rank-``rank`` :class:`Spectrum` of ``train``, computed once per (content, rank, solver, tolerance)."""
        key = (matrix_digest(train), int(rank), solver, float(tol))
        if key not in self._spectra:
            stored = None if self.store is None else self.store.key(key[0], rank, solver, tol)
            found = None if stored is None else self.store.load(stored)
            if found is None:
                norm, user_degree, item_degree = self.normalized(train)
                s, vt = truncated_svd(norm, rank, solver=solver, tol=tol)
                found = Spectrum(s, vt, user_degree, item_degree)
                if stored is not None:
                    self.store.save(stored, found)
            self._spectra[key] = found
        return self._spectra[key]

    def __len__(self) -> int:
        return len(self._spectra)


def spectrum(train: sp.spmatrix, rank: int, cache: SpectrumCache | None = None, solver: str = "auto",
             tol: float = DEFAULT_TOL) -> Spectrum:
    """The top-``rank`` :class:`Spectrum` of ``R~`` for the binary matrix ``train`` (via ``cache`` when given)."""
    return (SpectrumCache() if cache is None else cache).spectrum(train, rank, solver, tol)
