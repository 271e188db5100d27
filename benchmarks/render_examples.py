"""Render the listening examples of the docs: a continuation and a harmonization of a test chorale.

    python benchmarks/render_examples.py CKPT [--out docs/media] [--chorale-index 0] [--seed 0] [--seconds 20]

The test chorale (the ``--chorale-index``-th of the test split with ≥ 16 measures) is continued
from its first 8 measures for 8 more, and its soprano is harmonized (alto, tenor and bass written
measure by measure), both with the checkpoint's default decoding (:func:`rmvae.tasks.default_sampling`)
and ``--seed``. Each example is written as MIDI (original key), a pianoroll PNG (generated
voice-measures outlined) and a WAV of its first ``--seconds`` seconds; its musical statistics are
printed beside Bach's over the same measures.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.io import wavfile

from rmvae.evaluation import load_checkpoint, test_datamodule
from rmvae.metrics import STATISTICS, musical_statistics
from rmvae.render import midi_to_wav, notes_to_midi, pianoroll_png
from rmvae.tasks import Composer, Piece, default_sampling

SEED_MEASURES, NEW_MEASURES = 8, 8


def write_example(module, measures: np.ndarray, generated: np.ndarray, piece, out: Path, title: str,
                  seconds: float) -> dict[str, float]:
    notes = module.encoding.to_notes(measures, module.pitch_range)
    notes_to_midi(notes, out, key_shift=piece.key_shift, n_voices=module.n_voices)
    first = int(np.argmax(generated.any(axis=1)))
    pianoroll_png(notes, out.with_suffix(".png"), module.n_voices, seed_measures=first, title=title)
    wav = out.with_suffix(".wav")
    midi_to_wav(out, wav)
    rate, audio = wavfile.read(wav)
    wavfile.write(wav, rate, audio[: int(rate * seconds)])  # a short excerpt keeps the docs small
    return musical_statistics(notes, module.n_voices, first, len(measures) - first, key_shift=piece.key_shift)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", type=Path, default=Path("docs/media"))
    parser.add_argument("--chorale-index", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    module = load_checkpoint(args.checkpoint)
    datamodule = test_datamodule(module)
    long = [p for p in datamodule.pieces["test"] if len(p.tokens) >= SEED_MEASURES + NEW_MEASURES]
    piece = long[args.chorale_index]
    real = datamodule.datasets["test"].measures_of(piece)[:SEED_MEASURES + NEW_MEASURES]
    sampling = default_sampling(module, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    composer = Composer(module, sampling)
    start = Piece(real[:SEED_MEASURES], np.zeros((SEED_MEASURES, module.n_voices), bool), piece.key_shift)
    continued = composer.complete(start, NEW_MEASURES)
    harmonizing = default_sampling(module, args.seed, "harmonize")
    harmonized = Composer(module, harmonizing).harmonize(real[:, :1], 0, piece.key_shift)
    bach_notes = module.encoding.to_notes(real, module.pitch_range)
    rows = {"bach, measures 9–16": musical_statistics(bach_notes, module.n_voices, SEED_MEASURES, NEW_MEASURES,
                                                       key_shift=piece.key_shift),
            "continuation": write_example(module, continued.measures, continued.generated, piece,
                                          args.out / "continuation.mid",
                                          f"{piece.name}: 8 measures of Bach, 8 written", args.seconds),
            "bach, measures 1–16": musical_statistics(bach_notes, module.n_voices, 0, len(real),
                                                      key_shift=piece.key_shift),
            "harmonization": write_example(module, harmonized.measures, harmonized.generated, piece,
                                           args.out / "harmonization.mid",
                                           f"{piece.name}: Bach's soprano, alto, tenor and bass written", args.seconds)}
    print(f"{piece.name}, decoding {sampling}; harmonization {harmonizing}")
    print(f"{'':22s}" + " ".join(f"{s[:12]:>12s}" for s in STATISTICS))
    for name, row in rows.items():
        print(f"{name:22s}" + " ".join(f"{row[s]:12.4f}" for s in STATISTICS))


if __name__ == "__main__":
    main()
