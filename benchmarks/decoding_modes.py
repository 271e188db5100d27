"""Can decoding alone reach the musical goals? Continuation statistics of trained checkpoints
under several ways of drawing each generated measure, beside the real music.

    python benchmarks/decoding_modes.py CKPT [CKPT ...] [--direct CKPT ...] [--sampling-seeds 3]

Every checkpoint continues each test chorale of ≥ 16 measures from its first 8 for 8 more
(as ``rmvae evaluate`` does). Each mode runs with ``--sampling-seeds`` seeds, one draw per chorale
and seed (``rmvae evaluate`` averages 3); a row is the mean and SD over checkpoints × seeds. The
modes beyond ``rmvae evaluate``'s own three:

- ``best of N``: N candidates (a latent drawn from the prediction, tokens sampled), keep the one
  the model itself finds most likely (its importance-weighted −log p(measure | past));
- ``voice by voice``: bass, soprano, alto, tenor, each drawn with the voices drawn before it
  known in the target measure (the product of experts conditions on them, as fill does), so
  a voice can follow the others' notes.

The musical goals for latent-sampled continuations (docs/results.md): distinct pitches ≥ 7, repeat ≤ 0.10,
note-length entropy ≥ 1.0 bit, dissonance 0.30–0.45.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import publish  # benchmarks/ is the script's folder
from rmvae.evaluation import continuation_statistics, decoding_modes, load_checkpoint, test_datamodule
from rmvae.model.rmvae import draw_latents
from rmvae.module import eval_generator
from rmvae.tasks import Composer, Sampling

STATISTICS = ("distinct_pitches_per_voice", "repeat_rate", "note_length_entropy", "dissonance_rate")
BASS_FIRST = (3, 0, 1, 2)


class BestOfN(Composer):
    """Draws ``n`` candidate measures and keeps the one with the lowest model NLL given the past."""

    def __init__(self, module, sampling: Sampling, n: int, nll_samples: int = 16):
        super().__init__(module, sampling)
        self.n, self.nll_samples = n, nll_samples

    @torch.inference_mode()
    def predict(self, measures, present, target, known=None):
        inputs, mask = self._window(measures, present, target)  # (1, W, V, S), (1, W, V)
        output = self.model(inputs, mask, sample=False, reconstruct=False)
        z = draw_latents(output.target_mu, output.target_logvar, self.n, self._generator,
                         scale=self.sampling.latent_temperature)[:, 0]  # (N, Z)
        state = output.state.expand(self.n, *output.state.shape[1:])
        candidates = self.model.decode_tokens(self.model.decode(z, state), temperature=self.sampling.temperature,
                                              top_k=self.sampling.top_k, generator=self._generator)  # (N, V, S)
        batch = {"inputs": inputs.expand(self.n, *inputs.shape[1:]), "input_mask": mask.expand(self.n, *mask.shape[1:]),
                 "target": candidates, "target_mask": torch.ones(self.n, self.n_voices, dtype=torch.bool)}
        nll = self.module.predictive_nll(batch, self.nll_samples, eval_generator(target))  # (N,)
        return candidates[int(nll.argmin())].numpy()


class VoiceByVoice(Composer):
    """Each voice of a new measure drawn given the voices already drawn in it."""

    def __init__(self, module, sampling: Sampling, order: tuple[int, ...] = BASS_FIRST):
        super().__init__(module, sampling)
        self.order = order

    def predict(self, measures, present, target, known=None):
        measures = measures.copy()
        known_now = np.zeros(self.n_voices, bool) if known is None else np.array(known, dtype=bool)
        for voice in self.order:
            if not known_now[voice]:
                measures[target][voice] = super().predict(measures, present, target,
                                                          known_now if known_now.any() else None)[voice]
                known_now[voice] = True
        return measures[target]


def _seeded_as(kind, module, sampling: Sampling, *args):
    """A factory of ``kind(module, sampling with the draw's seed, *args)``, as :func:`decoding_modes` gives."""
    return lambda seed: kind(module, replace(sampling, seed=seed), *args)


def extra_modes(module) -> dict:
    """Mode name → factory taking the draw's seed (see :func:`rmvae.evaluation.continuation_statistics`)."""
    latent = partial(Sampling, latent_temperature=1.0)
    modes = {f"latent, tokens T={t}" + (f" top-{k}" if k else ""): _seeded_as(Composer, module, latent(temperature=t, top_k=k))
             for t, k in ((0.5, None), (1.0, 2), (1.0, 3))}
    modes.update({f"best of {n}, T=1" + (f" top-{k}" if k else ""): _seeded_as(BestOfN, module, latent(temperature=1.0, top_k=k), n)
                  for n, k in ((8, None), (32, None), (16, 2))})
    modes.update({f"voice by voice, T={t}" + (f" top-{k}" if k else ""): _seeded_as(VoiceByVoice, module, latent(temperature=t, top_k=k))
                  for t, k in ((0.0, None), (1.0, None), (1.0, 2))})
    return modes


def rows_of(checkpoint: str, sampling_seeds: int, with_extra: bool) -> list[dict]:
    module = load_checkpoint(checkpoint)
    datamodule = test_datamodule(module)
    label = "direct predictor" if not module.model.has_latents else "model"
    rows = []
    for seed in range(sampling_seeds):
        modes = decoding_modes(module) | (extra_modes(module) if with_extra else {})
        stats = continuation_statistics(module, datamodule, seed=seed, modes=modes, draws=1)
        for mode in (*modes, "bach"):
            name = "Bach (the same chorales)" if mode == "bach" else f"{label}: {mode}"
            rows.append({"mode": name, "checkpoint": checkpoint, "seed": seed, "pieces": stats["continuations"],
                         **{s: stats[f"{mode}/{s}"] for s in STATISTICS}})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="RMVAE checkpoints (e.g. one per training seed)")
    parser.add_argument("--direct", nargs="*", default=[], help="direct-predictor checkpoints, the baseline")
    parser.add_argument("--sampling-seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default="benchmarks/results/decoding_modes_cpu.txt")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [row for ckpt in args.checkpoints for row in rows_of(ckpt, args.sampling_seeds, True)]
    rows += [row for ckpt in args.direct for row in rows_of(ckpt, args.sampling_seeds, False)]
    table = pd.DataFrame(rows)
    order = list(dict.fromkeys(table["mode"]))
    summary = table.groupby("mode", sort=False)[list(STATISTICS)].agg(["mean", "std"]).loc[order]
    pieces = int(table["pieces"].iloc[0])
    lines = [f"Continuations of {pieces} test chorales (8 real + 8 generated measures); mean (SD) over "
             f"{len(args.checkpoints)} checkpoint(s) × {args.sampling_seeds} sampling seed(s); direct predictor: "
             f"{len(args.direct)} checkpoint(s)", "goals: distinct ≥ 7, repeat ≤ 0.10, entropy ≥ 1.0, dissonance 0.30–0.45", "",
             f"{'mode':<46}" + "".join(f"{s.replace('_per_voice', ''):>22}" for s in STATISTICS)]
    for mode, row in summary.iterrows():
        lines.append(f"{mode:<46}" + "".join(f"{row[(s, 'mean')]:>14.3f} ({row[(s, 'std')]:.3f})" for s in STATISTICS))
    publish(lines, Path(args.results))


if __name__ == "__main__":
    main()
