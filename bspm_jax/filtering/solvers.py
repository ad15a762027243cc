"""ODE integrators for linear row-batch vector fields, built on diffrax.

Each integrator solves ``dY/dt = f(Y)`` from ``t = 0`` to ``T`` and returns the states at
the K output times ``T/K, 2T/K, ..., T`` (the last one is ``Y(T)``). Fixed-step solvers
take exactly K steps of ``tau = T/K``: as the step's polynomial on the linear field, or
through diffrax with ``diffrax.StepTo``; the adaptive one (diffrax's Dopri5) picks its own
steps and reports the states at those K output times.
"""

from __future__ import annotations

import abc
import math
import numbers
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from diffrax import AbstractERK, ButcherTableau, ThirdOrderHermitePolynomialInterpolation
from jaxtyping import Array, Float

from ..errors import ConfigError
from .operators import AbstractOperator

States = Float[Array, "k *state"]

_rk4_tableau = ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.zeros(4),
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


class ClassicRK4(AbstractERK):
    """The classic 4-stage, 4th-order Runge-Kutta method (no embedded error: fixed steps)."""

    tableau: ClassVar[ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Any] = ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms: Any) -> int:
        del terms
        return 4


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


class LinearField(eqx.Module):
    """The vector field ``f(t, Y, args) = Y A`` of a linear operator ``A``."""

    operator: AbstractOperator

    def __call__(self, t: Any, y: Array, args: Any) -> Array:
        del t, args
        return self.operator(y)


def max_row_rms(y: Any) -> Array:
    """Error norm for adaptive steps: the largest per-user RMS, so every user meets tolerance.

    Users are rows of a (batch, n) state, or columns of a (chunks, n, width) chunked state.
    """
    return jnp.max(jnp.sqrt(jnp.mean(jnp.square(y), axis=1)))


class AbstractIntegrator(eqx.Module):
    """Integrates a linear field over ``[0, T]`` and returns the states at K output times."""

    T: eqx.AbstractVar[float]
    steps: eqx.AbstractVar[int]

    def __check_init__(self) -> None:
        if not (_is_number(self.T) and np.isfinite(self.T) and self.T > 0):
            raise ConfigError(f"terminal time T must be a finite number > 0, got {self.T!r}")
        if not (isinstance(self.steps, numbers.Integral) and not isinstance(self.steps, bool) and self.steps >= 1):
            raise ConfigError(f"number of steps must be an integer >= 1, got {self.steps!r}")

    @property
    def output_times(self) -> Array:
        """``T/K, 2T/K, ..., T``."""
        return jnp.linspace(0.0, self.T, self.steps + 1)[1:]

    @abc.abstractmethod
    def evaluations(self, stats: dict[str, Array]) -> Array:
        """Vector-field evaluations of a solve, from diffrax's step statistics."""

    @abc.abstractmethod
    def projection_decay(self) -> float:
        """``a`` such that the solution at ``T`` of ``dy/dt = y (M - I)`` with ``M^2 = M`` is
        ``a y0 + (1 - a) y0 M``.

        ``M - I`` has eigenvalues 0 and -1 only, so any solver's result is fixed by its
        response ``a`` to ``dy/dt = -y``: this evaluates the ideal low-pass ODE with a
        single application of ``M``.
        """

    @abc.abstractmethod
    def _solver_kwargs(self) -> dict[str, Any]:
        """The diffrax solver, step-size controller and step budget."""

    def solve(self, operator: AbstractOperator, y0: Array) -> tuple[States, dict[str, Any]]:
        """States at the output times (shape (K, *y0.shape)) and diffrax's step statistics."""
        kwargs = {"dt0": None, **self._solver_kwargs()}
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(LinearField(operator)),
            t0=0.0,
            t1=self.T,
            y0=y0,
            saveat=diffrax.SaveAt(ts=self.output_times),
            **kwargs,
        )
        return sol.ys, sol.stats


def step_polynomial(tableau: ButcherTableau) -> tuple[float, ...]:
    """Coefficients ``c_j`` of an explicit RK step on a linear field ``f(y) = y A``.

    One step is ``y_{n+1} = sum_j c_j y_n (tau A)^j`` with ``c_0 = 1`` and
    ``c_j = b^T a^(j-1) 1`` (the method's stability polynomial); for classic RK4 these are
    ``1, 1, 1/2, 1/6, 1/24``.
    """
    n = len(tableau.b_sol)
    a = np.zeros((n, n))
    for i, row in enumerate(tableau.a_lower):
        a[i + 1, : len(row)] = row
    coeffs, v = [1.0], np.ones(n)
    for _ in range(n):
        coeffs.append(float(tableau.b_sol @ v))
        v = a @ v
    while len(coeffs) > 1 and coeffs[-1] == 0.0:
        coeffs.pop()
    return tuple(coeffs)


