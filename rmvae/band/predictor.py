"""What the band computes at each bar line: the measure the model was trained to predict,
``data.offset`` measures after the last one played (the checkpoint's offset, which the engine
schedules by; the predictor only runs the model on the window).

A predictor is fed the measures as they complete (:meth:`push`: tokens ``(V, S)`` and the
voices present ``(V,)``) and returns the predicted measure (:meth:`predict`: tokens ``(V, S)``,
rests outside the band's voices). Two implementations give the same result:

- :class:`CachedPredictor` keeps each measure's voice experts in a deque of the last
  ``n_measures``: a bar line encodes one measure (just the player's voice when the band's part
  was encoded ahead, :meth:`CachedPredictor.encode_ahead`), then runs the (R)PoE, the temporal
  LSTM and the band voices' decoders.
- :class:`NaivePredictor` keeps the tokens and re-encodes the whole window every time (the
  reference for the latency benchmark and the equivalence test).

The window is left-padded to ``n_measures`` with absent measures (mask 0), as in training
(:class:`rmvae.data.datamodule.WindowDataset`). The player's voice of the predicted measure is
unknown when it is predicted, so the prediction uses the past only (no target mask).
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch
from torch import Tensor

from rmvae.config import STEPS_PER_MEASURE
from rmvae.model.rmvae import RMVAE
from rmvae.model.writer import TokenSampling, WriterContext


class _Predictor:
    """Shared parts: the window length, the decoding of the band voices, sampling options."""

    def __init__(self, model: RMVAE, n_measures: int, band_voices, temperature: float = 0.0,
                 top_k: int | None = None, seed: int | None = None, offset: int = 2):
        if not isinstance(model, RMVAE):
            raise ValueError("the band player needs an RMVAE or direct-predictor checkpoint (its per-measure encoders "
                             "are what a bar line updates); this one is the autoregressive baseline")
        if not model.encoding.monophonic:
            raise ValueError("the band player needs a model trained on the mono encoding")
        if model.writes_window:
            raise ValueError("the band player caches each measure's experts; a writer that runs on over the whole "
                             "window is not cached: train the band's checkpoint with --model.writer_context=measure")
        if n_measures < 1:
            raise ValueError(f"n_measures must be ≥ 1; got {n_measures}")
        self.model = model.eval()
        self.n_measures = n_measures
        self.offset = offset  # the checkpoint's data.offset: the engine schedules predictions by it
        self.band_voices = tuple(int(v) for v in band_voices)
        if not self.band_voices or min(self.band_voices) < 0 or max(self.band_voices) >= model.n_voices:
            raise ValueError(f"band voices {self.band_voices} must be in [0, {model.n_voices})")
        self.temperature = temperature
        self.top_k = top_k
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.n_pushed = 0
        self.last: tuple[Tensor, Tensor] | None = None  # the last pushed measure (V, S) and its voices (V,)

    def _remember(self, tokens: Tensor, mask: Tensor) -> None:
        self.last = (tokens, mask)
        self.n_pushed += 1

    def _as_inputs(self, tokens: np.ndarray, mask: np.ndarray) -> tuple[Tensor, Tensor]:
        tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        mask = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        expected = (self.model.n_voices, STEPS_PER_MEASURE)
        if tuple(tokens.shape) != expected or tuple(mask.shape) != expected[:1]:
            raise ValueError(f"a measure is tokens {expected} and mask ({expected[0]},); "
                             f"got {tuple(tokens.shape)}, {tuple(mask.shape)}")
        return tokens, mask

    def _pad(self, rows: list[Tensor], fill: Tensor) -> Tensor:
        """Left-pad a list of per-measure rows to ``n_measures`` and stack: ``(1, T, ...)``."""
        missing = self.n_measures - len(rows)
        return torch.stack([fill] * missing + list(rows)).unsqueeze(0)

    def _previous(self) -> WriterContext | None:
        """What a measure writer writes the predicted measure after: the last pushed measure
        ``(1, V, S)`` when the model predicts the next one, unknown (None) when it predicts further."""
        if self.offset != 1 or self.last is None:
            return None
        tokens, mask = self.last
        return WriterContext(self.model.visible(tokens, mask).unsqueeze(0))

    @torch.inference_mode()
    def decode(self, z: Tensor | None, state: Tensor | None = None) -> np.ndarray:
        """Latent ``(1, Z)`` (and temporal state ``(1, W)``) → tokens ``(V, S)``: the band voices
        decoded, rests elsewhere.

        Factorised decoders: only the band voices' decoders run (the player's part of that measure
        is the player's). A measure writer writes every voice token by token, so the band's voices
        hear the player's voice the model expects, which is then dropped.
        """
        tokens = np.full((self.model.n_voices, STEPS_PER_MEASURE), self.model.n_pitches, dtype=np.int64)
        if self.model.writer is not None:
            written = self.model.write(z, state, self._previous(), sampling=TokenSampling(self.temperature, self.top_k),
                                       generator=self.generator)[0]  # (V, S)
            tokens[list(self.band_voices)] = written[list(self.band_voices)].numpy()
            return tokens
        x = self.model.decoder_input(z, state)
        outputs = [self.model.decoders[v](x) for v in self.band_voices]
        decoded = self.model.encoding.as_decoded(torch.stack([o[0] for o in outputs], dim=1),  # (1, Vb, S, P+1)
                                                 torch.stack([o[1] for o in outputs], dim=1))  # (1, Vb, S)
        band = self.model.decode_tokens(decoded, self.temperature, self.top_k, self.generator)[0]  # (Vb, S)
        tokens[list(self.band_voices)] = band.numpy()
        return tokens

    def encode_ahead(self, tokens: np.ndarray, voices) -> None:
        """Work that can be done before the measure is complete (none by default)."""

    def predict(self) -> np.ndarray:
        """Tokens ``(V, S)`` of the measure the checkpoint predicts: ``data.offset`` after the last pushed one."""
        prior_mu, _, state = self.latent()
        return self.decode(prior_mu, state)


class CachedPredictor(_Predictor):
    """Encodes each measure once and keeps the last ``n_measures`` experts.

    Only present voices are encoded (an absent expert is masked out of every product). The
    band's own part of a measure is fixed when the measure starts, a whole measure before the
    measure is pushed, so :meth:`encode_ahead` can encode it in the worker's idle time; at the
    bar line :meth:`push` then encodes just the player's voice.

    Args:
        model: a trained :class:`~rmvae.model.rmvae.RMVAE` (mono encoding).
        n_measures: the window length the model was trained with.
        band_voices: the voices to decode.
        temperature, top_k, seed: sampling of :meth:`RMVAE.decode_tokens` (0 = greedy).
    """

    def __init__(self, model: RMVAE, n_measures: int, band_voices, temperature: float = 0.0,
                 top_k: int | None = None, seed: int | None = None, offset: int = 2):
        super().__init__(model, n_measures, band_voices, temperature, top_k, seed, offset)
        self.mu: deque[Tensor] = deque(maxlen=n_measures)  # each (V, Z)
        self.logvar: deque[Tensor] = deque(maxlen=n_measures)
        self.mask: deque[Tensor] = deque(maxlen=n_measures)  # each (V,)
        voices, z_dim = model.n_voices, model.config.z_dim
        self._zeros = torch.zeros(voices, z_dim)
        self._absent = torch.zeros(voices, dtype=torch.bool)
        self._ahead: dict[int, tuple[Tensor, Tensor, Tensor]] = {}  # voice → (tokens (S,), mu (Z,), logvar (Z,))
        self.n_encoded = 0  # voice-measures encoded, ahead or at a push

    def _encode_voice(self, voice: int, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """One voice's measure ``(S,)`` → its expert ``(Z,)``, ``(Z,)``."""
        self.n_encoded += 1
        mu, logvar = self.model.encoders[voice](self.model.features(tokens.unsqueeze(0)))  # (1, Z)
        return mu[0], logvar[0]

    @torch.inference_mode()
    def encode_ahead(self, tokens: np.ndarray, voices) -> None:
        """Encode ``voices`` of the measure the next :meth:`push` will bring, ahead of time.

        :meth:`push` uses these experts only where its tokens are the same.
        """
        tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        self._ahead = {int(v): (tokens[v].clone(), *self._encode_voice(int(v), tokens[v])) for v in voices}

    @torch.inference_mode()
    def push(self, tokens: np.ndarray, mask: np.ndarray) -> None:
        """Cache the experts ``(V, Z)`` of one completed measure ``(V, S)`` (present voices encoded)."""
        tokens, mask = self._as_inputs(tokens, mask)
        mu, logvar = self._zeros.clone(), self._zeros.clone()
        for voice in torch.nonzero(mask).flatten().tolist():
            ahead = self._ahead.get(voice)
            if ahead is not None and torch.equal(ahead[0], tokens[voice]):
                mu[voice], logvar[voice] = ahead[1], ahead[2]
            else:
                mu[voice], logvar[voice] = self._encode_voice(voice, tokens[voice])
        self._ahead = {}
        self.mu.append(mu)
        self.logvar.append(logvar)
        self.mask.append(mask)
        self._remember(tokens, mask)

    @torch.inference_mode()
    def latent(self) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """The predicted Gaussian ``(1, Z)`` of the target measure from the cached window and the
        temporal state ``(1, W)`` (see :meth:`RMVAE.predict_from_experts`)."""
        mu = self._pad(list(self.mu), self._zeros)  # (1, T, V, Z)
        logvar = self._pad(list(self.logvar), self._zeros)
        mask = self._pad(list(self.mask), self._absent)  # (1, T, V)
        return self.model.predict_from_experts(mu, logvar, mask)


