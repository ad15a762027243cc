"""What an epoch trains on: every train pair once (or as many pairs drawn user-first) with a random
unseen item (BPR), or with ``negatives`` labelled unseen items (NCF's binary cross-entropy), or
every user once (row models).

An epoch's batches are a pure function of the train matrix and the epoch's key (derived
from the seed and the epoch number), so resuming at epoch e redraws exactly its batches.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator

import jax
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Num

from ..runtime.checks import check_integer
from ..data.sparse import canonical_csr
from ..errors import ConfigError

Triples = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(users, positives, negatives), int32 arrays of one length."""


def epoch_key(seed_key: jax.Array, epoch: int) -> jax.Array:
    """The key of epoch ``epoch`` (1-based): ``fold_in(seed_key, epoch)``."""
    return jax.random.fold_in(seed_key, epoch)


def host_rng(key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded by the bits of a JAX key."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key), dtype=np.uint32).ravel().tolist())


class AbstractSampler(abc.ABC):
    """The examples of one epoch, in training order, as host arrays of one length."""

    @abc.abstractmethod
    def epoch(self, key: jax.Array) -> tuple[np.ndarray, ...]:
        """The epoch's examples for its key."""


def _clean(train: sp.spmatrix) -> sp.csr_matrix:
    m = canonical_csr(train)
    if m.nnz == 0:
        raise ConfigError("the train matrix has no interactions to train on")
    return m


@dataclasses.dataclass(frozen=True)
class UserSampler(AbstractSampler):
    """Every user with at least one train interaction once per epoch, in a random order."""

    users: np.ndarray

    @classmethod
    def from_matrix(cls, train: sp.spmatrix) -> UserSampler:
        m = _clean(train)
        return cls(np.flatnonzero(np.diff(m.indptr) > 0).astype(np.int32))

    def epoch(self, key: jax.Array) -> tuple[np.ndarray]:
        return (self.users[host_rng(key).permutation(self.users.size)],)


@dataclasses.dataclass(frozen=True)
class AbstractPairSampler(AbstractSampler):
    """BPR triples: (user, positive) pairs as the concrete class draws them, each with a negative drawn
    uniformly from the user's unseen items. Holds the train pairs in CSR order, each user's start in them
    (``indptr``), and the sorted codes ``u * n_items + i`` that reject seen items."""

    users: np.ndarray
    items: np.ndarray
    codes: np.ndarray
    indptr: np.ndarray
    n_users: int
    n_items: int

    @classmethod
    def from_matrix(cls, train: sp.spmatrix) -> AbstractPairSampler:
        """The sampler of a binary (n_users, n_items) train matrix; refuses users who saw every item."""
        m = _clean(train)
        n_users, n_items = m.shape
        degree = np.diff(m.indptr)
        if np.any(degree >= n_items):
            user = int(np.flatnonzero(degree >= n_items)[0])
            raise ConfigError(f"user {user} has interacted with every item: no negative item to sample")
        users = np.repeat(np.arange(n_users, dtype=np.int64), degree)
        items = m.indices.astype(np.int64)
        return cls(users.astype(np.int32), items.astype(np.int32), users * n_items + items,
                   m.indptr.astype(np.int64), n_users, n_items)

    @property
    def n_pairs(self) -> int:
        return int(self.users.size)

    @abc.abstractmethod
    def positives(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's (users, positives), ``n_pairs`` of each (int32), in training order."""

    def seen(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) is a train pair."""
        code = users.astype(np.int64) * self.n_items + items
        pos = np.minimum(np.searchsorted(self.codes, code), self.codes.size - 1)
        return self.codes[pos] == code

    def unseen(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """For each of ``users``, an item drawn uniformly from the user's unseen items (int32).

        Rejection sampling: draw items uniformly, redraw those the user has seen.
        """
        items = rng.integers(0, self.n_items, size=users.size, dtype=np.int32)
        redraw = np.flatnonzero(self.seen(users, items))
        while redraw.size:
            items[redraw] = rng.integers(0, self.n_items, size=redraw.size, dtype=np.int32)
            redraw = redraw[self.seen(users[redraw], items[redraw])]
        return items

    def epoch(self, key: jax.Array) -> Triples:
        """The epoch's (users, positives, negatives)."""
        rng = host_rng(key)
        users, pos = self.positives(rng)
        return users, pos, self.unseen(rng, users)

    def batches(self, key: jax.Array, batch_size: int) -> Iterator[Triples]:
        """The epoch's triples in consecutive batches of ``batch_size`` (the last may be shorter)."""
        users, pos, neg = self.epoch(key)
        for start in range(0, self.n_pairs, batch_size):
            yield users[start : start + batch_size], pos[start : start + batch_size], neg[start : start + batch_size]


@dataclasses.dataclass(frozen=True)
class PairSampler(AbstractPairSampler):
    """Every train pair once per epoch, in a random order (a user weighs in proportion to their history)."""

    def positives(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        order = rng.permutation(self.n_pairs)
        return self.users[order], self.items[order]


@dataclasses.dataclass(frozen=True)
class UserPairSampler(AbstractPairSampler):
    """``n_pairs`` draws per epoch, each a user drawn uniformly from those with train items and one of their
    items drawn uniformly (every user weighs the same; LightGCN's reference sampler)."""

    def positives(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        active = np.flatnonzero(np.diff(self.indptr) > 0)
        users = active[rng.integers(0, active.size, size=self.n_pairs)]
        start, degree = self.indptr[users], self.indptr[users + 1] - self.indptr[users]
        picks = start + np.minimum((rng.random(self.n_pairs) * degree).astype(np.int64), degree - 1)
        return users.astype(np.int32), self.items[picks]


PAIR_SAMPLERS: dict[str, type[AbstractPairSampler]] = {"pairs": PairSampler, "users": UserPairSampler}
"""The pair sampler of each ``sampling`` setting of a BPR model (:data:`bspm_jax.models.PAIR_SAMPLINGS`)."""


@dataclasses.dataclass(frozen=True)
class NegativeSampler(AbstractSampler):
    """Pointwise examples (He et al.'s NCF): every train pair once with label 1, and ``negatives`` items per pair
    drawn uniformly from its user's unseen items with label 0, shuffled together."""

    pairs: AbstractPairSampler
    negatives: int = 4

    def __post_init__(self) -> None:
        check_integer("negatives (sampled negatives per positive)", self.negatives, 1)

    @classmethod
    def from_matrix(cls, train: sp.spmatrix, negatives: int = 4) -> NegativeSampler:
        """The sampler of a binary (n_users, n_items) train matrix; refuses users who saw every item."""
        return cls(PairSampler.from_matrix(train), negatives)

    @property
    def n_examples(self) -> int:
        return self.pairs.n_pairs * (1 + self.negatives)

    def epoch(self, key: jax.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, items, labels): int32, int32 and float32 (1 for a train pair, 0 for a sampled unseen item).

        The negatives are independent draws (a user's negatives may repeat, as in He's code).
        """
        rng = host_rng(key)
        neg_users = np.repeat(self.pairs.users, self.negatives)
        neg_items = self.pairs.unseen(rng, neg_users)
        users = np.concatenate([self.pairs.users, neg_users])
        items = np.concatenate([self.pairs.items, neg_items])
        labels = np.concatenate([np.ones(self.pairs.n_pairs, np.float32), np.zeros(neg_users.size, np.float32)])
        order = rng.permutation(users.size)
        return users[order], items[order], labels[order]


def stacked_batches(examples: tuple[np.ndarray, ...], batch_size: int) -> tuple[tuple[Num[Array, "n b"], ...], tuple[Num[Array, " r"], ...]]:
    """The full batches stacked as (n_batches, batch_size) device arrays, and the remainder (maybe empty)."""
    n_full = examples[0].size // batch_size * batch_size
    full = tuple(jax.numpy.asarray(a[:n_full].reshape(-1, batch_size)) for a in examples)
    rest = tuple(jax.numpy.asarray(a[n_full:]) for a in examples)
    return full, rest