class _FixedStep(AbstractIntegrator):
    """K steps of ``tau = T/K``.

    By default a step on the linear field is evaluated as its polynomial in Horner form,
    ``y <- c_0 y + tau A(c_1 y + tau A(c_2 y + ...))``: the same arithmetic as the
    Runge-Kutta stages, one operator application per stage, without diffrax's per-stage
    temporaries. ``use_diffrax=True`` integrates with ``diffrax.diffeqsolve`` instead.
    """

    T: float = eqx.field(static=True)
    steps: int = eqx.field(static=True)
    use_diffrax: bool = eqx.field(static=True, default=False)
    solver: ClassVar[diffrax.AbstractSolver]
    stages: ClassVar[int]
    coefficients: ClassVar[tuple[float, ...]]

    def evaluations(self, stats: dict[str, Array]) -> Array:
        return self.stages * stats["num_steps"]

    def projection_decay(self) -> float:
        # K steps of the stability polynomial p(z) = sum_j c_j z^j at z = -T/K
        z = -self.T / self.steps
        return float(sum(c * z**j for j, c in enumerate(self.coefficients)) ** self.steps)

    def solve(self, operator: AbstractOperator, y0: Array) -> tuple[States, dict[str, Any]]:
        if self.use_diffrax:
            return super().solve(operator, y0)
        tau, coeffs = self.T / self.steps, self.coefficients

        def step(y: Array, _: None) -> tuple[Array, Array]:
            # acc <- c y + tau A acc, starting from acc = c_last y (kept as a scale on y)
            acc, s = y, coeffs[-1]
            for c in reversed(coeffs[:-1]):
                acc, s = operator.affine(acc, tau * s, ((c, y),)), 1.0
            return acc, acc

        _, ys = jax.lax.scan(step, y0, None, length=self.steps)
        return ys, {"num_steps": jnp.asarray(self.steps)}

    def _solver_kwargs(self) -> dict[str, Any]:
        return {
            "solver": self.solver,
            "stepsize_controller": diffrax.StepTo(ts=jnp.linspace(0.0, self.T, self.steps + 1)),
            "max_steps": self.steps,
        }


class Euler(_FixedStep):
    """Explicit Euler: ``Y <- Y + tau f(Y)``, K steps."""

    solver: ClassVar[diffrax.AbstractSolver] = diffrax.Euler()
    stages: ClassVar[int] = 1
    coefficients: ClassVar[tuple[float, ...]] = (1.0, 1.0)


class RK4(_FixedStep):
    """Classic Runge-Kutta 4, K steps."""

    solver: ClassVar[diffrax.AbstractSolver] = ClassicRK4()
    stages: ClassVar[int] = 4
    coefficients: ClassVar[tuple[float, ...]] = step_polynomial(_rk4_tableau)


class Dopri5(AbstractIntegrator):
    """Adaptive Dormand-Prince 5(4); ``steps`` is the number of output times.

    The step size is shared by the rows of a batch and controlled by the largest per-row
    error, so every user meets ``rtol``/``atol``.
    """

    T: float = eqx.field(static=True)
    steps: int = eqx.field(static=True, default=1)
    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-8)
    max_steps: int = eqx.field(static=True, default=4096)

    def __check_init__(self) -> None:
        if not all(_is_number(x) and np.isfinite(x) and x > 0 for x in (self.rtol, self.atol)):
            raise ConfigError(f"rtol and atol must be > 0, got {self.rtol}, {self.atol}")

    def evaluations(self, stats: dict[str, Array]) -> Array:
        # one to start; 6 new stages per accepted step (first-same-as-last), 7 per rejected one
        return 1 + 6 * stats["num_accepted_steps"] + 7 * stats["num_rejected_steps"]

    def projection_decay(self) -> float:
        # the exact solution, which the adaptive solver approximates to within its tolerances
        return math.exp(-self.T)

    def _solver_kwargs(self) -> dict[str, Any]:
        controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol, norm=max_row_rms)
        return {
            "solver": diffrax.Dopri5(),
            "stepsize_controller": controller,
            "dt0": self.T / self.steps,
            "max_steps": self.max_steps,
        }


INTEGRATORS: dict[str, type[AbstractIntegrator]] = {"euler": Euler, "rk4": RK4, "dopri5": Dopri5}


def make_integrator(name: str, T: float, steps: int, **options: Any) -> AbstractIntegrator:
    """The integrator registered as ``name`` ("euler", "rk4" or "dopri5")."""
    try:
        cls = INTEGRATORS[name]
    except KeyError:
        raise ConfigError(f"unknown solver {name!r}; available: {', '.join(INTEGRATORS)}") from None
    use_diffrax = options.pop("use_diffrax", False)
    if cls is Dopri5:
        return cls(T=T, steps=steps, **options)
    return cls(T=T, steps=steps, use_diffrax=use_diffrax)