class NaivePredictor(_Predictor):
    """Keeps the window's tokens and re-encodes all of it at every prediction (benchmark reference)."""

    def __init__(self, model: RMVAE, n_measures: int, band_voices, temperature: float = 0.0,
                 top_k: int | None = None, seed: int | None = None, offset: int = 2):
        super().__init__(model, n_measures, band_voices, temperature, top_k, seed, offset)
        self.tokens: deque[Tensor] = deque(maxlen=n_measures)  # each (V, S)
        self.mask: deque[Tensor] = deque(maxlen=n_measures)
        self._rest = torch.full((model.n_voices, STEPS_PER_MEASURE), model.n_pitches, dtype=torch.long)
        self._absent = torch.zeros(model.n_voices, dtype=torch.bool)

    def push(self, tokens: np.ndarray, mask: np.ndarray) -> None:
        tokens, mask = self._as_inputs(tokens, mask)
        self.tokens.append(tokens)
        self.mask.append(mask)
        self._remember(tokens, mask)

    @torch.inference_mode()
    def latent(self) -> tuple[Tensor | None, Tensor | None, Tensor]:
        tokens = self._pad(list(self.tokens), self._rest)  # (1, T, V, S)
        mask = self._pad(list(self.mask), self._absent)  # (1, T, V)
        mu, logvar = self.model.encode(self.model.features(tokens))  # (1, T, V, Z)
        return self.model.predict_from_experts(mu, logvar, mask)
