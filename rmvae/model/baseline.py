"""The autoregressive baseline: a measure writer run over the whole window, no latent variable.

What a user of the field would train instead of an RMVAE (the BachBot / DeepBach family): every
token of the window — input measures, then the target — predicted from every earlier token, in
the writer's time-major order with the voices interleaved. Its next-measure NLL is exact by the
chain rule, in the unit of every other model's ``nll`` (nats per target measure). Trained on
every present token of the window; scored on the target's.

The sequence it reads: 16 unknown steps (the writer's context), the T input measures, for a
target ``offset`` > 1 measures ahead the unknown measures between, then the target. Each step's
conditioning is its measure's voice mask, so a hidden or padded voice-measure reads as absent.
"""
from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from rmvae.config import BASELINE_WRITER_LAYERS, STEPS_PER_MEASURE, ModelConfig
from rmvae.encodings import Decoded, encoding_named
from rmvae.model.writer import MeasureWriter, TokenSampling, as_mono_decoded


class AutoregressiveBaseline(nn.Module):
    """Autoregressive network over a window's tokens (see the module docstring).

    Args:
        config: the size preset sets the writer's width; it stacks two LSTM layers.
        n_voices: V; ``n_pitches``: P (classes C = P + 2); ``encoding``: must be mono.
        target_offset: measures from the last input measure to the target.
    """

    has_latents = False

    def __init__(self, config: ModelConfig, n_voices: int, n_pitches: int, encoding, target_offset: int = 1):
        super().__init__()
        self.config = config
        self.n_voices, self.n_pitches = n_voices, n_pitches
        self.encoding = encoding_named(encoding)
        if not self.encoding.monophonic:
            raise ValueError("the autoregressive baseline writes mono tokens; use data.encoding=mono")
        self.target_offset = target_offset
        self.writer = MeasureWriter(n_voices, n_pitches + 2, n_voices, config.layers()["writer_width"],
                                    layers=BASELINE_WRITER_LAYERS, embed=config.writer_embed,
                                    dropout=config.writer_dropout, token_dropout=config.writer_token_dropout)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _sequence(self, inputs: Tensor, input_mask: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
        """Tokens ``(B, 16 + (T + offset)·S, V)`` (the target's steps unknown when None) and the
        conditioning ``(B, (T + offset)·S, V)``; hidden voice-measures become unknown tokens."""
        batch, measures, voices = input_mask.shape
        unknown = self.writer.unknown
        inputs = torch.where(input_mask.bool().unsqueeze(-1), inputs.long(), unknown)  # (B, T, V, S)
        gap = inputs.new_full((batch, self.target_offset - 1, voices, STEPS_PER_MEASURE), unknown)
        last = inputs.new_full((batch, 1, voices, STEPS_PER_MEASURE), unknown) if target is None else target.long()[:, None]
        window = torch.cat([inputs, gap, last], dim=1)  # (B, T + offset, V, S)
        context = inputs.new_full((batch, STEPS_PER_MEASURE, voices), unknown)
        sequence = torch.cat([context, rearrange(window, "b t v s -> b (t s) v")], dim=1)
        mask = torch.cat([input_mask.float(), input_mask.new_zeros(batch, self.target_offset - 1, voices).float(),
                          input_mask.new_ones(batch, 1, voices).float()], dim=1)  # (B, T + offset, V)
        cond = repeat(mask, "b t v -> b (t s) v", s=STEPS_PER_MEASURE)
        return sequence, cond

    def window_log_probs(self, inputs: Tensor, input_mask: Tensor, target: Tensor) -> Tensor:
        """Log-probabilities ``(B, T + offset, V, S, C)`` of every token of the window, teacher-forced."""
        sequence, cond = self._sequence(inputs, input_mask, target)
        log_probs = self.writer(sequence, cond)  # (B, (T + offset)·S, V, C)
        return rearrange(log_probs, "b (t s) v c -> b t v s c", s=STEPS_PER_MEASURE)

    @staticmethod
    def measure_heads(log_probs: Tensor) -> Decoded:
        """One measure's log-probabilities ``(B, V, S, C)`` as the mono heads."""
        return as_mono_decoded(log_probs)

    @torch.no_grad()
    def write(self, inputs: Tensor, input_mask: Tensor, known: Tensor | None = None, known_mask: Tensor | None = None,
              sampling: TokenSampling = TokenSampling(), generator: torch.Generator | None = None) -> Tensor:
        """The target measure ``(B, V, S)`` after the window, drawn token by token; ``known`` voices
        (``known_mask (B, V)``) are clamped and heard by the voices after them at each step."""
        sequence, cond = self._sequence(inputs, input_mask, None)
        given = sequence.shape[1] - 2 * STEPS_PER_MEASURE  # every step but the target's
        clamp = None if known is None else rearrange(known, "b v s -> b s v")
        tokens = self.writer.sample(sequence[:, :STEPS_PER_MEASURE + given], cond, STEPS_PER_MEASURE, sampling,
                                    clamp, known_mask, generator)
        return rearrange(tokens, "b s v -> b v s")
