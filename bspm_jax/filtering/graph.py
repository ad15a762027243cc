"""BSPM's item side as operators: the Gram filter ``P~`` and the ideal low-pass from the spectrum."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Float

from ..runtime.memory import require_bytes
from ..spectral import DEFAULT_TOL, SpectrumCache, inv_sqrt
from .operators import AbstractLayout, AbstractOperator, Dense, Gram, LowRank, SparseMatrix, kernel_for, layout_for


class ItemGraph(eqx.Module):
    """The fitted item side of BSPM: ``P~ = R~^T R~`` and the ideal low-pass filter.

    ``ideal`` is ``V^-1/2 Vbar Vbar^T V^1/2`` kept as its two low-rank factors;
    ``item_scale`` is ``V^-1/2`` (0 for items without interactions).
    """

    gram: AbstractOperator
    ideal: LowRank | None
    item_scale: Float[Array, " n_items"]
    singular_values: Float[Array, " rank"] | None

    def layout(self, batch: int) -> AbstractLayout:
        """Storage of a batch while the filters run: column chunks when the native kernel is used."""
        return layout_for(isinstance(self.gram, Gram) and self.gram.factor.native, batch)


def intermediate_length(graph: ItemGraph | None) -> int:
    """Length of the intermediate row of the fitted item-item filter (0 before fitting, or dense)."""
    return 0 if graph is None else graph.gram.intermediate_length()


def build_graph(
    train: sp.spmatrix,
    rank: int | None,
    dense: bool = False,
    dtype: type = np.float32,
    kernel: str = "auto",
    spectra: SpectrumCache | None = None,
    svd_solver: str = "auto",
    svd_tol: float = DEFAULT_TOL,
) -> ItemGraph:
    """Normalise ``train``, take its rank-``rank`` SVD (None: no ideal filter), build operators.

    ``dense=True`` materialises ``P~`` as an (n_items, n_items) array (opt-in, small
    catalogues): it refuses with the memory it would need when that does not fit.
    ``kernel`` picks the products: a path of the compiled CPU kernel (``"avx512"``,
    ``"avx2"``, ``"baseline"``), pure JAX (``"jax"``), or ``"auto"``: ``$BSPM_KERNEL``, else
    the fastest available path; see :mod:`bspm_jax.runtime.native`. ``spectra`` shares the
    normalisation and the SVD with other fits on the same matrix; ``svd_solver`` and
    ``svd_tol`` choose the SVD (:func:`bspm_jax.spectral.truncated_svd`).
    """
    spectra = SpectrumCache() if spectra is None else spectra
    norm, _, item_degree = spectra.normalized(train)
    n_items = norm.shape[1]
    if dense:
        require_bytes(
            n_items * n_items * np.dtype(dtype).itemsize * 2,
            f"a dense item-item filter for {n_items:,} items",
            "use the default matrix-free operator (dense=False)",
        )
        gram: AbstractOperator = Dense(jnp.asarray((norm.T @ norm).toarray().astype(dtype)))
    else:
        gram = Gram(SparseMatrix.from_scipy(norm, dtype, kernel=kernel))
    ideal, s = None, None
    if rank is not None:
        spec = spectra.spectrum(train, rank, svd_solver, svd_tol)
        s, vt = spec.values, spec.vectors
        left = inv_sqrt(item_degree)[:, None] * vt.T
        right = vt * np.sqrt(item_degree)[None, :]
        ideal = LowRank(jnp.asarray(left.astype(dtype)), jnp.asarray(right.astype(dtype)), kernel_for(dtype, kernel))
        s = jnp.asarray(s.astype(dtype))
    return ItemGraph(gram, ideal, jnp.asarray(inv_sqrt(item_degree).astype(dtype)), s)
