"""GiffCF's own trained ML-1M weights, scored by this library's GiffCF under protocol A.

    python -m benchmarks.giffcf_reference --checkpoint PATH/movielens.keras \
        [--data ../shared/data/ml-1m-diffrec] [--out FILE]

The checkpoint is the HDF5 weight file that the public GiffCF code (VinciZhu/GiffCF,
``checkpoints/movielens.keras``) ships; reading it needs ``h5py`` (not a dependency of the
library). Its arrays are put into the fields of :class:`bspm_jax.GiffCF` (the sinusoidal
step embedding is [sin, cos] there and [cos, sin] here, so the first time layers' input
rows are swapped) and the model is evaluated on validation and test from the train
history. Equal figures to the reference code's own evaluation show that the graph, the
filter, the denoiser and the sampling loop compute what that code computes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bspm_jax import GiffCF, evaluate, load_dataset
from bspm_jax.diffusion.denoiser import Affine
from bspm_jax.runtime.environment import environment_info

LAYERS = {  # our field -> the Keras layer holding it, and whether its input is the step embedding
    "time_latent.hidden": ("time_embed/dense", True),
    "time_latent.out": ("time_embed/dense_1", False),
    "time_score.hidden": ("time_embed_1/dense_2", True),
    "time_score.out": ("time_embed_1/dense_3", False),
    "latent_mixer.hidden": ("simple_mixer/dense_4", False),
    "latent_mixer.out": ("simple_mixer/dense_5", False),
    "score_mixer.hidden": ("simple_mixer_1/dense_6", False),
    "score_mixer.out": ("simple_mixer_1/dense_7", False),
}


def load_reference(model: GiffCF, path: Path) -> GiffCF:
    """``model`` (initialised on the same train matrix) with the reference checkpoint's denoiser weights."""
    import h5py

    with h5py.File(path, "r") as f:
        group = f["denoiser/giff_cf/denoiser"]
        table = np.asarray(f["denoiser/item_embed:0"])

        def affine(name: str, sinusoid_input: bool) -> Affine:
            weight = np.asarray(group[f"{name}/kernel:0"])
            if sinusoid_input:
                half = weight.shape[0] // 2
                weight = np.concatenate([weight[half:], weight[:half]])
            return Affine(jnp.asarray(weight), jnp.asarray(np.asarray(group[f"{name}/bias:0"])))

        layers = [affine(*LAYERS[field]) for field in LAYERS]

    def where(d):  # the eight Affine layers, in the order of LAYERS
        return tuple(getattr(getattr(d, a), b) for a, b in (f.split(".") for f in LAYERS))

    denoiser = eqx.tree_at(lambda d: d.item_embedding, model.denoiser, jnp.asarray(table))
    denoiser = eqx.tree_at(where, denoiser, tuple(layers))
    return eqx.tree_at(lambda m: m.denoiser, model, denoiser)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", default="../shared/data/ml-1m-diffrec")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    data = load_dataset(args.data)
    model = GiffCF().init(jax.random.key(0), data.train).with_train(data.train)  # the preset's settings
    model = load_reference(model, args.checkpoint)
    keep = ("recall", "ndcg")
    result = {
        "protocol": "A",
        "checkpoint": str(args.checkpoint),
        "test": {k: v for k, v in evaluate(model, data, ks=(10, 20)).metrics.items() if k.split("@")[0] in keep},
        "valid": {k: v for k, v in evaluate(model, data, ks=(10, 20), split="valid").metrics.items()
                  if k.split("@")[0] in keep},
        "environment": environment_info(),
    }
    print(json.dumps({k: result[k] for k in ("test", "valid")}, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
