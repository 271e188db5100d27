"""The measure writer: a decoder that writes tokens one at a time (mono encoding only).

A factorised decoder predicts the 64 tokens of a measure independently given its input, so its
likelihood is a product of marginals and a sampled measure's voices do not hear each other. The
writer factorises the measure by the chain rule in time-major order with the voices interleaved
(step 0: S, A, T, B; step 1: S, A, T, B; …):

    p(x | c) = Π_s Π_v p(x[s, v] | x[<s, :], x[s, <v], c)

- an LSTM over steps reads, at step s, every voice's token of step s−1, every voice's token one
  measure earlier (step s−16, the previous measure: a bar-line skip that repetition and
  voice-leading need), the position in the measure and the conditioning c (the RMVAE's z and
  temporal state, or only the voice mask for the autoregressive baseline);
- voice v's head reads the LSTM's state and the tokens already chosen at step s by voices < v.

Tokens before what is being written come as a *context* of 16 steps (the previous measure); a
token nobody knows (the start of a piece, a hidden voice) is :attr:`MeasureWriter.unknown`.
Teacher forcing scores a given sequence in one pass; :meth:`MeasureWriter.sample` draws one
with temperature, top-k and nucleus (top-p), clamping known voices at their positions.

Shapes: ``N`` sequences, ``L`` steps written, ``V`` voices, ``C`` classes, ``D`` conditioning.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rmvae.config import STEPS_PER_MEASURE
from rmvae.encodings import Decoded
from rmvae.metrics import DISSONANT_INTERVALS


@dataclass(frozen=True)
class TokenSampling:
    """How each token is drawn: ``temperature`` 0 = greedy (argmax), else a sample of
    softmax(logits / temperature) restricted to the ``top_k`` most likely classes and to the
    smallest set whose mass reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020).
    ``no_parallels`` also forbids every new pitch that would make a parallel fifth or octave with
    a voice already written at the same step (:func:`parallel_pitches`); ``dissonance_penalty``
    λ divides a token's probability by e^λ for every voice already written at the step that it
    would sound a second, tritone or seventh against (:func:`dissonant_counts`; a held note
    counts too): a consonance prior multiplied into the writer's distribution, softer than a
    ban, since Bach's chorales are dissonant in about a third of their frames."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    no_parallels: bool = False
    dissonance_penalty: float = 0.0

    @property
    def tracks_sounding(self) -> bool:
        """Whether drawing needs the pitch every voice sounds (the voice-leading constraints)."""
        return self.no_parallels or self.dissonance_penalty > 0

    def choose(self, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        """Logits ``(N, C)`` → classes ``(N,)``."""
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1:
            ordered, order = torch.sort(logits, dim=-1, descending=True)
            mass_before = torch.softmax(ordered, dim=-1).cumsum(dim=-1) - torch.softmax(ordered, dim=-1)
            drop = mass_before >= self.top_p  # the most likely class always stays (mass before it is 0)
            logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
        probs = torch.softmax(logits.float(), dim=-1)
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@dataclass
class WriterContext:
    """What a writer needs before the measure it writes: the measure before it ``(N, V, S)``
    (unknown tokens where nobody knows them) and, when the writer runs on from the window
    (``model.writer_context="window"``), its LSTM state ``(h, c)``, each ``(layers, N, H)``, after
    the window's last step; None starts the measure from a zero state."""

    previous: Tensor
    lstm: tuple[Tensor, Tensor] | None = None

    def expand(self, lead: tuple[int, ...]) -> "WriterContext":
        """The context of each of ``lead`` = ``(…, N)`` measures, flattened to ``prod(lead)`` rows in
        row-major order (latent draws broadcast over the same N windows)."""
        rows = int(torch.Size(lead).numel())
        previous = self.previous.expand(*lead, *self.previous.shape[-2:]).reshape(rows, *self.previous.shape[-2:])
        if self.lstm is None:
            return WriterContext(previous)
        layers, n, width = self.lstm[0].shape
        lstm = tuple(part.unsqueeze(1).expand(layers, rows // n, n, width).reshape(layers, rows, width)
                     for part in self.lstm)
        return WriterContext(previous, lstm)


def sounding_after(tokens: Tensor, before: Tensor, n_pitches: int) -> Tensor:
    """The pitch index each voice sounds after a step of ``tokens (N, V)``, from the one it sounded
    before ``(N, V)``: a new pitch, the same one when it holds, −1 after a rest or an unknown token."""
    hold = n_pitches + 1
    return torch.where(tokens < n_pitches, tokens, torch.where(tokens == hold, before, torch.full_like(before, -1)))


def parallel_pitches(upper_before: Tensor, upper_now: Tensor, lower_before: Tensor, n_pitches: int) -> Tensor:
    """Bool ``(N, P)``: the new pitches of a voice that would move in parallel fifths or octaves
    with another voice, the rule of :func:`rmvae.metrics.parallel_perfects_per_note`: both voices
    sound before and after, both move strictly the same way, and the interval class |p − q| mod 12
    is 0 or 7 before and the same after. Pitches ``(N,)``, −1 = nothing sounding; holding a note
    is oblique motion and never parallel."""
    candidate = torch.arange(n_pitches, device=upper_now.device)  # (P,)
    interval = (upper_before - lower_before).abs() % 12  # (N,)
    sounding = (upper_before >= 0) & (upper_now >= 0) & (lower_before >= 0) & ((interval == 0) | (interval == 7))
    upper_motion = torch.sign(upper_now - upper_before)  # (N,)
    same_way = (torch.sign(candidate[None] - lower_before[:, None]) == upper_motion[:, None]) & (upper_motion[:, None] != 0)
    same_class = (upper_now[:, None] - candidate[None]).abs() % 12 == interval[:, None]
    return sounding[:, None] & same_way & same_class


def dissonant_counts(others: Tensor, n_pitches: int) -> Tensor:
    """``(N, P)``: against how many of the pitches ``others (N, U)`` (−1 = nothing sounding) each
    pitch index would sound a dissonant interval (:data:`rmvae.metrics.DISSONANT_INTERVALS`, the
    rule of :func:`rmvae.metrics.dissonance_rate`); pitch indices differ as MIDI pitches do."""
    candidate = torch.arange(n_pitches, device=others.device)  # (P,)
    interval = (candidate[None, None] - others[:, :, None]).abs() % 12  # (N, U, P)
    dissonant = torch.isin(interval, torch.tensor(DISSONANT_INTERVALS, device=others.device))
    return (dissonant & (others[:, :, None] >= 0)).sum(dim=1)


def as_mono_decoded(log_probs: Tensor) -> Decoded:
    """Log-probabilities over the C mono classes ``(..., C)`` → the mono heads' parametrisation.

    ``hold_logits = log p(hold) − log(1 − p(hold))`` and ``pitch_logits = log p(class)`` for the
    pitches and the rest, so the mono reconstruction loss (BCE of the hold plus cross-entropy of
    the rest) is exactly −log p(token) of the writer's softmax.
    """
    not_hold = torch.logsumexp(log_probs[..., :-1], dim=-1)
    return Decoded(pitch_logits=log_probs[..., :-1], hold_logits=log_probs[..., -1] - not_hold)


class MeasureWriter(nn.Module):
    """Chain-rule decoder over ``L`` steps of ``V`` voices (see the module docstring).

    Args:
        n_voices: V.
        n_classes: C (mono: P pitches, rest, hold); class C is the unknown token of the inputs.
        cond_size: D, features of the conditioning at every step (0 = none).
        width: the LSTM's hidden size; ``layers``: stacked LSTM layers.
        embed: embedding size of one voice's token.
        dropout: dropout of the LSTM's inputs and outputs.
        token_dropout: share of the earlier-step inputs replaced by the unknown token in training
            (Bowman et al. 2016's word dropout: the writer must lean on c, not only on its past).
    """

    def __init__(self, n_voices: int, n_classes: int, cond_size: int, width: int, layers: int = 1,
                 embed: int = 16, dropout: float = 0.0, token_dropout: float = 0.0):
        super().__init__()
        self.n_voices, self.n_classes, self.cond_size = n_voices, n_classes, cond_size
        self.unknown = n_classes
        self.token_dropout = token_dropout
        self.rest, self.hold = n_classes - 2, n_classes - 1  # mono: pitches, rest, hold
        self.before = nn.Embedding(n_voices * (n_classes + 1), embed)  # step s−1, per voice
        self.bar_back = nn.Embedding(n_voices * (n_classes + 1), embed)  # step s−16, per voice
        self.chosen = nn.Embedding(n_voices * (n_classes + 1), embed)  # step s, voices already written
        self.position = nn.Embedding(STEPS_PER_MEASURE, embed)
        self.lstm = nn.LSTM(2 * n_voices * embed + embed + cond_size, width, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(width + v * embed, width), nn.ReLU(),
                                                 nn.Linear(width, n_classes)) for v in range(n_voices))

    # --- inputs -------------------------------------------------------------------------------

    def _voice_embed(self, table: nn.Embedding, tokens: Tensor) -> Tensor:
        """Tokens ``(..., V')`` of the first V' voices → their embeddings side by side ``(..., V'·E)``."""
        voices = torch.arange(tokens.shape[-1], device=tokens.device)
        return table(tokens.long() + voices * (self.n_classes + 1)).flatten(-2)

    def _step_inputs(self, sequence: Tensor, cond: Tensor | None, first: int, length: int) -> Tensor:
        """The LSTM's inputs ``(N, length, ·)`` for the steps ``first .. first+length−1`` written
        after the 16-step context of ``sequence (N, 16 + L, V)``."""
        at = STEPS_PER_MEASURE + first
        before = sequence[:, at - 1:at - 1 + length]
        if self.training and self.token_dropout > 0:
            drop = torch.rand(before.shape, device=before.device) < self.token_dropout
            before = before.masked_fill(drop, self.unknown)
        bar_back = sequence[:, at - STEPS_PER_MEASURE:at - STEPS_PER_MEASURE + length]
        steps = torch.arange(first, first + length, device=sequence.device) % STEPS_PER_MEASURE
        parts = [self._voice_embed(self.before, before), self._voice_embed(self.bar_back, bar_back),
                 self.position(steps).expand(len(sequence), -1, -1)]
        if self.cond_size:
            parts.append(cond[:, first:first + length])
        return self.dropout(torch.cat(parts, dim=-1))

    def _lstm_step(self, x: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One step of :attr:`lstm` on ``(N, I)`` with its own weights (gate order i, f, g, o).

        Generation runs 16 single steps per measure; ``nn.LSTM`` on a length-1 sequence sets up
        its CPU kernel every call (≈ 5 ms each for width 384), the plain cell costs microseconds.
        """
        layers = self.lstm.num_layers
        if state is None:
            zeros = x.new_zeros(layers, len(x), self.lstm.hidden_size)
            state = (zeros, zeros)
        hs, cs = [], []
        for layer in range(layers):
            gates = (F.linear(x, getattr(self.lstm, f"weight_ih_l{layer}"), getattr(self.lstm, f"bias_ih_l{layer}"))
                     + F.linear(state[0][layer], getattr(self.lstm, f"weight_hh_l{layer}"),
                                getattr(self.lstm, f"bias_hh_l{layer}")))
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * state[1][layer] + torch.sigmoid(i) * torch.tanh(g)
            x = torch.sigmoid(o) * torch.tanh(c)
            hs.append(x)
            cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))

    def _head(self, voice: int, hidden: Tensor, written: Tensor) -> Tensor:
        """Voice ``voice``'s logits from the LSTM state ``(..., H)`` and the tokens ``(..., voice)``
        of the same step written before it."""
        if voice:
            hidden = torch.cat([hidden, self._voice_embed(self.chosen, written[..., :voice])], dim=-1)
        return self.heads[voice](hidden)

    # --- teacher forcing ----------------------------------------------------------------------

    def forward(self, sequence: Tensor, cond: Tensor | None = None) -> Tensor:
        """Log-probabilities ``(N, L, V, C)`` of every written token given all before it.

        Args:
            sequence: ``(N, 16 + L, V)`` int: the 16 context steps, then the L steps scored
                (unknown tokens allowed in the context only).
            cond: ``(N, L, D)`` conditioning per written step (or None when ``cond_size`` is 0).
        """
        return self.run(sequence, cond)[0]

    def run(self, sequence: Tensor, cond: Tensor | None = None,
            state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """:meth:`forward` from the LSTM state ``state`` (None = zeros), also returning the state
        after the last step (where a measure written next starts)."""
        length = sequence.shape[1] - STEPS_PER_MEASURE
        hidden, final = self.lstm(self._step_inputs(sequence, cond, 0, length), state)
        hidden = self.dropout(hidden)  # (N, L, H)
        written = sequence[:, STEPS_PER_MEASURE:]  # (N, L, V)
        logits = torch.stack([self._head(v, hidden, written) for v in range(self.n_voices)], dim=2)
        return torch.log_softmax(logits.float(), dim=-1), final

    # --- generation ---------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, sequence: Tensor, cond: Tensor | None, n_new: int, sampling: TokenSampling = TokenSampling(),
               known: Tensor | None = None, known_mask: Tensor | None = None,
               generator: torch.Generator | None = None, state: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Write ``n_new`` steps after ``sequence (N, 16 + L0, V)`` (context, then L0 given steps).

        Args:
            cond: ``(N, L0 + n_new, D)``, the conditioning of the given and the new steps.
            known: ``(N, n_new, V)`` tokens of the known voices; ``known_mask (N, V)`` which
                voices are known there: they are clamped (never sampled) and condition the rest.
            state: the LSTM state before the first given step (None = zeros).
        Returns:
            tokens ``(N, n_new, V)``. A hold right after a rest or an unknown token (nothing
            sounds to be held) is never drawn.
        """
        given = sequence.shape[1] - STEPS_PER_MEASURE
        if given:  # teacher-force the given steps in one call
            _, state = self.lstm(self._step_inputs(sequence, cond, 0, given), state)
        tokens = torch.cat([sequence, sequence.new_full((len(sequence), n_new, self.n_voices), self.unknown)], dim=1)
        n_pitches = self.rest
        # The pitch each voice sounds after each step (N, V): needed only by the voice-leading constraints.
        sounding = tokens.new_full((len(tokens), self.n_voices), -1)
        if sampling.tracks_sounding:
            for at in range(STEPS_PER_MEASURE + given):
                sounding = sounding_after(tokens[:, at], sounding, n_pitches)
        for step in range(given, given + n_new):
            hidden, state = self._lstm_step(self._step_inputs(tokens, cond, step, 1)[:, 0], state)  # (N, H)
            at = STEPS_PER_MEASURE + step
            now = sounding.clone() if sampling.tracks_sounding else sounding
            for voice in range(self.n_voices):
                logits = self._head(voice, hidden, tokens[:, at])
                previous = tokens[:, at - 1, voice]
                nothing_sounds = (previous == self.rest) | (previous == self.unknown)
                logits[:, self.hold] = logits[:, self.hold].masked_fill(nothing_sounds, float("-inf"))
                if sampling.tracks_sounding:
                    self._constrain(logits, voice, sounding, now, sampling)
                choice = sampling.choose(logits, generator)
                if known is not None and known_mask is not None:
                    choice = torch.where(known_mask[:, voice], known[:, step - given, voice].to(choice), choice)
                tokens[:, at, voice] = choice
                if sampling.tracks_sounding:
                    now[:, voice] = sounding_after(choice[:, None], sounding[:, voice:voice + 1], n_pitches)[:, 0]
            sounding = now
        return tokens[:, STEPS_PER_MEASURE + given:]

    def _constrain(self, logits: Tensor, voice: int, before: Tensor, now: Tensor, sampling: TokenSampling) -> None:
        """Apply the voice-leading constraints to ``voice``'s logits ``(N, C)`` in place, from the
        pitches every voice sounded before this step ``(N, V)`` and after it for the voices < ``voice``
        already written ``now (N, V)``."""
        n_pitches = self.rest
        if sampling.no_parallels:
            for upper in range(voice):
                forbidden = parallel_pitches(before[:, upper], now[:, upper], before[:, voice], n_pitches)
                logits[:, :n_pitches] = logits[:, :n_pitches].masked_fill(forbidden, float("-inf"))
        if sampling.dissonance_penalty > 0 and voice:
            clashes = dissonant_counts(now[:, :voice], n_pitches).to(logits.dtype)  # (N, P)
            logits[:, :n_pitches] -= sampling.dissonance_penalty * clashes
            held = before[:, voice]  # holding keeps this pitch sounding
            held_clashes = clashes.gather(1, held.clamp(min=0)[:, None])[:, 0] * (held >= 0)
            logits[:, self.hold] -= sampling.dissonance_penalty * held_clashes
