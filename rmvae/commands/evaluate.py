"""`rmvae evaluate`: a checkpoint on held-out pieces, or the musical statistics of a MIDI folder."""
from __future__ import annotations

import json
import math

# Statistics whose values are a few thousandths: printed with one more decimal so that they do not round to 0.
RARE_STATISTICS = ("parallel_perfects_per_note", "out_of_range_share")
# The rows of the next-measure table: label → the results' prefix (the model's own numbers have none).
# The trained baselines' prefixes are their model.kind (rmvae.evaluation.TRAINED_BASELINES).
PREDICTION_ROWS = {"model": "", "positional unigram": "unigram_", "direct predictor": "direct_",
                   "autoregressive baseline": "autoregressive_"}
LABEL_WIDTH = max(map(len, PREDICTION_ROWS)) + 1


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="a .ckpt written by `rmvae train`")
    parser.add_argument("--split", default="test", choices=["test", "val", "train"])
    parser.add_argument("--midi-folder", help="instead of a checkpoint: statistics of every MIDI file in a folder")
    parser.add_argument("--voices", type=int, default=4, help="voices per file (--midi-folder)")
    parser.add_argument("--first-measure", type=int, default=9, help="first measure analysed, 1-based (--midi-folder)")
    parser.add_argument("--n-measures", type=int, default=8, help="measures analysed (--midi-folder)")
    parser.add_argument("--seed-measures", type=int, default=8, help="real measures that seed each continuation")
    parser.add_argument("--continue-measures", type=int, default=8,
                        help="measures generated and compared per continuation (pieces shorter than "
                             "seed + continue measures are left out)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled continuations")
    parser.add_argument("--sample", help="also write one sampled continuation to this .mid (+ .png)")
    parser.add_argument("--direct", help="a direct predictor's .ckpt (`rmvae train --model.kind=direct`, same data) "
                                         "to report beside the model; the positional unigram is always reported")
    parser.add_argument("--autoregressive", help="an autoregressive baseline's .ckpt (`rmvae train "
                                                 "--model.kind=autoregressive`, same data) to report beside the model")
    parser.add_argument("--draws", type=int, default=3,
                        help="draws per piece that each sampled continuation mode averages (default 3; greedy: one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def run(args) -> int:
    from pathlib import Path

    from rmvae.errors import UserError

    if args.midi_folder:
        return _run_folder(args)
    if not args.checkpoint:
        raise UserError("give a CHECKPOINT, or --midi-folder DIR")
    from rmvae.evaluation import evaluate_checkpoint

    results = evaluate_checkpoint(args.checkpoint, args.split, args.seed, Path(args.sample) if args.sample else None,
                                  seed_measures=args.seed_measures, continue_measures=args.continue_measures,
                                  direct_checkpoint=args.direct, autoregressive_checkpoint=args.autoregressive,
                                  draws=args.draws)
    if args.json:
        print(json.dumps({k: _clean(v) for k, v in results.items()}))
        return 0
    _print_prediction(results, args.split)
    _print_teacher_forced(results, args.split)
    _print_continuations(results)
    return 0


def _run_folder(args) -> int:
    """``--midi-folder``: the musical statistics of every MIDI file in a folder, as JSON or a table."""
    from pathlib import Path

    from rmvae.errors import UserError
    from rmvae.metrics import folder_statistics

    folder = Path(args.midi_folder)
    if not folder.is_dir():
        raise UserError(f"MIDI folder '{folder}' does not exist")
    if args.first_measure < 1 or args.n_measures < 1 or args.voices < 1:
        raise UserError("--first-measure (1-based), --n-measures and --voices must be at least 1")
    stats = folder_statistics(folder, args.voices, args.first_measure - 1, args.n_measures)
    if stats.table.empty:
        raise UserError(f"no usable MIDI file in '{folder}' ({len(stats.skipped)} skipped: "
                        + "; ".join(f"{name}: {why}" for name, why in stats.skipped[:3]) + ")")
    summary = {name: {k: _clean(float(v)) for k, v in row.items()} for name, row in stats.summary.iterrows()}
    if args.json:
        print(json.dumps({"files": len(stats.table), "skipped": [{"file": f, "reason": r} for f, r in stats.skipped],
                          "statistics": summary}))
        return 0
    last = args.first_measure + args.n_measures - 1
    print(f"{len(stats.table)} files, measures {args.first_measure}–{last}; {len(stats.skipped)} skipped")
    for name, why in stats.skipped:
        print(f"  skipped {name}: {why}")
    for name, row in stats.summary.iterrows():
        print(f"  {name:28s} {row['mean']:7.3f}  [{row['low']:.3f}, {row['high']:.3f}]")
    return 0


def _print_prediction(results: dict, split: str) -> None:
    """The next-measure table: the model beside each baseline evaluated, then what it gains on each."""
    print(f"next-measure prediction on the {split} split (NLL in nats per target measure, lower is better):")
    print(f"  {'':{LABEL_WIDTH}s} {'NLL':>8s} {'acc':>7s} {'onsets':>7s}")
    for label, prefix in PREDICTION_ROWS.items():
        if f"{split}/{prefix}nll" in results:
            cells = [results.get(f"{split}/{prefix}{key}", math.nan) for key in ("nll", "acc", "acc_onsets")]
            print(f"  {label:{LABEL_WIDTH}s} {cells[0]:8.2f} {cells[1]:7.3f} {cells[2]:7.3f}")
    for baseline in (prefix.rstrip("_") for prefix in PREDICTION_ROWS.values() if prefix):
        key = f"{split}/gain_vs_{baseline}"
        if key in results:
            print(f"  beats the {baseline} by {results[key]:.2f} nats [{results[key + '_ci_low']:.2f}, "
                  f"{results[key + '_ci_high']:.2f}] (95% CI over windows)")


def _print_teacher_forced(results: dict, split: str) -> None:
    """The other numbers measured with the true measures as input (accuracies, latent use, harmony)."""
    print("other teacher-forced numbers:")
    for key in ("acc_pitches", "acc_fill", "baseline_hold_acc", "baseline_repeat_acc", "recon_nll", "active_units",
                "kl_inputs", "harmony"):
        if f"{split}/{key}" in results:
            print(f"  {key:22s} {results[f'{split}/{key}']:.4f}")


def _print_continuations(results: dict) -> None:
    """The statistics of the continuations, one column per decoding mode beside Bach's, each with its interval."""
    from rmvae.metrics import STATISTICS

    draws = f"; sampled modes: mean of {int(results['draws'])} draws per piece" if "draws" in results else ""
    print(f"continuations of {int(results['continuations'])} pieces (mean [95% CI] over pieces{draws}):")
    modes = [m for m in ("greedy", "latent", "sampled", "bach") if f"{m}/repeat_rate" in results]
    print(f"  {'statistic':28s} " + " ".join(f"{m:>24s}" for m in modes))
    for statistic in (*STATISTICS, "pitch_class_distance"):
        digits = 4 if statistic in RARE_STATISTICS else 3
        cells = [f"{results[f'{m}/{statistic}']:.{digits}f} [{results[f'{m}/{statistic}_ci_low']:.{digits - 1}f}, "
                 f"{results[f'{m}/{statistic}_ci_high']:.{digits - 1}f}]" for m in modes]
        print(f"  {statistic:28s} " + " ".join(f"{c:>24s}" for c in cells))
