"""A small MF-BPR training run for the SIGKILL-and-resume test: ``python _train_run.py CKPT OUT.npz [BLOCK_EPOCH]``.

With BLOCK_EPOCH, the validation of that epoch waits forever (so the test can kill the
process mid-run at a known point, after the checkpoint of the epoch before).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from bspm_jax.models import MFBPR  # noqa: E402
from bspm_jax.training import TrainSettings, train  # noqa: E402


def data() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Synthetic train and holdout matrices (60 users, 40 items)."""
    rng = np.random.default_rng(7)
    full = rng.random((60, 40)) < 0.25
    holdout = full & (rng.random(full.shape) < 0.2)
    return sp.csr_matrix((full & ~holdout).astype(np.float32)), sp.csr_matrix(holdout.astype(np.float32))


def recall_at_5(model: MFBPR, train: sp.csr_matrix, holdout: sp.csr_matrix) -> float:
    """Mean recall@5 over users with holdout items, train items excluded (NumPy)."""
    scores = np.asarray(model.user_embedding) @ np.asarray(model.item_embedding).T
    scores[train.toarray() > 0] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    truth = holdout.toarray() > 0
    users = truth.sum(1) > 0
    hits = np.take_along_axis(truth, top, axis=1).sum(1)
    return float(np.mean(hits[users] / truth.sum(1)[users]))


def main() -> None:
    folder, out = sys.argv[1], sys.argv[2]
    block = int(sys.argv[3]) if len(sys.argv) > 3 else None
    train_m, holdout = data()
    calls = [0]

    def validate(model: MFBPR) -> dict[str, float]:
        calls[0] += 1
        while calls[0] == block:  # the first run validates every epoch from 1: this is epoch `block`
            time.sleep(0.05)
        return {"recall@5": recall_at_5(model, train_m, holdout)}

    settings = TrainSettings(epochs=8, lr=0.05, batch_size=32, eval_every=1, patience=100, metric="recall@5",
                             seed=3, checkpoint_every=1)
    result = train(MFBPR(dim=8, reg=1e-3), train_m, settings, validate, checkpoint_dir=folder, resume=True)
    leaves = jax.tree.leaves(eqx.filter(result.model, eqx.is_array))
    np.savez(out, *[np.asarray(x) for x in leaves], best_epoch=result.best_epoch, resumed_from=result.resumed_from)


if __name__ == "__main__":
    main()
