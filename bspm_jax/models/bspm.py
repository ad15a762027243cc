"""BSPM: blur the interactions with graph-filter ODEs, then sharpen with a reverse ODE.

Scores of a batch of user rows ``R_u`` (the semantics of the official code):

- ``B`` = blur ODE from ``R_u`` over ``[0, T_b]`` (filter ``blur``), states at ``K_b`` times;
- ``I`` = ideal low-pass ODE ``dI/dt = I (M - I)`` from ``R_u`` over ``[0, T_idl]`` (only when
  ``beta != 0``); ``M`` is a projection, so the solver's result is ``a R_u + (1 - a) R_u M``
  with ``a`` its response to ``dy/dt = -y`` (``Integrator.projection_decay``): one low-rank
  product, with ``R_u L`` computed from the nonzeros of ``R_u``;
- ``S(0) = B(T_b) + beta I(T_idl)`` (early merge) or ``B(T_b)`` (late merge), and ``S`` the
  sharpening ODE ``dS/dt = -S P~`` over ``[0, T_s]``, states at ``K_s`` times;
- ``U = S(T_s)``, or with ``t_point`` the mean of the ``K_b`` blur states and the ``K_s``
  sharpening states after time 0; with sharpening off ``U = B(T_b)`` (``t_point``: mean of
  the blur states);
- result ``U``, plus ``beta I(T_idl)`` for late merge or when sharpening is off, plus
  ``S(0)`` with the residual connection.

GF-CF is the special case: blur "gfcf", Euler, ``T_b = 1``, one step, no sharpening.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import scipy.sparse as sp
from jaxtyping import Array, Float

from ..runtime import native as native_kernel
from ..errors import ConfigError
from ..filtering.filters import AbstractFilter, HeatBlur, IdealBlur, MixedBlur, Sharpen
from ..filtering.graph import ItemGraph, build_graph, intermediate_length
from ..filtering.operators import AbstractOperator
from ..filtering.solvers import AbstractIntegrator, make_integrator
from ..spectral import DEFAULT_TOL, SpectrumCache, check_rank, check_svd_settings
from .base import AbstractLayoutFilter, AbstractSpectralFilter, LayoutScores, Rows, TrainInfo

MERGES = ("early", "late")
BLURS: dict[str, Callable[[BSPM], AbstractFilter]] = {
    "heat": lambda m: HeatBlur(m.k),
    "ideal": lambda m: IdealBlur(),
    "gfcf": lambda m: MixedBlur(m.k, m.gfcf_beta),
}


def _finite(name: str, value: float, low: float = -math.inf, strict: bool = False) -> None:
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = number and math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        raise ConfigError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {value!r}")


class BSPM(AbstractSpectralFilter, AbstractLayoutFilter):
    """Blurring-Sharpening Process Model (early/late merge, residual, t-point combination).

    Choi et al., SIGIR 2023; the defaults are BSPM-EM's Gowalla settings (Table 4). The ODEs are in the
    module docstring; "official" names a flag of the authors' code (jeongwhanchoi/BSPM). ``rank``
    is used (and checked) when ``beta != 0`` or the blur is 'ideal' or 'gfcf'; a process's solver, T and K
    are checked when it runs: blur always, ideal when ``beta != 0``, sharpening when ``sharpen``.

    Attributes:
        blur: blur ODE dB/dt, one of 'heat' (k B (P~ - I)), 'ideal' (B (M - I)), 'gfcf' (k B (P~ + gfcf_beta M - I)).
        k: heat capacity of the 'heat' and 'gfcf' blurs, finite and > 0 (1: the official code's blur).
        gfcf_beta: weight of the ideal low-pass M inside the 'gfcf' blur, any finite number (GF-CF's 0.3).
        blur_solver: blur integrator, one of 'euler', 'rk4', 'dopri5' (official ``solver_blr``).
        T_b: blurring time, finite and > 0 (the paper's T_b).
        K_b: blur steps of T_b / K_b, integer >= 1; with 'dopri5' the number of output times (the paper's K_b).
        beta: weight of the ideal low-pass term beta I(T_idl), finite and >= 0; 0: none (official ``idl_beta``).
        idl_solver: ideal low-pass integrator, one of 'euler', 'rk4', 'dopri5' (official ``solver_idl``).
        T_idl: ideal low-pass time, finite and > 0 (official ``T_idl``).
        K_idl: ideal low-pass steps, integer >= 1 (official ``K_idl``).
        rank: SVD rank of the ideal low-pass M, integer 1..min(n_users, n_items) - 1 (official ``factor_dim``).
        svd_solver: truncated SVD solver, one of 'auto', 'block', 'propack', 'arpack'.
        svd_tol: SVD stopping rule ||A v - s u|| <= svd_tol * s_1, in (0, 1).
        sharpen: run the sharpening ODE dS/dt = -S P~, True or False (official ``sharpening_off`` negated).
        sharpen_solver: sharpening integrator, one of 'euler', 'rk4', 'dopri5' (official ``solver_shr``).
        T_s: sharpening time, finite and > 0 (the paper's T_s; 2.5 for BSPM-EM on Gowalla).
        K_s: sharpening steps of T_s / K_s, integer >= 1; with 'dopri5' the number of output times (the paper's K_s).
        merge: 'early' (BSPM-EM: sharpen B + beta I) or 'late' (BSPM-LM: add beta I last) (final_sharpening True/False).
        residual: add the sharpening's start S(0) to the result, True or False; needs ``sharpen``.
        t_point: average the blur and sharpening states at all output times, True or False (``t_point_combination``).
        rtol: relative tolerance of 'dopri5', finite and > 0 (unused by 'euler' and 'rk4').
        atol: absolute tolerance of 'dopri5', finite and > 0 (unused by 'euler' and 'rk4').
        dense: materialise P~ as an (n_items, n_items) array instead of matrix-free products, True or False.
        use_diffrax: run 'euler'/'rk4' through diffrax.diffeqsolve, not as their step polynomial, True or False.
        kernel: product path, one of 'auto', 'avx512', 'avx2', 'baseline' (native CPU kernel) or 'jax' (pure JAX).
    """

    name: ClassVar[str] = "bspm"
    blur: str = eqx.field(static=True, default="heat")
    k: float = eqx.field(static=True, default=1.0)
    gfcf_beta: float = eqx.field(static=True, default=0.3)
    blur_solver: str = eqx.field(static=True, default="euler")
    T_b: float = eqx.field(static=True, default=1.0)
    K_b: int = eqx.field(static=True, default=1)
    beta: float = eqx.field(static=True, default=0.2)
    idl_solver: str = eqx.field(static=True, default="euler")
    T_idl: float = eqx.field(static=True, default=1.0)
    K_idl: int = eqx.field(static=True, default=1)
    rank: int = eqx.field(static=True, default=448)
    svd_solver: str = eqx.field(static=True, default="auto")
    svd_tol: float = eqx.field(static=True, default=DEFAULT_TOL)
    sharpen: bool = eqx.field(static=True, default=True)
    sharpen_solver: str = eqx.field(static=True, default="rk4")
    T_s: float = eqx.field(static=True, default=2.5)
    K_s: int = eqx.field(static=True, default=1)
    merge: str = eqx.field(static=True, default="early")
    residual: bool = eqx.field(static=True, default=False)
    t_point: bool = eqx.field(static=True, default=False)
    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-8)
    dense: bool = eqx.field(static=True, default=False)
    use_diffrax: bool = eqx.field(static=True, default=False)
    kernel: str = eqx.field(static=True, default="auto")
    graph: ItemGraph | None = None

    def search_space(self) -> dict[str, tuple[Any, ...]]:
        """The blur's own setting (GF-CF's ``gfcf_beta``, or ``T_b`` when nothing sharpens), then ``T_s``, and ``beta``
        where the ideal low-pass is in use already (its rank configured for the data)."""
        space: dict[str, tuple[Any, ...]] = {}
        if self.blur == "gfcf":
            space["gfcf_beta"] = (0.1, 0.3, 0.5)
        elif not self.sharpen:
            space["T_b"] = (1.0, 2.0, 3.0)
        if self.sharpen:
            space["T_s"] = (1.5, 2.5, 3.5)
        if self.sharpen and self.beta > 0:
            space["beta"] = (0.0, 0.2)
        return space

    def __check_init__(self) -> None:
        if self.blur not in BLURS:
            raise ConfigError(f"unknown blur {self.blur!r}; available: {', '.join(BLURS)}")
        if self.merge not in MERGES:
            raise ConfigError(f"merge must be 'early' or 'late', got {self.merge!r}")
        _finite("heat capacity k", self.k, 0.0, strict=True)
        _finite("beta", self.beta, 0.0)
        _finite("gfcf_beta", self.gfcf_beta)
        _finite("rtol", self.rtol, 0.0, strict=True)
        _finite("atol", self.atol, 0.0, strict=True)
        for flag in ("sharpen", "residual", "t_point", "dense", "use_diffrax"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        native_kernel.check_choice(self.kernel)
        check_svd_settings(self.svd_solver, self.svd_tol)
        if self.residual and not self.sharpen:
            raise ConfigError("the residual connection adds S(0): it needs sharpening on")
        if self.needs_svd and not (isinstance(self.rank, numbers.Integral) and not isinstance(self.rank, bool) and self.rank >= 1):
            raise ConfigError(f"SVD rank must be an integer >= 1, got {self.rank!r}")
        active = ["blur"] + (["ideal"] if self.beta != 0 else []) + (["sharpen"] if self.sharpen else [])
        for process in active:
            try:
                self.integrator(process)
            except ConfigError as err:
                raise ConfigError(f"{process} process: {err}") from None

    def integrator(self, process: str) -> AbstractIntegrator:
        """The integrator of the "blur", "ideal" or "sharpen" process."""
        solver, T, K = {
            "blur": (self.blur_solver, self.T_b, self.K_b),
            "ideal": (self.idl_solver, self.T_idl, self.K_idl),
            "sharpen": (self.sharpen_solver, self.T_s, self.K_s),
        }[process]
        return make_integrator(solver, T, K, rtol=self.rtol, atol=self.atol, use_diffrax=self.use_diffrax)

    @property
    def blur_filter(self) -> AbstractFilter:
        """The blur function selected by ``blur``."""
        return BLURS[self.blur](self)

    @property
    def needs_svd(self) -> bool:
        return self.beta != 0 or self.blur_filter.needs_svd

    def fit_key(self) -> tuple[tuple[int, str, float] | None, bool, str]:
        """The graph depends only on the SVD (rank, solver, tolerance; when one is needed), ``dense`` and ``kernel``."""
        return (self.svd_settings, self.dense, self.kernel)

    @property
    def svd_settings(self) -> tuple[int, str, float] | None:
        """(rank, svd_solver, svd_tol) of the SVD, or None when the model needs none."""
        return (self.rank, self.svd_solver, self.svd_tol) if self.needs_svd else None

    def scoring_bytes_per_user(self, n_items: int) -> int:
        """float32 rows alive per user: the input, the ODE states at the output times, the
        Horner accumulator and stage, the ideal term, the result, and the intermediate of
        ``(X R~^T) R~``, as long as the training users (not the rows being scored)."""
        states = 5 + self.K_b + (self.K_s if self.sharpen else 0) + (1 if self.beta != 0 else 0)
        return 4 * (states * n_items + intermediate_length(self.graph))

    def fit_matrix(self, train: sp.csr_matrix, spectra: SpectrumCache | None = None) -> BSPM:
        if self.needs_svd:
            check_rank(self.rank, train.shape, "rank")
        graph = build_graph(train, self.rank if self.needs_svd else None, dense=self.dense, kernel=self.kernel,
                            spectra=spectra, svd_solver=self.svd_solver, svd_tol=self.svd_tol)
        return dataclasses.replace(self, graph=graph, fitted_on=TrainInfo.of(train))

    def layout_filter(self, rows: Rows) -> tuple[LayoutScores, dict[str, Array]]:
        """Run the blur, ideal and sharpening processes in the graph's layout; per process, the solver steps and
        vector-field evaluations."""
        self.require_fitted()
        g = self.graph
        layout = g.layout(rows.shape[0])
        x = layout.enter(rows)
        stats: dict[str, dict[str, Array]] = {}
        blur, stats["blur"] = self._solve("blur", layout.view(self.blur_filter.operator(g)), x)
        ideal = None
        if self.beta != 0:
            # M = V^-1/2 Vbar Vbar^T V^1/2 is a projection: I(T) = a R_u + (1 - a) R_u M
            a = self.integrator("ideal").projection_decay()
            ideal = self.beta * (a * x + (1.0 - a) * layout.low_rank(g.ideal, rows))
            stats["ideal"] = {"steps": jnp.asarray(1), "evaluations": jnp.asarray(1)}
        if self.sharpen:
            s0 = blur[-1] if ideal is None or self.merge == "late" else blur[-1] + ideal
            sharp, stats["sharpen"] = self._solve("sharpen", layout.view(Sharpen().operator(g)), s0)
            out = jnp.concatenate([blur, sharp]).mean(axis=0) if self.t_point else sharp[-1]
            if self.residual:
                out = out + s0
        else:
            out = blur.mean(axis=0) if self.t_point else blur[-1]
        if ideal is not None and (self.merge == "late" or not self.sharpen):
            out = out + ideal
        return LayoutScores(out, layout, rows.shape[0]), stats

    def filter_rows(self, x: Float[Array, "b n_items"]) -> Float[Array, "b n_items"]:
        """BSPM filters the rows as they are: its scores."""
        return self.score(x)

    def ideal_cutoff(self) -> float | None:
        self.require_fitted()
        s = self.graph.singular_values
        return None if s is None else float(s[-1]) ** 2

    def on_spectrum(self, eigenvalues: Float[Array, " n"]) -> BSPM:
        info = self.require_fitted()
        graph, _ = self.spectral_graph(eigenvalues, self.ideal_cutoff())
        return dataclasses.replace(self, graph=graph, dense=False, fitted_on=info)

    def _solve(self, process: str, operator: AbstractOperator, y0: Array) -> tuple[Array, dict[str, Array]]:
        """States of one process at its output times, with its step and evaluation counts."""
        integrator = self.integrator(process)
        ys, stats = integrator.solve(operator, y0)
        return ys, {"steps": stats["num_steps"], "evaluations": integrator.evaluations(stats)}
