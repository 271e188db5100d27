"""Recompute the anchors table (anchors/README.md): thesis samples vs real Bach chorales, measures 9–16.

    python benchmarks/anchor_statistics.py [--anchors PATH] [--workers N] [--csv OUT.csv]

The thesis column comes from ``anchors/thesis-samples`` (18 MIDI files, :func:`folder_statistics`).
The Bach column parses music21's Bach chorales (four parts, 4/4 only, pickups padded so measure
k of the grid is the k-th full bar, read with :func:`rmvae.data.midi.read_music21`, not
transposed) and keeps those with at least 16 measures. Parsing takes a minute or two, which
is why this is a script and not a test. The README has no value of the two voice-leading
statistics (parallel fifths/octaves per note, share of notes out of the voices' ranges): their
README columns are empty.
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from rmvae.metrics import STATISTICS, folder_statistics, musical_statistics, summarize

FIRST_MEASURE, N_MEASURES, N_VOICES = 8, 8, 4  # measures 9–16, counting from 1
README = {"distinct_pitches_per_voice": (3.9, 9.6), "repeat_rate": (0.42, 0.02),
          "note_length_entropy": (0.43, 1.40), "onsets_per_measure": (3.5, 4.3),
          "dissonance_rate": (0.39, 0.37)}  # (thesis samples, real Bach) from anchors/README.md


def _bach_row(path: str) -> dict:
    from rmvae.data.midi import ScoreError, read_music21

    try:
        score = read_music21(path, n_voices=N_VOICES, time_signature="4/4")
    except ScoreError as error:
        return dict(file=Path(path).name, skipped=f"{type(error).__name__}: {error}")
    if score.n_measures < FIRST_MEASURE + N_MEASURES:
        return dict(file=Path(path).name, skipped=f"too short: {score.n_measures} measures")
    return dict(file=Path(path).name, n_measures=score.n_measures, pickup_steps=score.pickup_steps,
                **musical_statistics(score.notes, N_VOICES, FIRST_MEASURE, N_MEASURES, key_shift=score.key_shift))


def bach_statistics(workers: int = 2) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Per-chorale statistics of music21's Bach chorales, and the skipped files with reasons."""
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getComposer("bach")
                   if p.suffix.lower() in {".mxl", ".xml", ".musicxml", ".krn"})
    with ProcessPoolExecutor(workers) as pool:
        rows = list(pool.map(_bach_row, paths, chunksize=8))
    skipped = [(row["file"], row["skipped"]) for row in rows if "skipped" in row]
    table = pd.DataFrame([row for row in rows if "skipped" not in row])
    return table, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "anchors" / "thesis-samples")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--csv", type=Path, default=None, help="write the per-chorale Bach table here")
    args = parser.parse_args()

    samples = folder_statistics(args.anchors, N_VOICES, FIRST_MEASURE, N_MEASURES)
    began = time.perf_counter()
    bach, skipped = bach_statistics(args.workers)
    seconds = time.perf_counter() - began
    if args.csv:
        bach.to_csv(args.csv, index=False)
    bach_summary = summarize(bach)
    reasons = pd.Series([reason.split(":")[0] for _, reason in skipped]).value_counts()
    print(f"thesis samples: {len(samples.table)} files, {len(samples.skipped)} skipped")
    print(f"Bach: {len(bach)} chorales with ≥ {FIRST_MEASURE + N_MEASURES} measures "
          f"({len(skipped)} skipped: {reasons.to_dict()}), parsed in {seconds:.0f} s")
    table = pd.DataFrame({
        "samples (ours)": samples.summary["mean"],
        "samples (README)": pd.Series({k: v[0] for k, v in README.items()}),
        "Bach (ours)": bach_summary["mean"],
        "Bach 95% CI": pd.Series({name: f"[{row.low:.3g}, {row.high:.3g}]" for name, row in bach_summary.iterrows()}),
        "Bach (README)": pd.Series({k: v[1] for k, v in README.items()}),
    }).loc[list(STATISTICS)]
    print(table.round(4).to_string())  # 4 decimals: parallels are a few per thousand notes


if __name__ == "__main__":
    main()
