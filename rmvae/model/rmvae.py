"""The Recurrent Multimodal VAE: per-voice experts, (recurrent) PoE, temporal LSTM, per-voice decoders (docs/design.md §2).

Callers pass tokens ``(B, T, V, S)`` (mono) or arrays ``(B, T, V, S, P, 2)`` (poly); the
model makes the features itself (:meth:`RMVAE.features`). Shapes follow the legend in
:mod:`rmvae.model`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from rmvae.config import STEPS_PER_MEASURE, ModelConfig
from rmvae.encodings import Decoded, Encoding, encoding_named
from rmvae.model.decoders import ConvVoiceDecoder, FCVoiceDecoder, VoiceDecoder
from rmvae.model.encoders import ConvVoiceEncoder, FCVoiceEncoder, VoiceEncoder
from rmvae.model.layers import pick_measures, run_lstm
from rmvae.model.poe import product_of_experts, recurrent_posteriors
from rmvae.model.writer import MeasureWriter, TokenSampling, WriterContext
from rmvae.model.writing import WritingMixin


@dataclass
class Teacher:
    """The tokens a measure writer is teacher-forced on: the window ``(B, T, V, S)`` and the
    target ``(B, V, S)`` (None when only the past is known). Unused by factorised decoders."""

    inputs: Tensor
    target: Tensor | None = None


@dataclass
class RMVAEOutput:
    """Everything one forward pass computes; the objective picks its terms from here."""

    expert_mu: Tensor  # (B, T, V, Z) per-voice experts of the input measures
    expert_logvar: Tensor
    state: Tensor  # (B, W) temporal state after the last input measure
    prediction: Decoded | None  # over (B, ...): the target measure from target_z (and state)
    post_mu: Tensor | None = None  # (B, T, Z) posterior of every input measure (None: direct model)
    post_logvar: Tensor | None = None
    z: Tensor | None = None  # (B, T, Z) sampled (or mean) input latents
    input_prior_mu: Tensor | None = None  # (B, T, Z) temporal prior of each input measure (None: N(0, I))
    input_prior_logvar: Tensor | None = None
    prior_mu: Tensor | None = None  # (B, Z) temporal model's Gaussian for the target measure
    prior_logvar: Tensor | None = None
    target_mu: Tensor | None = None  # (B, Z) target posterior: prior ⊗ known target voices
    target_logvar: Tensor | None = None
    target_z: Tensor | None = None  # (B, Z)
    recon: Decoded | None = None  # over (B, T, ...): each input measure from its own z_t (None if not asked)
    target_expert_mu: Tensor | None = None  # (B, V, Z) experts of the target measure, if it was given
    target_expert_logvar: Tensor | None = None
    target_context: WriterContext | None = None  # what a measure writer writes the target after


def states_before(states: Tensor) -> Tensor:
    """The temporal state *before* each measure ``(B, T, W)``: zeros, then the state after the one
    before (so a measure's prior and decoder context never see the measure itself)."""
    return torch.cat([states.new_zeros(states.shape[0], 1, states.shape[-1]), states[:, :-1]], dim=1)


def draw_latents(mu: Tensor, logvar: Tensor, n_samples: int, generator: torch.Generator | None = None,
                 scale: float = 1.0) -> Tensor:
    """``n_samples`` draws z = μ + scale·σ·ε of a Gaussian ``(..., Z)`` → ``(n_samples, ..., Z)``.

    ε comes from ``generator`` on the CPU, so a seed gives the same draws on any device (the
    importance-weighted NLL, the predictive marginal and seeded generation depend on it).
    """
    eps = torch.randn((n_samples, *mu.shape), generator=generator).to(mu)
    return mu + scale * torch.exp(0.5 * logvar) * eps


def reparameterise(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = μ + σ·ε with ε ~ N(0, I) (Kingma & Welling 2014)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


@dataclass
class _Temporal:
    """The temporal model's pass over a window: the state after each measure ``(B, T, W)`` and
    the state before it (what that measure's prior and decoders read)."""

    states: Tensor
    before: Tensor

    @property
    def last(self) -> Tensor:
        """The state after the last input measure ``(B, W)``: what the target is predicted from."""
        return self.states[:, -1]


@dataclass
class _InputLatents:
    """Every input measure's prior (None: N(0, I)), posterior and latent, each ``(B, T, Z)``."""

    prior_mu: Tensor | None
    prior_logvar: Tensor | None
    post_mu: Tensor
    post_logvar: Tensor
    z: Tensor


@dataclass
class _TargetLatent:
    """The target measure's predicted Gaussian, its posterior (the prediction ⊗ the known target
    voices) and latent, each ``(B, Z)``."""

    prior_mu: Tensor
    prior_logvar: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor


def _truth(writing: Teacher | None) -> Tensor | None:
    """The target a measure writer scores (None when no writer reads tokens: factorised decoders)."""
    return None if writing is None else writing.target


class RMVAE(WritingMixin, nn.Module):
    """Recurrent Multimodal VAE over V voices (modalities) and T measures.

    Two designs share this class (``ModelConfig``): the thesis's (the temporal LSTM reads a
    sample of every measure's PoE/RPoE posterior, priors are N(0, I), decoders read z only)
    and the default one, a VRNN-style RMVAE (Chung et al. 2015): the temporal LSTM reads every
    voice's expert mean side by side, its state before a measure predicts that measure's prior,
    each measure's posterior is that prior times the measure's voice experts, and the decoders
    read z together with the temporal state. ``kind="direct"`` drops the latents altogether.

    Args:
        config: architecture (size preset, encoder kind, z_dim, RPoE, dropout, design switches).
        n_voices: V, one encoder and one decoder each (weights not shared).
        n_pitches: P, the shared pitch range.
        encoding: an :class:`~rmvae.encodings.Encoding` or its name: "mono" (tokens, C = P+2
            classes) or "poly" (activation + duration).
    """

    def __init__(self, config: ModelConfig, n_voices: int, n_pitches: int, encoding: Encoding | str,
                 target_offset: int = 1):
        super().__init__()
        if n_voices < 1 or n_pitches < 1:
            raise ValueError(f"need n_voices ≥ 1 and n_pitches ≥ 1; got {n_voices}, {n_pitches}")
        self.config = config
        self.n_voices = n_voices
        self.n_pitches = n_pitches
        self.encoding = encoding_named(encoding)
        if config.measure_decoder == "autoregressive" and not self.encoding.monophonic:
            raise ValueError("an autoregressive measure decoder writes mono tokens; use measure_decoder="
                             f"'factorised' for the {self.encoding.name} encoding")
        self.target_offset = target_offset  # the target follows the last input measure by this many
        self.has_latents = config.kind == "rmvae"
        self.n_features = self.encoding.n_features(n_pitches)
        encoder_cls, decoder_cls = {"rnn": (VoiceEncoder, VoiceDecoder), "conv": (ConvVoiceEncoder, ConvVoiceDecoder),
                                    "fc": (FCVoiceEncoder, FCVoiceDecoder)}[config.encoder]
        layers = config.layers()
        width, n_layers = layers["temporal_width"], layers["temporal_layers"]
        per_measure = config.z_dim * (n_voices if config.temporal_input == "experts" else 1)
        self.state_size = width  # the state a measure's prior and decoders read: the temporal LSTM's
        decoder_in = (config.z_dim if self.has_latents else 0) + (self.state_size if config.decoder_context else 0)
        self.encoders = nn.ModuleList(encoder_cls(self.n_features, config) for _ in range(n_voices))
        self.writer = None
        if config.measure_decoder == "autoregressive":
            self.writer = MeasureWriter(n_voices, n_pitches + 2, decoder_in, layers["writer_width"],
                                        embed=config.writer_embed, dropout=config.writer_dropout,
                                        token_dropout=config.writer_token_dropout)
        else:
            self.decoders = nn.ModuleList(decoder_cls(config, self.encoding, n_pitches, decoder_in)
                                          for _ in range(n_voices))
        # Per measure the temporal LSTM reads the experts' means side by side or z_t (zeroed where
        # no voice is present), and the voice mask.
        self.temporal = nn.LSTM(per_measure + n_voices, width, num_layers=n_layers, batch_first=True,
                                dropout=config.dropout_rnn if n_layers > 1 else 0.0)
        if self.has_latents:
            self.to_prior_mu = nn.Linear(self.state_size, config.z_dim)
            self.to_prior_logvar = nn.Linear(self.state_size, config.z_dim)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- features ---------------------------------------------------------------------------

    def features(self, x: Tensor) -> Tensor:
        """Tokens ``(..., S)`` int → one-hot ``(..., S, P+2)``; poly ``(..., S, P, 2)`` → ``(..., S, 2P)``."""
        return self.encoding.features(x, self.n_pitches)

    # --- encoder side -----------------------------------------------------------------------

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features ``(B, T, V, S, F)`` → experts ``(mu, logvar)``, each ``(B, T, V, Z)``.

        All B·T measures of a voice go through that voice's encoder in one call.
        """
        batch, measures, voices, steps, features = x.shape
        if voices != self.n_voices or steps != STEPS_PER_MEASURE or features != self.n_features:
            raise ValueError(f"features must be (B, T, {self.n_voices}, {STEPS_PER_MEASURE}, {self.n_features}); "
                             f"got {tuple(x.shape)}")
        flat = rearrange(x, "b t v s f -> v (b t) s f")
        experts = [encoder(flat[v]) for v, encoder in enumerate(self.encoders)]
        mu = rearrange(torch.stack([e[0] for e in experts]), "v (b t) z -> b t v z", b=batch)
        logvar = rearrange(torch.stack([e[1] for e in experts]), "v (b t) z -> b t v z", b=batch)
        return mu, logvar

    def encode_measure(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One new measure's features ``(B, V, S, F)`` → experts ``(B, V, Z)`` (cacheable by callers)."""
        mu, logvar = self.encode(x.unsqueeze(1))
        return mu.squeeze(1), logvar.squeeze(1)

    def posteriors(self, mu: Tensor, logvar: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Experts ``(B, T, V, Z)`` and mask ``(B, T, V)`` → posterior per measure ``(B, T, Z)``
        under ``latent_prior="standard"``.

        RPoE on: the previous posterior is the prior of the next measure; off: an independent PoE
        with N(0, I) per measure.
        """
        if self.config.rpoe:
            return recurrent_posteriors(mu, logvar, mask)
        return product_of_experts(mu, logvar, mask)

    # --- temporal model ---------------------------------------------------------------------

    def temporal_states(self, per_measure: Tensor, mask: Tensor) -> Tensor:
        """What the LSTM reads per measure ``(B, T, Z)`` (z_t) or ``(B, T, V, Z)`` (expert means)
        and the mask ``(B, T, V)`` → the state after each measure ``(B, T, W)``: the LSTM's output."""
        mask = mask.to(per_measure.dtype)  # under bf16 autocast the LSTM needs bf16 inputs
        if per_measure.dim() == 4:  # experts side by side; an absent voice reads as zeros
            per_measure = rearrange(per_measure * mask.unsqueeze(-1), "b t v z -> b t (v z)")
        else:  # left-padded empty measures carry no noise
            per_measure = per_measure * mask.amax(dim=-1, keepdim=True)
        h, _ = run_lstm(self.temporal, torch.cat([per_measure, mask], dim=-1))
        return h

    def prior(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """Temporal state ``(..., W)`` → the Gaussian of the next measure's latent ``(..., Z)`` each."""
        return self.to_prior_mu(state), self.to_prior_logvar(state)

    def predict(self, z: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Latents ``(B, T, Z)`` and mask ``(B, T, V)`` → the target measure's Gaussian ``(B, Z)`` each
        (the thesis design's temporal model)."""
        return self.prior(self.temporal_states(z, mask)[:, -1])

    def predict_from_experts(self, mu: Tensor, logvar: Tensor, mask: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """Cached experts ``(B, T, V, Z)`` → predicted Gaussian ``(B, Z)`` (posterior means, no
        sampling; None for a direct model) and the temporal state ``(B, W)`` the decoders read.

        Equals ``forward(..., sample=False)``'s ``prior_mu``/``prior_logvar``/``state``; the band
        player keeps the per-measure experts from :meth:`encode_measure` and only encodes the
        newest measure.
        """
        output = self.from_experts(mu, logvar, mask, sample=False, reconstruct=False, decode=False)
        return output.prior_mu, output.prior_logvar, output.state

    # --- decoder side -----------------------------------------------------------------------

    def decoder_input(self, z: Tensor | None, state: Tensor | None) -> Tensor:
        """What the decoders read: z, the temporal state, or both side by side (``(..., Z + W)``)."""
        parts = ([z] if self.has_latents else []) + ([state] if self.config.decoder_context else [])
        if any(part is None for part in parts):
            raise ValueError("this model's decoders need " + " and ".join(
                (["z"] if self.has_latents else []) + (["the temporal state"] if self.config.decoder_context else [])))
        if len(parts) == 2:
            parts[1] = parts[1].expand(*parts[0].shape[:-1], parts[1].shape[-1])
        return torch.cat(parts, dim=-1)

    def decode(self, z: Tensor | None, state: Tensor | None = None, truth: Tensor | None = None,
               context: WriterContext | None = None) -> Decoded:
        """Latents ``(..., Z)`` (and state ``(..., W)``) → every voice's logits, ``(..., V, S, ...)``.

        A measure writer scores a given measure ``truth`` (tokens ``(..., V, S)``) teacher-forced,
        after ``context`` (the output's ``target_context``; None = nothing known before it), both
        broadcast over the latents' leading dimensions; factorised decoders ignore both.
        """
        x = self.decoder_input(z, state)
        if self.writer is not None and truth is not None:
            lead = x.shape[:-1]
            truth = truth.expand(*lead, *truth.shape[-2:])
            context = WriterContext(self.unknown_like(truth)) if context is None else context.expand(lead)
        return self.decode_inputs(x, truth, context)

    def write_first_measures(self, eps: Tensor, sampling: TokenSampling = TokenSampling(),
                             generator: torch.Generator | None = None) -> Tensor:
        """Standard normal noise ``(N, Z)`` → measures ``(N, V, S)`` written as if each began a piece:
        z drawn from the first measure's prior (N(0, I), or the temporal prior of the empty state)."""
        state = eps.new_zeros(len(eps), self.state_size)
        if self.config.latent_prior == "temporal":
            mu, logvar = self.prior(state)
            eps = mu + torch.exp(0.5 * logvar) * eps
        return self.write(eps, state, sampling=sampling, generator=generator)

    def decode_inputs(self, x: Tensor, truth: Tensor | None = None, context: WriterContext | None = None) -> Decoded:
        """:meth:`decoder_input` ``(..., Z + W)`` → every voice's logits, ``(..., V, S, ...)`` (a writer
        also needs the measures it scores ``(..., V, S)`` and their context, one row per measure)."""
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        if self.writer is not None:
            if truth is None or context is None:
                raise ValueError("an autoregressive measure decoder scores given measures (teacher forcing); "
                                 "use RMVAE.write to generate one")
            decoded = self.write_inputs(flat, truth.reshape(-1, *truth.shape[-2:]), context)
            return decoded.map(lambda value: value.reshape(*lead, *value.shape[1:]))
        outputs = [decoder(flat) for decoder in self.decoders]
        first = torch.stack([o[0] for o in outputs], dim=1).reshape(*lead, self.n_voices, *outputs[0][0].shape[1:])
        second = torch.stack([o[1] for o in outputs], dim=1).reshape(*lead, self.n_voices, *outputs[0][1].shape[1:])
        return self.encoding.as_decoded(first, second)

    # --- full pass --------------------------------------------------------------------------

    def forward(self, inputs: Tensor, input_mask: Tensor, target: Tensor | None = None,
                target_mask: Tensor | None = None, sample: bool = True, reconstruct: bool = True,
                decode: bool = True) -> RMVAEOutput:
        """Encode a window, predict the next measure's latent, decode both.

        Args:
            inputs: tokens ``(B, T, V, S)`` (mono) or ``(B, T, V, S, P, 2)`` (poly).
            input_mask: ``(B, T, V)``, 1 = voice present.
            target: the target measure ``(B, V, S)`` / ``(B, V, S, P, 2)``; only its known voices are used.
            target_mask: ``(B, V)``, the target voices that are known (conditioning for fill,
                harmonize, inpaint); None or all zero = pure prediction.
            sample: reparameterised samples (training) or posterior means.
            reconstruct: also decode every input measure from its own z_t (``recon``).
            decode: False = stop after the target's latent (generation writes it with :meth:`write`).
        """
        batch, measures, voices = input_mask.shape
        x = self.features(inputs)
        if x.shape[:3] != (batch, measures, voices):
            raise ValueError(f"inputs {tuple(inputs.shape)} do not match input_mask {tuple(input_mask.shape)}")
        conditioned = (self.has_latents and target is not None and target_mask is not None
                       and bool((target_mask != 0).any()))
        if conditioned:
            target_x = self.features(target)
            if target_x.shape[:2] != (batch, voices) or target_mask.shape != (batch, voices):
                raise ValueError(f"target {tuple(target.shape)} / target_mask {tuple(target_mask.shape)} "
                                 f"do not match (B, V) = ({batch}, {voices})")
            x = torch.cat([x, target_x.unsqueeze(1)], dim=1)  # encode the target in the same call
        mu, logvar = self.encode(x)
        target_mu = target_logvar = None
        if conditioned:
            mu, target_mu = mu[:, :measures], mu[:, measures]
            logvar, target_logvar = logvar[:, :measures], logvar[:, measures]
        # A writer scores the target it is given; with no target it only predicts the latent (RMVAE.write).
        return self.from_experts(mu, logvar, input_mask, target_mu, target_logvar,
                                 target_mask if conditioned else None, sample=sample, reconstruct=reconstruct,
                                 decode=decode and (self.writer is None or target is not None),
                                 teacher=Teacher(inputs, target))

    def from_experts(self, mu: Tensor, logvar: Tensor, input_mask: Tensor, target_expert_mu: Tensor | None = None,
                     target_expert_logvar: Tensor | None = None, target_mask: Tensor | None = None,
                     sample: bool = True, reconstruct: bool = True,
                     recon_measures: Tensor | None = None, decode: bool = True,
                     teacher: Teacher | None = None, writer_context: WriterContext | None = None) -> RMVAEOutput:
        """The part of :meth:`forward` after the encoders, so the sub-sampled ELBO can encode once
        and run several voice subsets (masks) through it.

        Args:
            mu, logvar: input experts ``(B, T, V, Z)``.
            input_mask: ``(B, T, V)``.
            target_expert_mu, target_expert_logvar: target-measure experts ``(B, V, Z)`` or None.
            target_mask: ``(B, V)`` known target voices, or None.
            recon_measures: ``(B, k)`` indices of the input measures to reconstruct (None = all
                T); ``recon`` then covers those k measures, in that order.
            decode: False = stop after the target's latent (``prediction`` is None).
            teacher: the tokens a measure writer reads and scores (needed to decode with one).
            writer_context: the target's context from another term of the same window, reused
                (``model.writer_context="window"``: the pass over the window's tokens is shared).
        """
        writes = self.writer is not None and teacher is not None
        # The default design runs the temporal model over the experts, before any latent; the
        # thesis's over the sampled latents, so its pass waits for them.
        temporal = self._temporal_pass(mu, input_mask) if self.config.temporal_input == "experts" else None
        if not self.has_latents:
            return self._direct_output(mu, logvar, input_mask, temporal, teacher if writes else None, decode,
                                       writer_context)
        inputs = self._input_latents(mu, logvar, input_mask, temporal, sample)
        if temporal is None:
            temporal = self._temporal_pass(inputs.z, input_mask)
        target = self._target_latent(temporal.last, target_expert_mu, target_expert_logvar, target_mask, sample)
        context = window_recon = None
        if writes:
            context, window_recon = self.target_context(teacher.inputs, input_mask, inputs.z, temporal.before,
                                                        writer_context)
        recon, prediction = self._decode_window(inputs.z, temporal, target.z, input_mask, recon_measures,
                                                teacher if writes else None, context, window_recon,
                                                reconstruct, decode)
        return RMVAEOutput(expert_mu=mu, expert_logvar=logvar, state=temporal.last, prediction=prediction,
                           post_mu=inputs.post_mu, post_logvar=inputs.post_logvar, z=inputs.z,
                           input_prior_mu=inputs.prior_mu, input_prior_logvar=inputs.prior_logvar,
                           prior_mu=target.prior_mu, prior_logvar=target.prior_logvar, target_mu=target.mu,
                           target_logvar=target.logvar, target_z=target.z, recon=recon,
                           target_expert_mu=target_expert_mu, target_expert_logvar=target_expert_logvar,
                           target_context=context)

    # --- the steps of from_experts ----------------------------------------------------------

    def _temporal_pass(self, per_measure: Tensor, mask: Tensor) -> _Temporal:
        """The temporal model over the window: the state after each measure and the one before it."""
        states = self.temporal_states(per_measure, mask)  # (B, T, W)
        return _Temporal(states, states_before(states))

    def _direct_output(self, mu: Tensor, logvar: Tensor, input_mask: Tensor, temporal: _Temporal,
                       writing: Teacher | None, decode: bool, writer_context: WriterContext | None) -> RMVAEOutput:
        """A model without latents (``kind="direct"``): the target decoded from the temporal state alone.
        ``writing``: the teacher when a measure writer scores the tokens, else None."""
        state = temporal.last
        context = None
        if writing is not None:
            context = self.target_context(writing.inputs, input_mask, None, temporal.before, writer_context)[0]
        prediction = self.decode(None, state, _truth(writing), context) if decode else None
        return RMVAEOutput(expert_mu=mu, expert_logvar=logvar, state=state, prediction=prediction,
                           target_context=context)

    def _input_latents(self, mu: Tensor, logvar: Tensor, mask: Tensor, temporal: _Temporal | None,
                       sample: bool) -> _InputLatents:
        """Every input measure's posterior and latent: the temporal prior before the measure times its
        voice experts (``latent_prior="temporal"``), or the PoE/RPoE of the experts with N(0, I)."""
        prior_mu = prior_logvar = None
        if self.config.latent_prior == "temporal":
            prior_mu, prior_logvar = self.prior(temporal.before)  # (B, T, Z)
            post_mu, post_logvar = product_of_experts(mu, logvar, mask, prior_mu=prior_mu, prior_logvar=prior_logvar)
        else:
            post_mu, post_logvar = self.posteriors(mu, logvar, mask)
        z = reparameterise(post_mu, post_logvar) if sample else post_mu  # (B, T, Z)
        return _InputLatents(prior_mu, prior_logvar, post_mu, post_logvar, z)

    def _target_latent(self, state: Tensor, expert_mu: Tensor | None, expert_logvar: Tensor | None,
                       mask: Tensor | None, sample: bool) -> _TargetLatent:
        """The target measure's latent: the temporal model's prediction from the last state, joined by
        the known target voices' experts when there are any (fill, harmonize, the target posterior)."""
        prior_mu, prior_logvar = self.prior(state)  # (B, Z)
        mu, logvar = prior_mu, prior_logvar
        if expert_mu is not None and mask is not None:
            # The predicted Gaussian is the prior expert of the target measure; known voices join it.
            mu, logvar = product_of_experts(expert_mu, expert_logvar, mask, prior_mu=prior_mu, prior_logvar=prior_logvar)
        z = reparameterise(mu, logvar) if sample else mu  # (B, Z)
        return _TargetLatent(prior_mu, prior_logvar, mu, logvar, z)

    def _decode_window(self, z: Tensor, temporal: _Temporal, target_z: Tensor, input_mask: Tensor,
                       recon_measures: Tensor | None, writing: Teacher | None, context: WriterContext | None,
                       window_recon: Decoded | None, reconstruct: bool,
                       decode: bool) -> tuple[Decoded | None, Decoded | None]:
        """``(recon, prediction)``: the input measures (when asked) and the target, decoded.

        A window writer has already reconstructed every input measure in its pass over the window;
        otherwise the input measures and the target go through the decoders in one call. ``writing``:
        the teacher when a measure writer scores the tokens, else None (factorised decoders read none).
        """
        truth = _truth(writing)
        if reconstruct and window_recon is not None:
            recon = window_recon if recon_measures is None else window_recon.map(
                lambda value: pick_measures(value, recon_measures))
            return recon, self.decode(target_z, temporal.last, truth, context) if decode else None
        if reconstruct:
            return self._decode_measures_and_target(z, temporal, target_z, input_mask, recon_measures, writing,
                                                    context)
        return None, self.decode(target_z, temporal.last, truth, context) if decode else None

    def _decode_measures_and_target(self, z: Tensor, temporal: _Temporal, target_z: Tensor, input_mask: Tensor,
                                    recon_measures: Tensor | None, writing: Teacher | None,
                                    context: WriterContext | None) -> tuple[Decoded, Decoded]:
        """One decoder call per voice for the chosen input measures (each from its own z_t and the
        state before it) and the target together: ``(recon (B, T or k, ...), prediction (B, ...))``."""
        batch = input_mask.shape[0]
        z_recon = z if recon_measures is None else pick_measures(z, recon_measures)  # (B, T or k, Z)
        n_recon = z_recon.shape[1]
        recon_input = self.decoder_input(z_recon, None if not self.config.decoder_context else (
            temporal.before if recon_measures is None else pick_measures(temporal.before, recon_measures)))
        target_input = self.decoder_input(target_z, temporal.last)
        measures_truth = measures_context = None
        if writing is not None:
            measures_truth, measures_context = self.measure_contexts(writing.inputs, input_mask, recon_measures,
                                                                     context)
            measures_truth = torch.cat([measures_truth, writing.target])
        decoded = self.decode_inputs(torch.cat([rearrange(recon_input, "b t f -> (b t) f"), target_input]),
                                     measures_truth, measures_context)
        n_inputs = batch * n_recon
        recon = decoded.map(lambda value: value[:n_inputs].reshape(batch, n_recon, *value.shape[1:]))
        return recon, decoded.map(lambda value: value[n_inputs:])

    @torch.no_grad()
    def predictive_marginal(self, mu: Tensor, logvar: Tensor, state: Tensor, n_samples: int,
                            generator: torch.Generator | None = None) -> Decoded:
        """Each step's token distribution under the predictive mixture, E_z[p(x_s | z)] with
        z ~ N(mu, e^logvar) ``(B, Z)`` (``n_samples`` draws), in the heads' own parametrisation.

        Greedy decoding of this is the most likely token of every step under the model's
        predictive distribution; decoding the mean latent instead can fall where no sample goes.
        """
        decoded = self.decode(draw_latents(mu, logvar, n_samples, generator), state)  # state broadcasts over draws
        return self.encoding.predictive_mean(decoded)

    # --- output heads → symbols -------------------------------------------------------------

    @torch.no_grad()
    def decode_tokens(self, decoded: Decoded, temperature: float = 0.0, top_k: int | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
        """Turn head outputs into symbols (:meth:`rmvae.encodings.Encoding.decode_tokens`).

        mono: greedy (``temperature == 0``): note_continue where sigmoid(hold) ≥ 0.5, else the
        argmax of pitches+rest; sampled: hold and pitch drawn at ``temperature`` over the ``top_k``
        most likely classes; tokens ``(..., V, S)`` int64. poly: a note wherever sigmoid(activation)
        ≥ 0.5 (or sampled), its duration rounded to ≥ 1 sixteenth; ``(..., V, S, P, 2)`` float.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be ≥ 0; got {temperature}")
        return self.encoding.decode_tokens(decoded, temperature, top_k, generator)
