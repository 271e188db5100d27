"""Harmonization beside Bach: the soprano of each held-out chorale given, the other voices written.

    python benchmarks/harmonize_statistics.py CKPT [CKPT ...] [--split test] [--measures 16] [--draws 3]

Every chorale of the split with at least ``--measures`` measures keeps its soprano for its first
``--measures`` measures; the model writes alto, tenor and bass measure by measure (``rmvae
generate --task harmonize`` with the checkpoint's default decoding, :func:`rmvae.tasks.default_sampling`),
``--draws`` times with seeds 0, 1, …, and the musical statistics of the whole result stand beside
Bach's own four voices over the same measures. Goals: dissonance within 10 % of Bach's, parallel
fifths/octaves ≤ 0.005 per note, ≤ 1 % of notes out of range.
"""
from __future__ import annotations

from pathlib import Path

from dataclasses import replace

import numpy as np
import torch

from common import checkpoints_parser, publish  # benchmarks/ is the script's folder
from rmvae.evaluation import load_checkpoint, test_datamodule
from rmvae.intervals import mean_ci
from rmvae.metrics import STATISTICS, musical_statistics
from rmvae.tasks import Composer, default_sampling

GOALS = "dissonance within 10 % of Bach's, parallel_perfects_per_note ≤ 0.005, out_of_range_share ≤ 0.01"


def harmonize_rows(module, split: str, n_measures: int, draws: int, no_parallels: bool = False,
                   dissonance_penalty: float | None = None) -> tuple[list[dict], list[dict]]:
    """Per chorale: Bach's statistics and the mean over draws of the harmonization's."""
    datamodule = test_datamodule(module)
    bach_rows, model_rows = [], []
    for piece in datamodule.pieces[split]:
        if len(piece.tokens) < n_measures:
            continue
        real = datamodule.datasets[split].measures_of(piece)[:n_measures]  # (T, V, S)
        notes = module.encoding.to_notes(real, module.pitch_range)
        bach_rows.append(musical_statistics(notes, module.n_voices, 0, n_measures, key_shift=piece.key_shift))
        melody = real[:, :1]
        draws_rows = []
        for draw in range(draws):
            default = default_sampling(module, seed=draw, task="harmonize")
            sampling = replace(default, no_parallels=no_parallels or default.no_parallels,
                               dissonance_penalty=default.dissonance_penalty if dissonance_penalty is None
                               else dissonance_penalty)
            generated = Composer(module, sampling).harmonize(melody, 0, piece.key_shift).measures
            assert np.array_equal(generated[:, 0], real[:, 0]), "the melody must come out unchanged"
            notes = module.encoding.to_notes(generated, module.pitch_range)
            draws_rows.append(musical_statistics(notes, module.n_voices, 0, n_measures, key_shift=piece.key_shift))
            if sampling.temperature == 0 and sampling.latent_temperature == 0:
                break  # greedy: every draw is the same
        model_rows.append({s: float(np.nanmean([row[s] for row in draws_rows])) for s in STATISTICS})
    return bach_rows, model_rows


def main() -> None:
    parser = checkpoints_parser(__doc__, "test")
    parser.add_argument("--measures", type=int, default=16)
    parser.add_argument("--no-parallels", action="store_true",
                        help="forbid parallel fifths/octaves even where the default decoding allows them")
    parser.add_argument("--dissonance-penalty", type=float, default=None, metavar="NATS",
                        help="the decoding's dissonance penalty instead of the default's (rmvae generate's option)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [f"harmonize the soprano of the {args.split} chorales of ≥ {args.measures} measures, "
             f"{args.draws} draws each (default decoding); mean [95 % t-interval over chorales]. Goals: {GOALS}"]
    for path in args.checkpoints:
        module = load_checkpoint(path)
        bach, model = harmonize_rows(module, args.split, args.measures, args.draws, args.no_parallels,
                                     args.dissonance_penalty)
        decoding = default_sampling(module, task="harmonize")
        decoding = replace(decoding, no_parallels=args.no_parallels or decoding.no_parallels)
        if args.dissonance_penalty is not None:
            decoding = replace(decoding, dissonance_penalty=args.dissonance_penalty)
        lines.append(f"{path}: {len(bach)} chorales, decoding {decoding}")
        for statistic in STATISTICS:
            cells = []
            for rows in (bach, model):
                mean, low, high = mean_ci([row[statistic] for row in rows])
                cells.append(f"{mean:.4f} [{low:.4f}, {high:.4f}]")
            lines.append(f"  {statistic:28s} bach {cells[0]:28s} model {cells[1]}")
    suffix = ("_no_parallels" if args.no_parallels else "") + \
        (f"_penalty{args.dissonance_penalty:g}" if args.dissonance_penalty is not None else "")
    publish(lines, Path(__file__).parent / "results" / f"harmonize_statistics_{args.split}{suffix}.txt")


if __name__ == "__main__":
    main()
