"""A small training run for the SIGKILL-and-resume tests: ``python _train_run.py MODEL CKPT OUT.npz [BLOCK]``.

MODEL is one of :data:`MODELS`. With BLOCK, the BLOCK-th validation of the model itself (not
of a pre-trained part) waits forever, so the test can kill the process mid-run at a known
point, after the checkpoint of the epoch before.
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

from bspm_jax import Dataset, evaluate  # noqa: E402
from bspm_jax.models import GMF, MFBPR, GiffCF, LightGCN, MultDAE, MultVAE, NeuMF  # noqa: E402
from bspm_jax.training import TrainSettings, train  # noqa: E402
from bspm_jax.training.pretrain import starts_trained  # noqa: E402

MODELS = {
    "mf-bpr": lambda: MFBPR(dim=8, reg=1e-3),
    "lightgcn": lambda: LightGCN(dim=8, layers=2, reg=1e-3),
    "mult-vae": lambda: MultVAE(hidden=(16,), latent=8, anneal_steps=10),
    "mult-dae": lambda: MultDAE(latent=8),
    "gmf": lambda: GMF(factors=4),
    "giffcf": lambda: GiffCF(embed_dim=8, time_dim=4),
    "neumf": lambda: NeuMF(factors=4, layers=(16, 8), pretrain=True),  # GMF and MLP pre-trained in sub-folders
}


def data() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Synthetic train and holdout matrices (60 users, 40 items)."""
    rng = np.random.default_rng(7)
    full = rng.random((60, 40)) < 0.25
    holdout = full & (rng.random(full.shape) < 0.2)
    return sp.csr_matrix((full & ~holdout).astype(np.float32)), sp.csr_matrix(holdout.astype(np.float32))


def main() -> None:
    name, folder, out = sys.argv[1], sys.argv[2], sys.argv[3]
    block = int(sys.argv[4]) if len(sys.argv) > 4 else None
    model = MODELS[name]()
    train_m, holdout = data()
    split = Dataset(train=train_m, test=holdout, name="toy")
    calls = [0]
    first = 0 if starts_trained(model) else 1  # a pre-trained start is validated at epoch 0

    def validate(fitted: eqx.Module) -> dict[str, float]:
        if type(fitted) is type(model):
            calls[0] += 1
        while calls[0] - 1 + first == block:  # validation runs every epoch (from 0 or 1): this is epoch `block`
            time.sleep(0.05)
        return {"recall@5": evaluate(fitted, split, ks=(5,)).metrics["recall@5"]}

    settings = TrainSettings(epochs=6, lr=0.05, batch_size=32, eval_every=1, patience=100, metric="recall@5",
                             seed=3, checkpoint_every=1)
    result = train(model, train_m, settings, validate, checkpoint_dir=folder, resume=True)
    leaves = jax.tree.leaves(eqx.filter(result.model, eqx.is_array))
    np.savez(out, *[np.asarray(x) for x in leaves], best_epoch=result.best_epoch, resumed_from=result.resumed_from)


if __name__ == "__main__":
    main()
