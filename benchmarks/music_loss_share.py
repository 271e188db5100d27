"""How much can a music-loss weight move training? The gradient share of each music term.

    python benchmarks/music_loss_share.py CHECKPOINT [--batches 8] [--out benchmarks/results/music_loss_share.txt]

On training batches of the checkpoint's own data, this takes the gradient of the objective
without music terms (the ELBO, or the direct predictor's NLL) and, separately, of each
unweighted music term (the harmony sum of semitone, tone and tritone; the scale term; the
rhythm term) with respect to every parameter, and prints

- each term's value beside the next-measure NLL (per window, summed as in training), and
- ``share(w) = w·‖∇term‖ / ‖∇ELBO‖`` for the weights of the dose-response grids
  (``ablations/grids.py``: ``harmony_weight``, ``scale_weight``) and the weight at which the
  share would be 1 %, 10 %, 50 % and 100 %.

A weight whose share is far below 1 % cannot change what the model learns; one above 100 %
means the term dominates the objective. The grids' weights are chosen from these numbers
(docs/results.md, "Music-loss weights"). The noise of every forward pass is seeded the same way, so
the terms are measured on the same sampled latents.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from common import publish  # benchmarks/ is the script's folder

REPO = Path(__file__).resolve().parent.parent
SHARES = (0.01, 0.10, 0.50, 1.00)
TERMS = {"harmony": ("harmony_semitone", "harmony_tone", "harmony_tritone"), "scale": ("scale",),
         "rhythm": ("rhythm",)}


def gradient_norms(module, batch, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Gradient norms of the ELBO and of each unweighted music term on one batch, and their values."""
    params = [p for p in module.parameters() if p.requires_grad]
    torch.manual_seed(seed)
    loss, logs, _ = module.model_step(batch, "train")
    music = {name: sum(logs[key] for key in keys) for name, keys in TERMS.items()}
    elbo = loss - module.weighted_music(logs)  # the objective without its music part
    norms, values = {}, {"elbo": float(elbo.detach()), "nll": float(logs["recon_nll"].detach())}
    for name, value in [("elbo", elbo), *music.items()]:
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None)))
        values.setdefault(name, float(value.detach()))
    return norms, values


def main(argv: list[str] | None = None) -> int:
    from ablations.grids import DOSE_WEIGHTS
    from rmvae.data.datamodule import ChoraleDataModule
    from rmvae.module import load_module

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "music_loss_share.txt")
    args = parser.parse_args(argv)

    module = load_module(args.checkpoint)
    module.train()  # the training objective: sampled latents, input reconstruction, β = 1 (past annealing)
    module.beta = lambda: 1.0
    datamodule = ChoraleDataModule(module.config.data, cache_dir=REPO / "data" / "cache")
    datamodule.setup()
    loader = torch.utils.data.DataLoader(datamodule.datasets["train"], batch_size=module.config.data.batch_size,
                                         shuffle=True, generator=torch.Generator().manual_seed(0))
    totals: dict[str, float] = {}
    values: dict[str, float] = {}
    for index, batch in zip(range(args.batches), loader):
        norms, batch_values = gradient_norms(module, batch, seed=index)
        for key, value in norms.items():
            totals[key] = totals.get(key, 0.0) + value / args.batches
        for key, value in batch_values.items():
            values[key] = values.get(key, 0.0) + value / args.batches

    lines = [f"checkpoint {args.checkpoint}; {args.batches} training batches of {module.config.data.batch_size}",
             f"per window: next-measure NLL (one sample) {values['nll']:.2f} nats, ELBO objective {values['elbo']:.1f}",
             f"{'term':8s} {'value':>9s} {'|grad|':>9s} {'|grad|/|grad ELBO|':>19s}   weight for a share of "
             + ", ".join(f"{share:.0%}" for share in SHARES)]
    lines.append(f"{'elbo':8s} {values['elbo']:9.2f} {totals['elbo']:9.2f} {1.0:19.4f}")
    for name in TERMS:
        ratio = totals[name] / totals["elbo"]
        weights = ", ".join(f"{share / ratio:.3g}" for share in SHARES)
        lines.append(f"{name:8s} {values[name]:9.3f} {totals[name]:9.2f} {ratio:19.4f}   {weights}")
    for grid, (term, weights) in DOSE_WEIGHTS.items():
        ratio = totals[term] / totals["elbo"]
        lines.append(f"grid {grid}: " + ", ".join(f"w={w:g} → share {w * ratio:.1%}" for w in weights))
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
