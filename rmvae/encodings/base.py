"""The :class:`Encoding` interface and :class:`Decoded`, the output heads' values.

An encoding says how a measure is written as tensors and everything that depends on it: the
encoders' input features, the decoders' output heads and the fields of :class:`Decoded` they
fill, the reconstruction loss, the pitch-class mass and rhythm term of the music losses, the
predictive mean over latent samples, symbols from heads (greedy or sampled), accuracy, the
training windows' fields, note conversion and silent measures. Implementations are stateless;
sizes (``n_pitches``, the pitch range) are arguments.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from rmvae.data.notes import PitchRange


@dataclass
class Decoded:
    """Decoder outputs for every voice; the fields of the other encoding are None.

    mono: ``pitch_logits (..., V, S, P+1)``, ``hold_logits (..., V, S)``;
    poly: ``activation_logits (..., V, S, P)``, ``duration (..., V, S, P)`` (≥ 0, sixteenths).
    """

    pitch_logits: Tensor | None = None
    hold_logits: Tensor | None = None
    activation_logits: Tensor | None = None
    duration: Tensor | None = None

    def map(self, fn) -> "Decoded":
        """``fn`` applied to every head this encoding has (the other fields stay None): reshape,
        slice or pick measures of all heads at once."""
        return Decoded(**{name: None if value is None else fn(value) for name, value in vars(self).items()})


class Encoding(ABC):
    """How measures are written as tensors (see the module docstring).

    Attributes:
        name: the config value (``data.encoding``, a checkpoint's ``encoding_info["encoding"]``).
        monophonic: a measure is one token per voice and step (the band player, random token
            seeds and the token baselines need it).
    """

    name: str
    monophonic: bool

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # --- what the encoders read ---------------------------------------------------------------

    @abstractmethod
    def n_features(self, n_pitches: int) -> int:
        """Per-step input features F."""

    @abstractmethod
    def features(self, x: Tensor, n_pitches: int) -> Tensor:
        """Measures ``(..., S[, P, 2])`` → encoder input ``(..., S, F)`` float."""

    # --- what the decoders write --------------------------------------------------------------

    @abstractmethod
    def build_heads(self, decoder: nn.Module, in_features: int, n_pitches: int) -> None:
        """Add the output heads to ``decoder`` (their attribute names are checkpoint keys)."""

    @abstractmethod
    def apply_heads(self, decoder: nn.Module, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Frames ``(N, S, H)`` → the two head outputs of ``decoder``."""

    @abstractmethod
    def as_decoded(self, first: Tensor, second: Tensor) -> Decoded:
        """The two head outputs (stacked over voices) as :class:`Decoded` fields."""

    @abstractmethod
    def recon_loss(self, decoded: Decoded, truth: Tensor, voice_mask: Tensor) -> Tensor:
        """−log p(truth | heads) summed over steps and present voices, per sample."""

    @abstractmethod
    def pitch_class_mass(self, decoded: Decoded, low: int) -> Tensor:
        """Sounding pitch-class mass ``(..., V, S, 12)`` of a prediction."""

    @abstractmethod
    def rhythm_loss(self, decoded: Decoded, truth: Tensor, truth_mask: Tensor) -> Tensor:
        """The rhythm term ``(B,)``: predicted onsets against the truth's onset steps."""

    @abstractmethod
    def predictive_mean(self, decoded: Decoded) -> Decoded:
        """Heads of ``n`` latent draws ``(n, ...)`` → the mixture's distribution, in the heads'
        own parametrisation (the mean of the probabilities, not of the logits)."""

    @abstractmethod
    def decode_tokens(self, decoded: Decoded, temperature: float = 0.0, top_k: int | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """Heads → measures: greedy at ``temperature == 0``, else sampled (``temperature ≥ 0``)."""

    # --- metrics ------------------------------------------------------------------------------

    @abstractmethod
    def step_hits(self, predicted: Tensor, truth: Tensor) -> Tensor:
        """Bool ``(..., V, S)``: steps whose decoded symbol is exactly the truth's."""

    def accuracy(self, predicted: Tensor, truth: Tensor, pitch_range: PitchRange) -> dict[str, float | Tensor]:
        """Greedy accuracy of decoded measures ``(B, V, S…)``: ``all`` and ``voice_{v}``."""
        hits = self.step_hits(predicted, truth).float()  # (B, V, S)
        return {"all": hits.mean(), **{f"voice_{v}": hits[:, v].mean() for v in range(hits.shape[1])}}

    def n_onsets(self, truth: Tensor, truth_mask: Tensor, pitch_range: PitchRange) -> int | None:
        """Onsets of the present truth voices, the count onset accuracy averages over (None: no
        onset accuracy)."""
        return None

    def baseline_accuracy(self, inputs: Tensor, truth: Tensor, pitch_range: PitchRange) -> dict[str, Tensor]:
        """Accuracy of trivial predictions of ``truth`` (none unless the encoding defines them)."""
        return {}

    # --- data ---------------------------------------------------------------------------------

    @abstractmethod
    def measures_of(self, tokens: np.ndarray, durations: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
        """A piece's tokens and onset durations ``(T, V, S)`` in this encoding."""

    @abstractmethod
    def window_fields(self, inputs: np.ndarray, target: np.ndarray, input_durations: np.ndarray,
                      target_durations: np.ndarray, pitch_range: PitchRange) -> dict[str, Tensor]:
        """A training window's ``inputs`` and ``target`` (and what else rides along) from tokens
        ``(T, V, S)`` / ``(V, S)`` and their onset durations (counted over the whole piece)."""

    @abstractmethod
    def to_notes(self, measures: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
        """Measures ``(T, V, S…)`` → a note list ``(N, 4)``."""

    @abstractmethod
    def empty(self, n_measures: int, n_voices: int, pitch_range: PitchRange) -> np.ndarray:
        """Silent measures ``(T, V, S…)``."""
