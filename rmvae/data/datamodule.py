"""Windows of measures for training: ``n_measures`` inputs of all voices → the target measure.

A window whose target is measure ``j`` reads measures ``j - offset - n_measures + 1 … j - offset``;
measures before the start of the piece are left-padded with rests and masked out, so the model
learns to start from short contexts and tasks can begin at measure 1. Windows never cross pieces.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rmvae.config import STEPS_PER_MEASURE, DataConfig
from rmvae.data.corpus import Corpus, load_corpus, pitch_range_of
from rmvae.data.notes import PitchRange, notes_to_tokens
from rmvae.data.sampling import EpochShuffle
from rmvae.encodings import MONO, Encoding, encoding_named

SPLITS = ("train", "val", "test")


@dataclass
class EncodedPiece:
    name: str
    tokens: np.ndarray  # (T, V, S) int16 monophonic tokens
    durations: np.ndarray  # (T, V, S) int16: note length in steps at onsets, 0 elsewhere
    key_shift: int


def low_voices(n_voices: int) -> tuple[int, ...]:
    """Voices that keep their lowest note of a chord: the bass, when there is more than one voice."""
    return (n_voices - 1,) if n_voices > 1 else ()


def encode_piece(score, pitch_range: PitchRange) -> tuple[EncodedPiece, int]:
    tokens, n_folded = notes_to_tokens(score.notes, score.n_measures, score.n_voices, pitch_range,
                                       low_voices(score.n_voices))
    return EncodedPiece(score.name, tokens, onset_durations(tokens, pitch_range), score.key_shift), n_folded


def onset_durations(tokens: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
    """Length in steps of each note at its onset (the polyphonic encoding's duration)."""
    n_measures, n_voices, steps = tokens.shape
    flat = tokens.transpose(1, 0, 2).reshape(n_voices, -1)
    durations = np.zeros_like(flat, dtype=np.int16)
    for voice in range(n_voices):
        run = 0
        for step in range(flat.shape[1] - 1, -1, -1):  # walk backwards accumulating holds
            token = flat[voice, step]
            if token == pitch_range.hold:
                run += 1
            elif token < pitch_range.n_pitches:
                durations[voice, step] = run + 1
                run = 0
            else:
                run = 0
    return durations.reshape(n_voices, n_measures, steps).transpose(1, 0, 2).copy()


def window_indices(n_measures_per_piece: list[int], offset: int) -> np.ndarray:
    """(piece, target measure) pairs: every target with at least one real input measure."""
    pairs = [(piece, target) for piece, length in enumerate(n_measures_per_piece) for target in range(offset, length)]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


class WindowDataset(Dataset):
    """Items are dicts: ``inputs`` (T, V, S) or (T, V, S, P, 2), ``input_mask`` (T, V), ``target``, ``target_mask`` (V)."""

    def __init__(self, pieces: list[EncodedPiece], n_measures: int, offset: int, pitch_range: PitchRange,
                 encoding: Encoding | str = MONO):
        self.pieces, self.n_measures, self.offset = pieces, n_measures, offset
        self.pitch_range, self.encoding = pitch_range, encoding_named(encoding)
        self.windows = window_indices([len(p.tokens) for p in pieces], offset)
        n_voices = pieces[0].tokens.shape[1] if pieces else 0
        # Pad every piece on the left with n_measures rest measures so a window is one slice.
        pad = np.full((n_measures, n_voices, STEPS_PER_MEASURE), pitch_range.rest, dtype=np.int16)
        self._padded = [np.concatenate([pad, p.tokens]) for p in pieces]
        self._padded_durations = [np.concatenate([np.zeros_like(pad), p.durations]) for p in pieces]

    def __len__(self) -> int:
        return len(self.windows)

    def measures_of(self, piece: EncodedPiece) -> np.ndarray:
        """A whole piece in this dataset's encoding: tokens ``(T, V, S)`` or poly ``(T, V, S, P, 2)``."""
        return self.encoding.measures_of(piece.tokens, piece.durations, self.pitch_range)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        piece, target = self.windows[index]
        padded = self._padded[piece]
        last_input = target - self.offset + self.n_measures  # index in the padded array
        first_input = last_input - self.n_measures + 1
        inputs = padded[first_input:last_input + 1]  # (T, V, S)
        target_tokens = padded[target + self.n_measures]  # (V, S)
        input_mask = np.zeros(inputs.shape[:2], dtype=bool)
        real_from = max(0, self.n_measures - first_input)  # padded rows come first
        input_mask[real_from:] = True
        item = {"input_mask": torch.from_numpy(input_mask),
                "target_mask": torch.ones(inputs.shape[1], dtype=torch.bool),
                "piece": torch.tensor(piece), "target_index": torch.tensor(target)}
        durations = self._padded_durations[piece]  # views: only the poly encoding reads them
        item.update(self.encoding.window_fields(inputs, target_tokens, durations[first_input:last_input + 1],
                                                durations[target + self.n_measures], self.pitch_range))
        return item


class ChoraleDataModule(L.LightningDataModule):
    """Corpus → split by piece → shared pitch range → encoded windows, for any ``DataConfig``."""

    def __init__(self, config: DataConfig, cache_dir: str | Path | None = None, progress: bool = False,
                 shuffle_seed: int = 0):
        super().__init__()
        self.config = config
        self.shuffle_seed = shuffle_seed  # the training seed: epoch e's order is a function of (seed, e)
        self.cache_dir = cache_dir
        self.progress = progress
        self.corpus: Corpus | None = None
        self.pitch_range: PitchRange | None = None
        self.split_indices: dict[str, list[int]] = {}
        self.pieces: dict[str, list[EncodedPiece]] = {}
        self.datasets: dict[str, WindowDataset] = {}
        self.n_folded: dict[str, int] = {}

    def prepare_data(self) -> None:
        load_corpus(self.config, self.cache_dir, progress=self.progress)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        config = self.config
        self.corpus = load_corpus(config, self.cache_dir, progress=self.progress)
        self.split_indices = self.corpus.split(config.split, config.seed)
        if config.max_pieces is not None:  # quick profile: fewer training pieces, same val/test
            self.split_indices["train"] = self.split_indices["train"][:config.max_pieces]
        if config.pitch_range is not None:
            self.pitch_range = PitchRange(*config.pitch_range)
        else:
            self.pitch_range = pitch_range_of([self.corpus.scores[i] for i in self.split_indices["train"]])
        for split in SPLITS:
            encoded = [encode_piece(self.corpus.scores[i], self.pitch_range) for i in self.split_indices[split]]
            self.pieces[split] = [piece for piece, _ in encoded]
            self.n_folded[split] = sum(folded for _, folded in encoded)
            self.datasets[split] = WindowDataset(self.pieces[split], config.n_measures, config.offset,
                                                 self.pitch_range, config.encoding)

    @property
    def encoding_info(self) -> dict:
        """What a checkpoint must remember to encode and decode like this data."""
        return {"encoding": self.config.encoding, "low": self.pitch_range.low, "high": self.pitch_range.high,
                "n_voices": self.config.n_voices}

    def _loader_options(self) -> dict:
        return dict(batch_size=self.config.batch_size, num_workers=self.config.num_workers,
                    persistent_workers=self.config.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        return DataLoader(dataset, sampler=EpochShuffle(len(dataset), self.shuffle_seed), **self._loader_options())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["val"], shuffle=False, **self._loader_options())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], shuffle=False, **self._loader_options())

    def summary(self) -> dict:
        """The numbers `rmvae data` prints."""
        corpus = self.corpus
        return {
            "source": self.config.source,
            "pieces_used": len(corpus.scores),
            "pieces_skipped": len(corpus.skipped),
            "skipped": corpus.skipped,
            "measures": int(sum(s.n_measures for s in corpus.scores)),
            "pieces": {split: len(self.split_indices[split]) for split in SPLITS},
            "windows": {split: len(self.datasets[split]) for split in SPLITS},
            "pitch_range": [self.pitch_range.low, self.pitch_range.high],
            "notes_octave_shifted": int(sum(self.n_folded.values())),
            "with_pickup": int(sum(s.pickup_steps > 0 for s in corpus.scores)),
            "transposed": self.config.transpose,
            "from_cache": corpus.parsed_files == 0,
            "files_parsed": corpus.parsed_files,
            "seconds": round(corpus.seconds, 3),
            "cache": str(corpus.cache_path),
        }
