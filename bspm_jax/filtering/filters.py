"""Graph filters of BSPM as linear operators built from a fitted ItemGraph.

With ``P~ = R~^T R~`` and ``M = V^-1/2 Vbar Vbar^T V^1/2`` (the ideal low-pass filter):

- heat blur       ``b(B) = k B (P~ - I)``
- ideal blur      ``b(B) = B (M - I)``
- GF-CF mix blur  ``b(B) = k B (P~ + beta M - I)``
- sharpening      ``s(S) = -S P~``
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx

from ..errors import ConfigError
from .graph import ItemGraph
from .operators import AbstractOperator, Identity


def _ideal(graph: ItemGraph) -> AbstractOperator:
    if graph.ideal is None:
        raise ConfigError("this filter needs the ideal low-pass filter: fit with an SVD rank")
    return graph.ideal


class AbstractFilter(eqx.Module):
    """A linear vector field ``Y -> Y A`` whose ``A`` is built from the item graph."""

    needs_svd: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def operator(self, graph: ItemGraph) -> AbstractOperator:
        """The operator ``A`` of the field on this graph."""


class HeatBlur(AbstractFilter):
    """Heat equation ``dB/dt = k B (P~ - I)``; heat capacity ``k``."""

    k: float = eqx.field(static=True, default=1.0)
    needs_svd: ClassVar[bool] = False

    def operator(self, graph: ItemGraph) -> AbstractOperator:
        return self.k * (graph.gram - Identity())


class IdealBlur(AbstractFilter):
    """Ideal low-pass ``dB/dt = B (M - I)``."""

    needs_svd: ClassVar[bool] = True

    def operator(self, graph: ItemGraph) -> AbstractOperator:
        return _ideal(graph) - Identity()


class MixedBlur(AbstractFilter):
    """GF-CF's mix ``dB/dt = k B (P~ + beta M - I)``."""

    k: float = eqx.field(static=True, default=1.0)
    beta: float = eqx.field(static=True, default=0.3)
    needs_svd: ClassVar[bool] = True

    def operator(self, graph: ItemGraph) -> AbstractOperator:
        return self.k * (graph.gram + self.beta * _ideal(graph) - Identity())


class Sharpen(AbstractFilter):
    """Reverse heat equation ``dS/dt = -S P~``."""

    needs_svd: ClassVar[bool] = False

    def operator(self, graph: ItemGraph) -> AbstractOperator:
        return -graph.gram
