"""The monophonic token encoding (docs/design.md §1.5): one class per voice and step, ``0..P-1`` a new note,
``P`` a rest, ``P + 1`` note_continue; heads ``to_pitch`` (pitches + rest, softmax) and
``to_hold`` (note_continue, sigmoid), the thesis's fix for the silent-output collapse."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rmvae import losses
from rmvae.config import STEPS_PER_MEASURE
from rmvae.data.notes import PitchRange, tokens_to_notes
from rmvae.encodings.base import Decoded, Encoding


class MonoEncoding(Encoding):
    """Tokens ``(..., V, S)`` int; decoded as ``pitch_logits``/``hold_logits``."""

    name = "mono"
    monophonic = True

    def n_features(self, n_pitches: int) -> int:
        return n_pitches + 2  # one-hot classes C = P + 2

    def features(self, x: Tensor, n_pitches: int) -> Tensor:
        """Tokens ``(..., S)`` int → one-hot ``(..., S, P+2)``."""
        return F.one_hot(x.long(), self.n_features(n_pitches)).float()

    def build_heads(self, decoder: nn.Module, in_features: int, n_pitches: int) -> None:
        decoder.to_pitch = nn.Linear(in_features, n_pitches + 1)  # pitches + rest
        decoder.to_hold = nn.Linear(in_features, 1)  # note_continue

    def apply_heads(self, decoder: nn.Module, frames: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, S, H)`` → pitch logits ``(N, S, P+1)`` and hold logits ``(N, S)``."""
        return decoder.to_pitch(frames), decoder.to_hold(frames).squeeze(-1)

    def as_decoded(self, first: Tensor, second: Tensor) -> Decoded:
        return Decoded(pitch_logits=first, hold_logits=second)

    def recon_loss(self, decoded: Decoded, truth: Tensor, voice_mask: Tensor) -> Tensor:
        return losses.mono_recon(decoded.pitch_logits, decoded.hold_logits, truth, voice_mask)

    def pitch_class_mass(self, decoded: Decoded, low: int) -> Tensor:
        """The sounding distribution (holds carry the note before) folded into pitch classes."""
        return losses.pitch_class_mass(losses.sounding_distribution(decoded.pitch_logits, decoded.hold_logits), low)

    def rhythm_loss(self, decoded: Decoded, truth: Tensor, truth_mask: Tensor) -> Tensor:
        return losses.rhythm_loss(decoded.pitch_logits, decoded.hold_logits, truth, truth_mask)

    def predictive_mean(self, decoded: Decoded) -> Decoded:
        """p(hold) averaged, and p(class) = (1 − p(hold))·softmax averaged, back as logits."""
        hold = torch.sigmoid(decoded.hold_logits).mean(0)  # (B, V, S)
        pitch = (torch.sigmoid(-decoded.hold_logits).unsqueeze(-1) * torch.softmax(decoded.pitch_logits, -1)).mean(0)
        return Decoded(pitch_logits=torch.log(pitch.clamp_min(1e-12)), hold_logits=torch.logit(hold, eps=1e-6))

    def decode_tokens(self, decoded: Decoded, temperature: float = 0.0, top_k: int | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """Greedy (``temperature == 0``): note_continue where sigmoid(hold) ≥ 0.5, else the
        argmax of pitches+rest (docs/design.md §1.5). With ``temperature > 0`` the hold is a Bernoulli sample
        of sigmoid(hold_logit / temperature) and the pitch a sample of softmax(logits / temperature)
        over the ``top_k`` most likely classes. A hold right after a rest is a rest. Returns
        tokens ``(..., V, S)`` int64. A hold at step 0 continues the previous measure's last note.
        """
        pitch_logits, hold_logits = decoded.pitch_logits, decoded.hold_logits
        n_pitches = pitch_logits.shape[-1] - 1
        rest, hold = n_pitches, n_pitches + 1
        if temperature == 0:
            is_hold = hold_logits >= 0
            pitch = pitch_logits.argmax(dim=-1)
        else:
            is_hold = torch.bernoulli(torch.sigmoid(hold_logits / temperature), generator=generator).bool()
            logits = pitch_logits / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1).reshape(-1, logits.shape[-1])
            pitch = torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])
        tokens = torch.where(is_hold, torch.full_like(pitch, hold), pitch)
        for step in range(1, tokens.shape[-1]):  # a hold after a rest holds nothing: rest
            after_rest = (tokens[..., step] == hold) & (tokens[..., step - 1] == rest)
            tokens[..., step] = torch.where(after_rest, rest, tokens[..., step])
        return tokens

    def step_hits(self, predicted: Tensor, truth: Tensor) -> Tensor:
        return predicted == truth

    def accuracy(self, predicted: Tensor, truth: Tensor, pitch_range: PitchRange) -> dict[str, float | Tensor]:
        """:func:`rmvae.metrics.token_accuracy`: all, onsets, pitches and per voice."""
        from rmvae.metrics import token_accuracy  # pandas: kept out of the model's imports

        return token_accuracy(predicted, truth, pitch_range)

    def n_onsets(self, truth: Tensor, truth_mask: Tensor, pitch_range: PitchRange) -> int | None:
        return int(((truth < pitch_range.n_pitches) & truth_mask.bool().unsqueeze(-1)).sum())

    def baseline_accuracy(self, inputs: Tensor, truth: Tensor, pitch_range: PitchRange) -> dict[str, Tensor]:
        """Always hold; repeat the last input measure."""
        hold = torch.full_like(truth, pitch_range.hold)
        last = inputs[:, -1]
        return {"baseline_hold_acc": (hold == truth).float().mean(), "baseline_repeat_acc": (last == truth).float().mean()}

    def measures_of(self, tokens: np.ndarray, durations: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
        return tokens.astype(np.int64)

    def window_fields(self, inputs: np.ndarray, target: np.ndarray, input_durations: np.ndarray,
                      target_durations: np.ndarray, pitch_range: PitchRange) -> dict[str, Tensor]:
        """Tokens as they are; holds already say nothing about after the window."""
        return {"inputs": torch.from_numpy(inputs.astype(np.int64)), "target": torch.from_numpy(target.astype(np.int64))}

    def to_notes(self, measures: np.ndarray, pitch_range: PitchRange) -> np.ndarray:
        return tokens_to_notes(measures, pitch_range)

    def empty(self, n_measures: int, n_voices: int, pitch_range: PitchRange) -> np.ndarray:
        return np.full((n_measures, n_voices, STEPS_PER_MEASURE), pitch_range.rest, dtype=np.int64)
