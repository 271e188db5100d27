"""The polyphonic encoding (docs/design.md §1.6): per voice, step and pitch an activation (1 at an onset) and
a duration in sixteenths; heads ``to_activation`` (sigmoid) and ``to_duration`` (ReLU)."""
from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from torch import Tensor, nn

from rmvae import losses
from rmvae.config import STEPS_PER_MEASURE
from rmvae.data.notes import PitchRange, poly_to_notes, tokens_to_poly
from rmvae.encodings.base import Decoded, Encoding


def clip_at_window_end(durations: np.ndarray) -> np.ndarray:
    """Input note lengths ``(T, V, S)`` cut at the last input bar line.

    Durations are counted over the whole piece; a note still sounding when the window ends
    would otherwise tell the model how many steps of the measures after it are held (a leak of
    the target into the inputs). Clipped, it reads like a mono hold at the last step: sounding
    until the bar line, nothing said about after.
    """
    measures = durations.shape[0]
    steps_left = (measures * STEPS_PER_MEASURE
                  - np.arange(measures * STEPS_PER_MEASURE).reshape(measures, 1, STEPS_PER_MEASURE))
    return np.minimum(durations, steps_left).astype(durations.dtype)


class PolyEncoding(Encoding):
    """Arrays ``(..., V, S, P, 2)`` float (activation, duration); decoded as
    ``activation_logits``/``duration``."""

    name = "poly"
    monophonic = False

    def n_features(self, n_pitches: int) -> int:
        return 2 * n_pitches  # (activation, duration) per pitch, flattened

    def features(self, x: Tensor, n_pitches: int) -> Tensor:
        """``(..., S, P, 2)`` → ``(..., S, 2P)``."""
        if x.shape[-2:] != (n_pitches, 2):
            raise ValueError(f"poly input must end in (P, 2) = ({n_pitches}, 2); got {tuple(x.shape)}")
        return rearrange(x.float(), "... s p k -> ... s (p k)")

    def build_heads(self, decoder: nn.Module, in_features: int, n_pitches: int) -> None:
        decoder.to_activation = nn.Linear(in_features, n_pitches)
        decoder.to_duration = nn.Linear(in_features, n_pitches)

    def apply_heads(self, decoder: nn.Module, frames: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, S, H)`` → activation logits and durations ``(N, S, P)`` each."""
        return decoder.to_activation(frames), torch.relu(decoder.to_duration(frames))

    def as_decoded(self, first: Tensor, second: Tensor) -> Decoded:
        return Decoded(activation_logits=first, duration=second)

    def recon_loss(self, decoded: Decoded, truth: Tensor, voice_mask: Tensor) -> Tensor:
        return losses.poly_recon(decoded.activation_logits, decoded.duration, truth, voice_mask)

    def pitch_class_mass(self, decoded: Decoded, low: int) -> Tensor:
        return losses.poly_pitch_class_mass(decoded.activation_logits, low)

    def rhythm_loss(self, decoded: Decoded, truth: Tensor, truth_mask: Tensor) -> Tensor:
        return losses.poly_rhythm_loss(decoded.activation_logits, truth, truth_mask)

    def predictive_mean(self, decoded: Decoded) -> Decoded:
        """p(activation) averaged (back as a logit) and the mean duration."""
        active = torch.sigmoid(decoded.activation_logits).mean(0)
        return Decoded(activation_logits=torch.logit(active, eps=1e-6), duration=decoded.duration.mean(0))

    def decode_tokens(self, decoded: Decoded, temperature: float = 0.0, top_k: int | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """A note wherever sigmoid(activation) ≥ 0.5 (or a Bernoulli sample at ``temperature > 0``;
        ``top_k`` is not used), its duration rounded to ≥ 1 sixteenth; returns ``(..., V, S, P, 2)`` float."""
        if temperature == 0:
            active = decoded.activation_logits >= 0  # sigmoid ≥ 0.5
        else:
            probs = torch.sigmoid(decoded.activation_logits / temperature)
            active = torch.bernoulli(probs, generator=generator).bool()
        duration = torch.where(active, decoded.duration.round().clamp(min=1), torch.zeros_like(decoded.duration))
        return torch.stack([active.float(), duration], dim=-1)

    def step_hits(self, predicted: Tensor, truth: Tensor) -> Tensor:
        """A step is right when the set of sounding onsets is (durations are not compared)."""
        return (predicted[..., 0].bool() == (truth[..., 0] >= 0.5)).all(dim=-1)

    def measures_of(self, tokens: np.ndarray, durations: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
        return tokens_to_poly(tokens, durations, pitch_range)

    def window_fields(self, inputs: np.ndarray, target: np.ndarray, input_durations: np.ndarray,
                      target_durations: np.ndarray, pitch_range: PitchRange) -> dict[str, Tensor]:
        """Poly arrays, input durations clipped at the window's end; the tokens ride along (the
        token baselines read ``target_tokens``)."""
        return {"inputs": torch.from_numpy(tokens_to_poly(inputs, clip_at_window_end(input_durations), pitch_range)),
                "target": torch.from_numpy(tokens_to_poly(target, target_durations, pitch_range)),
                "input_tokens": torch.from_numpy(inputs.astype(np.int64)),
                "target_tokens": torch.from_numpy(target.astype(np.int64))}

    def to_notes(self, measures: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
        return poly_to_notes(measures, pitch_range)

    def empty(self, n_measures: int, n_voices: int, pitch_range: PitchRange) -> np.ndarray:
        return np.zeros((n_measures, n_voices, STEPS_PER_MEASURE, pitch_range.n_pitches, 2), np.float32)
