"""How an RMVAE with a measure writer (``model.measure_decoder="autoregressive"``) scores and
writes measures: the writer's context, teacher forcing of the window, and generation.

A mixin of :class:`rmvae.model.rmvae.RMVAE` (it reads ``self.writer``, ``self.config``,
``self.decoder_input``, ``self.target_offset``, ``self.n_voices``), kept apart so that the model
file holds the encoders, the PoE and the temporal model.

Two contexts (``model.writer_context``):

- ``"measure"``: each measure is written from a zero LSTM state after the measure before it (the
  writer's 16 context steps), conditioned on its z and temporal state;
- ``"window"``: the writer runs on over the whole window, teacher-forced on the input measures with
  each measure's z_t and the temporal state before it, and writes the target from the LSTM state
  after the window: the past reaches the target token by token, as in the autoregressive baseline,
  besides through the conductor. The pass over the window's visible tokens is shared by every ELBO
  term of a window (a term changes the latents, not the tokens the writer has heard).
"""
from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor

from rmvae.config import STEPS_PER_MEASURE
from rmvae.encodings import Decoded
from rmvae.model.layers import pick_measures
from rmvae.model.writer import TokenSampling, WriterContext, as_mono_decoded


class WritingMixin:
    """Teacher forcing and generation through ``self.writer`` (see the module docstring)."""

    @property
    def writes_window(self) -> bool:
        """A measure writer that runs on over the window (``model.writer_context="window"``)."""
        return self.writer is not None and self.config.writer_context == "window"

    def unknown_like(self, tokens: Tensor) -> Tensor:
        """Tokens nobody knows, shaped like ``tokens`` (the writer's unknown class)."""
        return torch.full_like(tokens, self.writer.unknown)

    def visible(self, inputs: Tensor, mask: Tensor) -> Tensor:
        """Input tokens ``(B, T, V, S)`` with every hidden voice-measure unknown."""
        return torch.where(mask.bool().unsqueeze(-1), inputs, self.unknown_like(inputs))

    def write_inputs(self, x: Tensor, truth: Tensor, context: WriterContext) -> Decoded:
        """The writer's teacher-forced heads: decoder inputs ``(N, D)``, measures ``(N, V, S)`` and
        their contexts (N rows) → the mono heads ``(N, V, S, ·)``."""
        sequence = rearrange(torch.cat([context.previous, truth], dim=-1), "n v s -> n s v")  # (N, 32, V)
        cond = x.unsqueeze(1).expand(-1, STEPS_PER_MEASURE, -1)
        log_probs, _ = self.writer.run(sequence, cond, context.lstm)  # (N, S, V, C)
        return as_mono_decoded(rearrange(log_probs, "n s v c -> n v s c"))

    # --- contexts ------------------------------------------------------------------------------

    def previous_of_target(self, inputs: Tensor, mask: Tensor) -> Tensor:
        """The measure before the target ``(B, V, S)``: the last input measure's visible voices when
        the target follows it, else unknown (the band's target comes two measures later)."""
        last = self.visible(inputs[:, -1:], mask[:, -1:])[:, 0]
        return last if self.target_offset == 1 else self.unknown_like(last)

    def window_pass(self, inputs: Tensor, mask: Tensor, z: Tensor, before: Tensor) -> tuple[Tensor, WriterContext]:
        """The writer teacher-forced over the window's visible tokens ``(B, T, V, S)``, measure t
        conditioned on z_t ``(B, T, Z)`` and the state before it ``(B, T, W)``: log-probabilities of
        every input token ``(B, T, V, S, C)`` and the target's context (the LSTM state after it)."""
        visible = self.visible(inputs, mask)
        start = self.unknown_like(visible[:, 0]).transpose(1, 2)  # (B, S, V): nothing before the window
        sequence = torch.cat([start, rearrange(visible, "b t v s -> b (t s) v")], dim=1)
        cond = repeat(self.decoder_input(z, before), "b t d -> b (t s) d", s=STEPS_PER_MEASURE)
        log_probs, lstm = self.writer.run(sequence, cond)
        log_probs = rearrange(log_probs, "b (t s) v c -> b t v s c", s=STEPS_PER_MEASURE)
        return log_probs, WriterContext(self.previous_of_target(inputs, mask), lstm)

    def target_context(self, inputs: Tensor, mask: Tensor, z: Tensor, before: Tensor,
                       shared: WriterContext | None = None) -> tuple[WriterContext, Decoded | None]:
        """The target's context and, for a window writer, every input measure's teacher-forced heads
        (``(B, T, V, S, ·)``, the reconstruction); ``shared``: a context already computed for this
        window (another ELBO term), reused instead of a second pass."""
        if self.config.writer_context == "measure":
            return WriterContext(self.previous_of_target(inputs, mask)), None
        if shared is not None:
            return shared, None
        log_probs, context = self.window_pass(inputs, mask, z, before)
        return context, as_mono_decoded(log_probs)

    def measure_contexts(self, inputs: Tensor, mask: Tensor, recon_measures: Tensor | None,
                         target_context: WriterContext) -> tuple[Tensor, WriterContext]:
        """For a measure writer's reconstruction pass: the chosen input measures then the target
        ``((B·k + B), V, S)`` and each one's context (the measure before it, unknown where hidden)."""
        visible = self.visible(inputs, mask)
        earlier = torch.cat([self.unknown_like(visible[:, :1]), visible[:, :-1]], dim=1)  # (B, T, V, S)
        truth = inputs
        if recon_measures is not None:
            truth, earlier = pick_measures(inputs, recon_measures), pick_measures(earlier, recon_measures)
        return (rearrange(truth, "b t v s -> (b t) v s"),
                WriterContext(torch.cat([rearrange(earlier, "b t v s -> (b t) v s"), target_context.previous])))

    # --- generation ----------------------------------------------------------------------------

    @torch.no_grad()
    def write(self, z: Tensor | None, state: Tensor | None, context: WriterContext | None = None,
              known: Tensor | None = None, known_mask: Tensor | None = None,
              sampling: TokenSampling = TokenSampling(), generator: torch.Generator | None = None) -> Tensor:
        """Generate measures ``(N, V, S)`` from latents ``(N, Z)`` and states ``(N, W)``.

        A writer draws token by token after ``context`` (an output's ``target_context``; None =
        nothing known before), with ``known (N, V, S)`` voices where ``known_mask (N, V)`` clamped
        and heard by the others; factorised decoders draw every token at once and then copy the
        known voices in.
        """
        if self.writer is None:
            if sampling.top_p is not None or sampling.tracks_sounding:
                raise ValueError("top-p (nucleus) sampling, --no-parallels and --dissonance-penalty need an "
                                 "autoregressive measure decoder; this checkpoint's decoder is factorised: use --top-k")
            tokens = self.decode_tokens(self.decode(z, state), sampling.temperature, sampling.top_k, generator)
        else:
            x = self.decoder_input(z, state)
            if context is None:
                shape = (len(x), self.n_voices, STEPS_PER_MEASURE)
                context = WriterContext(torch.full(shape, self.writer.unknown, dtype=torch.long, device=x.device))
            cond = x.unsqueeze(1).expand(-1, STEPS_PER_MEASURE, -1)
            clamp = None if known is None else rearrange(known, "n v s -> n s v")
            tokens = self.writer.sample(rearrange(context.previous, "n v s -> n s v"), cond, STEPS_PER_MEASURE,
                                        sampling, clamp, known_mask, generator, state=context.lstm)
            tokens = rearrange(tokens, "n s v -> n v s")
        if known is not None and known_mask is not None:
            tokens = torch.where(known_mask.bool().unsqueeze(-1), known.to(tokens), tokens)
        return tokens
