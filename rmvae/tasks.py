"""Music from a trained model: complete, fill, harmonize, redo, noise, inpaint, interpolate (docs/design.md §5).

Every task works on a piece of *measures* — tokens ``(T, V, S)`` (mono) or activation/duration
arrays ``(T, V, S, P, 2)`` (poly) — and a presence mask ``(T, V)`` saying which voice-measures
the model may look at. Measures are generated in time order; each prediction reads the
``n_measures`` measures ending ``offset`` before it (left-padded and masked near the start, so a
task can begin at measure 1) and, for fill/harmonize/inpaint, the voices already known in the
measure being generated (their experts join the temporal model's prediction in the PoE).
Greedy decoding is deterministic; sampling draws from a seeded ``torch.Generator``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from rmvae.config import STEPS_PER_MEASURE
from rmvae.model.rmvae import draw_latents
from rmvae.model.writer import TokenSampling
from rmvae.module import RMVAEModule


class TaskError(ValueError):
    """A task cannot run on this input; the message says why and what to change."""


@dataclass(frozen=True)
class Sampling:
    """How a measure is drawn: its latent, then its symbols.

    ``latent_temperature`` τ draws z = μ + τ·σ·ε from the predicted Gaussian (0 = its mean);
    ``temperature`` samples the tokens (0 = greedy), over the ``top_k`` most likely classes and
    the nucleus of mass ``top_p`` (an autoregressive measure decoder only). Latent sampling with
    greedy tokens varies the measure as a whole (the VAE's way to avoid loops); token sampling
    varies every token, which a writer draws hearing the tokens drawn before it.
    """

    temperature: float = 0.0
    top_k: int | None = None
    seed: int = 0
    latent_temperature: float = 0.0
    top_p: float | None = None
    no_parallels: bool = False  # a measure writer never draws a parallel fifth or octave
    dissonance_penalty: float = 0.0  # nats off a writer's token per voice it clashes with (TokenSampling)

    def __post_init__(self):
        if not self.temperature >= 0:  # also refuses NaN
            raise TaskError(f"--temperature must be ≥ 0 (0 = greedy); got {self.temperature}")
        if not self.latent_temperature >= 0:
            raise TaskError(f"--latent-temperature must be ≥ 0 (0 = the predicted mean); got {self.latent_temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise TaskError(f"--top-k must be at least 1; got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise TaskError(f"--top-p must be in (0, 1]; got {self.top_p}")
        if not self.dissonance_penalty >= 0:
            raise TaskError(f"--dissonance-penalty must be ≥ 0 (0 = off); got {self.dissonance_penalty}")

    @property
    def tokens(self) -> TokenSampling:
        """How each token is drawn (:class:`rmvae.model.writer.TokenSampling`)."""
        return TokenSampling(self.temperature, self.top_k, self.top_p, self.no_parallels, self.dissonance_penalty)

    def generator(self) -> torch.Generator | None:
        return torch.Generator().manual_seed(self.seed) if self.temperature > 0 or self.latent_temperature > 0 else None


# The default decoding of a measure writer's checkpoint (`rmvae generate` and the
# `default` mode of every evaluation): the candidate of benchmarks/decoding_choice.py whose
# validation continuations are nearest Bach's statistics (docs/results.md, "Decoding").
WRITER_DECODING = Sampling(temperature=0.9, no_parallels=True)


# A task's own default decoding where the validation split chose another one. Harmonize writes
# three voices around a given melody: without a penalty its harmonizations of the validation
# sopranos are 23 % more dissonant than Bach's, with λ = 0.5 6 % less, with λ = 1 28 % less
# (benchmarks/harmonize_statistics.py --split val; docs/results.md, "Decoding").
TASK_DECODING: dict[str, Sampling] = {"harmonize": replace(WRITER_DECODING, dissonance_penalty=0.5)}


def default_sampling(module: RMVAEModule, seed: int = 0, task: str | None = None) -> Sampling:
    """The default decoding of ``task`` (:data:`TASK_DECODING`, else :data:`WRITER_DECODING`) for a
    checkpoint that writes tokens one at a time, else greedy (a factorised decoder's sampled
    tokens do not hear each other)."""
    if not module.config.model.writes:
        return Sampling(seed=seed)
    return replace(TASK_DECODING.get(task, WRITER_DECODING), seed=seed)


@dataclass
class Piece:
    """Measures of a piece with what is known about them.

    Attributes:
        measures: ``(T, V, S)`` tokens or ``(T, V, S, P, 2)`` poly arrays.
        generated: ``(T, V)`` bool, voice-measures written by the model (pianorolls mark them).
        key_shift: transposition applied on reading, undone when rendering.
        tempo: beats per minute, kept for rendering.
    """

    measures: np.ndarray
    generated: np.ndarray
    key_shift: int = 0
    tempo: float = 120.0

    @property
    def n_measures(self) -> int:
        return self.measures.shape[0]


class Composer:
    """Runs a trained module measure by measure under ``torch.inference_mode``."""

    def __init__(self, module: RMVAEModule, sampling: Sampling = Sampling()):
        self.module = module.eval()
        self.model = module.model
        self.pitch_range = module.pitch_range
        self.n_voices = module.n_voices
        self.n_window = module.config.data.n_measures
        self.offset = module.config.data.offset
        self.sampling = sampling
        self._generator = sampling.generator()

    # --- building blocks --------------------------------------------------------------------

    def empty(self, n_measures: int) -> np.ndarray:
        """Silent measures ``(T, V, S[, P, 2])``."""
        return self.module.encoding.empty(n_measures, self.n_voices, self.pitch_range)

    def _window(self, measures: np.ndarray, present: np.ndarray, target: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(1, W, V, S…)`` and mask ``(1, W, V)`` for the prediction of measure ``target``."""
        last = target - self.offset
        first = last - self.n_window + 1
        window = self.empty(self.n_window)
        mask = np.zeros((self.n_window, self.n_voices), dtype=bool)
        source = np.arange(first, last + 1)
        valid = (source >= 0) & (source < len(measures))
        window[valid] = measures[source[valid]]
        mask[valid] = present[source[valid]]
        return torch.from_numpy(window)[None], torch.from_numpy(mask)[None]

    @torch.inference_mode()
    def predict(self, measures: np.ndarray, present: np.ndarray, target: int,
                known: np.ndarray | None = None) -> np.ndarray:
        """One measure ``(V, S…)`` for index ``target``, conditioned on the known voices there.

        Args:
            measures: the piece so far; rows at or after ``target`` are only read for ``known`` voices.
            present: ``(T, V)``, which voice-measures the model may read.
            known: ``(V,)`` voices of the target measure given as conditioning (fill/harmonize/inpaint).
        """
        inputs, mask = self._window(measures, present, target)
        known_measure = known_mask = None
        if known is not None and known.any() and target < len(measures):
            known_measure = torch.from_numpy(np.asarray(measures[target]))[None]
            known_mask = torch.from_numpy(np.asarray(known, dtype=bool))[None]
        try:
            if self.module.config.model.kind == "autoregressive":
                return self.model.write(inputs, mask, known_measure, known_mask, self.sampling.tokens,
                                        self._generator)[0].numpy()
            if known_mask is not None and not self.model.has_latents:
                raise TaskError("this checkpoint is a direct predictor (model.kind=direct): it cannot condition on "
                                "known voices; use --task complete, or a checkpoint of the RMVAE")
            output = self.model(inputs, mask, known_measure, known_mask, sample=False, reconstruct=False, decode=False)
            z = output.target_z
            if self.sampling.latent_temperature > 0 and self.model.has_latents:
                z = draw_latents(output.target_mu, output.target_logvar, 1, self._generator,
                                 scale=self.sampling.latent_temperature)[0]
            return self.model.write(z, output.state, output.target_context, known_measure, known_mask, self.sampling.tokens,
                                    self._generator)[0].numpy()
        except ValueError as error:  # e.g. top-p with a factorised decoder
            if isinstance(error, TaskError):
                raise
            raise TaskError(str(error)) from None

    # --- tasks ------------------------------------------------------------------------------

    def complete(self, piece: Piece, n_new: int) -> Piece:
        """Append ``n_new`` measures of every voice, each predicted from the measures before it."""
        if n_new < 1:
            raise TaskError("--measures must be at least 1 to complete a piece")
        measures = np.concatenate([piece.measures, self.empty(n_new)])
        present = np.ones(measures.shape[:2], dtype=bool)
        for target in range(piece.n_measures, len(measures)):
            measures[target] = self.predict(measures, present, target)
        generated = np.concatenate([piece.generated, np.ones((n_new, self.n_voices), dtype=bool)])
        return replace(piece, measures=measures, generated=generated)

    def inpaint(self, piece: Piece, regenerate: np.ndarray) -> Piece:
        """Regenerate every voice-measure where ``regenerate`` ``(T, V)`` is True, in time order.

        Hidden voice-measures are invisible to the model until they have been regenerated; the
        voices kept in a measure condition its prediction.
        """
        regenerate = np.asarray(regenerate, dtype=bool)
        if regenerate.shape != piece.measures.shape[:2]:
            raise TaskError(f"mask covers {regenerate.shape[0]}×{regenerate.shape[1]} measures×voices, "
                            f"the piece has {piece.measures.shape[0]}×{piece.measures.shape[1]}")
        if regenerate.all():
            raise TaskError("the mask hides every voice of every measure: nothing is left to condition on; "
                            "use --task noise or --task complete to write music from scratch")
        if not regenerate.any():
            raise TaskError("the mask selects nothing to regenerate")
        measures = piece.measures.copy()
        present = ~regenerate
        for target in np.flatnonzero(regenerate.any(axis=1)):
            voices = regenerate[target]
            predicted = self.predict(measures, present, target, known=~voices)
            measures[target, voices] = predicted[voices]
            present[target, voices] = True
        return replace(piece, measures=measures, generated=piece.generated | regenerate)

    def fill(self, piece: Piece, voices: list[int]) -> Piece:
        """Regenerate whole voices from the others, measure by measure."""
        self._check_voices(voices)
        if len(set(voices)) == self.n_voices:
            raise TaskError("fill needs at least one voice to keep; to rewrite everything use --task redo")
        regenerate = np.zeros(piece.measures.shape[:2], dtype=bool)
        regenerate[:, voices] = True
        return self.inpaint(piece, regenerate)

    def harmonize(self, melody: np.ndarray, melody_voice: int = 0, key_shift: int = 0, tempo: float = 120.0) -> Piece:
        """A one-voice melody ``(T, 1, S…)`` becomes voice ``melody_voice``; the others are filled."""
        self._check_voices([melody_voice])
        if melody.shape[1] != 1:
            raise TaskError(f"harmonize takes a one-voice melody; this input has {melody.shape[1]} voices")
        measures = self.empty(len(melody))
        measures[:, melody_voice] = melody[:, 0]
        piece = Piece(measures, np.zeros(measures.shape[:2], dtype=bool), key_shift, tempo)
        return self.fill(piece, [v for v in range(self.n_voices) if v != melody_voice])

    def redo(self, piece: Piece) -> Piece:
        """Fill every voice in turn, so the whole piece is rewritten by the model."""
        for voice in range(self.n_voices):
            piece = self.fill(piece, [voice])
        return piece

    def noise(self, kind: str, n_seed: int, n_new: int) -> Piece:
        """Seed with random measures, then complete: the model writes its own music.

        gaussian: latents z ~ N(0, I) decoded into seed measures; uniform: every step a uniform
        random symbol; binomial: each step starts a random pitch with probability 1/4, else holds.
        """
        if n_seed < 1 or n_new < 1:
            raise TaskError(f"noise needs at least 1 seed and 1 new measure (--measures); got {n_seed} and {n_new}")
        rng = np.random.default_rng(self.sampling.seed)
        if kind == "gaussian":
            if not self.model.has_latents:
                raise TaskError("gaussian noise decodes random latents; a direct predictor has none: use uniform or binomial")
            with torch.inference_mode():
                eps = torch.from_numpy(rng.standard_normal((n_seed, self.model.config.z_dim)).astype(np.float32))
                seed = self.model.write_first_measures(eps, self.sampling.tokens, self._generator).numpy()
        elif kind in ("uniform", "binomial"):
            if not self.module.encoding.monophonic:
                raise TaskError(f"{kind} noise seeds are defined for the mono encoding; use gaussian")
            shape = (n_seed, self.n_voices, STEPS_PER_MEASURE)
            if kind == "uniform":
                seed = rng.integers(0, self.pitch_range.n_classes, size=shape)
            else:
                onset = rng.random(shape) < 0.25
                onset[..., 0] = True
                seed = np.where(onset, rng.integers(0, self.pitch_range.n_pitches, size=shape), self.pitch_range.hold)
        else:
            raise TaskError(f"unknown noise kind {kind!r}; choose gaussian, uniform or binomial")
        piece = Piece(np.asarray(seed), np.zeros(seed.shape[:2], dtype=bool))
        return self.complete(piece, n_new)

    @torch.inference_mode()
    def interpolate(self, piece_a: Piece, piece_b: Piece, n_measures: int = 4, n_points: int = 5) -> Piece:
        """Decode ``n_points`` blends of the two pieces' first measures' posterior means (PoE of all voices)."""
        if not self.model.has_latents:
            raise TaskError("interpolation blends latents; a direct predictor (model.kind=direct) has none")
        length = min(n_measures, piece_a.n_measures, piece_b.n_measures)
        latents = []
        for piece in (piece_a, piece_b):
            inputs = torch.from_numpy(np.asarray(piece.measures[:length]))[None]
            mask = torch.ones((1, length, self.n_voices), dtype=torch.bool)
            mu, logvar = self.model.encode(self.model.features(inputs))
            # Only the posterior means: nothing is decoded (a measure writer would need the tokens to score).
            output = self.model.from_experts(mu, logvar, mask, sample=False, reconstruct=False, decode=False)
            latents.append(output.post_mu[0])  # (L, Z)
        blends = torch.cat([torch.lerp(latents[0], latents[1], alpha) for alpha in np.linspace(0, 1, n_points)])
        state = blends.new_zeros(len(blends), self.model.state_size)  # no context: the blends stand alone
        measures = self.model.write(blends, state).numpy()
        generated = np.ones(measures.shape[:2], dtype=bool)
        return Piece(measures, generated, piece_a.key_shift, piece_a.tempo)

    def _check_voices(self, voices: list[int]) -> None:
        if not voices:
            raise TaskError("name at least one voice to generate (--voices)")
        bad = [v for v in voices if not 0 <= v < self.n_voices]
        if bad:
            raise TaskError(f"voice(s) {bad} out of range: this model has voices 0–{self.n_voices - 1}")


def parse_mask(spec: str, n_measures: int, n_voices: int) -> np.ndarray:
    """Parse ``--mask``: ``MEASURES:VOICES`` items separated by ``;``, 1-based inclusive ranges.

    ``"3-4:1,2"`` regenerates voices 1 and 2 in measures 3–4; ``"5:all"``, ``"all:3"``. Voices
    are 0-based like ``--voices``; measures are 1-based as in a score.
    """
    regenerate = np.zeros((n_measures, n_voices), dtype=bool)
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        if ":" not in item:
            raise TaskError(f"mask item {item!r} must be MEASURES:VOICES, e.g. 3-4:1,2 or 5:all")
        measure_part, voice_part = item.split(":", 1)
        measure_ids = _parse_ranges(measure_part, 1, n_measures, "measure")
        voice_ids = _parse_ranges(voice_part, 0, n_voices - 1, "voice")
        regenerate[np.ix_([m - 1 for m in measure_ids], voice_ids)] = True
    return regenerate


def _parse_ranges(text: str, low: int, high: int, what: str) -> list[int]:
    text = text.strip()
    if text == "all":
        return list(range(low, high + 1))
    values = []
    for chunk in text.split(","):
        try:
            first, _, last = chunk.partition("-")
            start, end = int(first), int(last or first)
        except ValueError:
            raise TaskError(f"cannot read {what} range {chunk!r}; use N, N-M or all") from None
        if start > end:
            raise TaskError(f"{what} range {chunk!r} runs backwards; write {end}-{start}")
        if not (low <= start <= end <= high):
            raise TaskError(f"{what} range {chunk!r} is outside {low}–{high}")
        values.extend(range(start, end + 1))
    return values
