"""Which way of drawing tokens makes a measure writer's continuations sound most like Bach?

    python benchmarks/decoding_choice.py CKPT [CKPT ...] [--split val] [--draws 3]

Every checkpoint (an RMVAE with ``model.measure_decoder=autoregressive``, or the autoregressive
baseline) continues each chorale of the split with ≥ 16 measures from its first 8 for 8 more, as
``rmvae evaluate`` does, under every candidate decoding: greedy, and tokens sampled at temperature
T with nucleus p (top-p), the latent at its predicted mean (τ = 0) or drawn from it (τ = 1).

The rule (:func:`distance_to_bach`): each statistic's distance to Bach's value on the same
measures, in units of its tolerance — 10 % of Bach's value for distinct pitches per voice,
note-length entropy, onsets per measure and dissonance; 0.02 for the repeat rate, 0.005 for
parallel fifths/octaves per note and 0.01 for the share of notes out of range (the musical goals)
— averaged over the statistics and the checkpoints. The candidate with the smallest distance is
the default decoding of ``rmvae generate`` (:data:`rmvae.tasks.WRITER_DECODING`); it is chosen on
the validation split, so the test split stays untouched for the reported numbers. Only the
candidates every checkpoint ran compete (the autoregressive baseline has no latent to draw).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import checkpoints_parser, publish  # benchmarks/ is the script's folder
from rmvae.evaluation import continuation_statistics, load_checkpoint, mode_factory, test_datamodule
from rmvae.tasks import WRITER_DECODING, Sampling

# statistic → tolerance: relative to Bach's value (a float ≤ 1 read as a share) or absolute ("abs").
TOLERANCES = {"distinct_pitches_per_voice": ("rel", 0.10), "note_length_entropy": ("rel", 0.10),
              "onsets_per_measure": ("rel", 0.10), "dissonance_rate": ("rel", 0.10),
              "repeat_rate": ("abs", 0.02), "parallel_perfects_per_note": ("abs", 0.005),
              "out_of_range_share": ("abs", 0.01)}


def candidates(temperatures=(0.8, 0.9, 1.0), top_ps=(0.9, 0.95, 1.0), latents=(0.0, 1.0),
               penalties=(0.0,)) -> dict[str, Sampling]:
    """Greedy and every combination of token temperature, nucleus, latent temperature and
    dissonance penalty λ (the name shows λ only where it is not 0)."""
    modes = {"greedy": Sampling()}
    for penalty in penalties:
        for latent in latents:
            for temperature in temperatures:
                for top_p in top_ps:
                    name = f"T={temperature} p={top_p} τ={latent:g}" + (f" λ={penalty:g}" if penalty else "")
                    modes[name] = Sampling(temperature=temperature, top_p=top_p, latent_temperature=latent,
                                           dissonance_penalty=penalty)
    return modes


def distance_to_bach(results: dict[str, float], mode: str) -> float:
    """Mean over :data:`TOLERANCES` of |mode − Bach| / tolerance (1 = at the edge of the goal)."""
    distances = []
    for statistic, (kind, tolerance) in TOLERANCES.items():
        value, bach = results[f"{mode}/{statistic}"], results[f"bach/{statistic}"]
        scale = tolerance * abs(bach) if kind == "rel" else tolerance
        distances.append(abs(value - bach) / scale)
    return float(np.mean(distances))


def main() -> None:
    parser = checkpoints_parser(__doc__, "val")
    parser.add_argument("--no-parallels", action="store_true", help="every decoding forbids parallel fifths/octaves")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.8, 0.9, 1.0])
    parser.add_argument("--top-ps", type=float, nargs="+", default=[0.9, 0.95, 1.0])
    parser.add_argument("--latent-temperatures", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--dissonance-penalties", type=float, nargs="+", default=[0.0], metavar="NATS",
                        help="the candidates' dissonance penalties λ (rmvae generate --dissonance-penalty)")
    parser.add_argument("--name", default="", help="suffix of the result file's name")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for path in args.checkpoints:
        module = load_checkpoint(path)
        if not module.config.model.writes:
            parser.error(f"{path} has a factorised decoder: its default decoding is greedy (nucleus sampling needs "
                         f"a measure writer)")
        datamodule = test_datamodule(module)
        grid = candidates(args.temperatures, args.top_ps, args.latent_temperatures, args.dissonance_penalties)
        modes = {name: replace(sampling, no_parallels=args.no_parallels) for name, sampling in grid.items()}
        if not module.model.has_latents:  # the autoregressive baseline has no latent to draw
            modes = {name: sampling for name, sampling in modes.items() if sampling.latent_temperature == 0}
        factories = {name: mode_factory(module, sampling) for name, sampling in modes.items()}
        results = continuation_statistics(module, datamodule, args.split, modes=factories, draws=args.draws)
        for name in modes:
            rows.append({"checkpoint": path, "mode": name, "distance": distance_to_bach(results, name),
                         **{s: results[f"{name}/{s}"] for s in TOLERANCES}})
        rows.append({"checkpoint": path, "mode": "bach", "distance": 0.0, **{s: results[f"bach/{s}"] for s in TOLERANCES}})
        print(f"{path}: {int(results['continuations'])} chorales × {args.draws} draws", flush=True)
    table = pd.DataFrame(rows)
    # Only the modes every checkpoint ran compete (a model without latents has no τ = 1 modes).
    common = table.groupby("mode", sort=False)["checkpoint"].nunique() == len(args.checkpoints)
    per_checkpoint = table.pivot_table(index="mode", columns="checkpoint", values="distance", sort=False)
    summary = (table[table["mode"].isin(common[common].index)].groupby("mode", sort=False)
               .mean(numeric_only=True).sort_values("distance"))
    best = summary.drop(index="bach").index[0]
    lines = [summary.round(4).to_string(), "", "distance per checkpoint:", per_checkpoint.round(3).to_string(), "",
             f"most like Bach on the {args.split} split: {best} (distance {summary.loc[best, 'distance']:.2f} "
             f"tolerances, mean over {len(args.checkpoints)} checkpoint(s))",
             f"rmvae.tasks.WRITER_DECODING today: T={WRITER_DECODING.temperature} p={WRITER_DECODING.top_p} "
             f"τ={WRITER_DECODING.latent_temperature:g} λ={WRITER_DECODING.dissonance_penalty:g}"]
    suffix = ("_no_parallels" if args.no_parallels else "") + (f"_{args.name}" if args.name else "")
    publish(lines, Path(__file__).parent / "results" / f"decoding_choice_{args.split}{suffix}.txt")


if __name__ == "__main__":
    main()
