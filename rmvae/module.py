"""The LightningModule: sub-sampled ELBO of the RMVAE, its metrics and its optimiser (docs/design.md §3–4).

One ``model_step`` serves train, validation and test. The window and the target measure are
encoded once; every ELBO term (the full set of voices, each voice alone, ``k`` random subsets)
then reruns only the (R)PoE, the temporal model and the decoders under its own voice mask
(MVAE, Wu & Goodman 2018, sub-sampled training). In a subset term the subset's voices are also
*known* in the target measure, so the model learns to fill and harmonize from them (docs/design.md §2.5);
the full-set term predicts the target from the past alone, which is the completion task and the
one whose importance-weighted NLL (``val/nll``, docs/design.md §3.4) selects checkpoints and compares arms.
``recon_nll``, despite its name, is no reconstruction and selects nothing: it is the single-sample
NLL of that prediction (z drawn once from the temporal prediction, its mean in evaluation), a
looser, cheaper companion of ``val/nll`` kept under its old name for older run folders.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import lightning as L
import torch
from torch import Tensor

from rmvae import losses
from rmvae.config import STEPS_PER_MEASURE, Config
from rmvae.data.notes import PitchRange
from rmvae.data.sampling import step_seed
from rmvae.encodings import encoding_named
from rmvae.model.baseline import AutoregressiveBaseline
from rmvae.model.rmvae import RMVAE, Decoded, RMVAEOutput, Teacher, draw_latents, pick_measures, reparameterise
from rmvae.model.writer import WriterContext
from rmvae.step_metrics import StepMetrics


NLL_SEED = 0  # noise of the importance-weighted NLL estimate, fixed so evaluations repeat exactly


def eval_generator(batch_idx: int) -> torch.Generator:
    """A fresh generator for the noise of evaluation batch ``batch_idx`` (subset draws, predictive
    marginal, importance samples): the same for every checkpoint and arm, so every evaluation
    number is a function of the weights alone."""
    return torch.Generator().manual_seed(NLL_SEED + batch_idx)


@dataclasses.dataclass
class Window:
    """A batch of windows, encoded once: every ELBO term reads it under its own masks."""

    inputs: Tensor  # (B, T, V, S) tokens or (B, T, V, S, P, 2) poly
    input_mask: Tensor  # (B, T, V) bool
    target: Tensor  # (B, V, S[, P, 2])
    target_mask: Tensor  # (B, V) bool
    input_mu: Tensor  # (B, T, V, Z): the input measures' experts
    input_logvar: Tensor
    target_mu: Tensor  # (B, V, Z): the target measure's experts
    target_logvar: Tensor
    writer_context: WriterContext | None = None  # a window writer's pass, shared by the ELBO terms

    @property
    def batch_size(self) -> int:
        return self.input_mask.shape[0]

    @property
    def measures(self) -> int:
        return self.input_mask.shape[1]

    @property
    def teacher(self) -> Teacher:
        return Teacher(self.inputs, self.target)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last finite terms."""


def voice_subsets(n_voices: int) -> list[tuple[int, ...]]:
    """Proper subsets with at least two voices: the pool the k random ELBO terms are drawn from."""
    return [s for size in range(2, n_voices) for s in itertools.combinations(range(n_voices), size)]


class RMVAEModule(StepMetrics, L.LightningModule):
    """Trains an :class:`~rmvae.model.rmvae.RMVAE`; a checkpoint alone rebuilds it.

    Args:
        config: ``Config.to_dict()`` (plain types, so checkpoints load with ``weights_only=True``).
        encoding_info: ``{"encoding", "low", "high", "n_voices"}`` of the data it was trained on.
    """

    def __init__(self, config: dict, encoding_info: dict):
        super().__init__()
        self.save_hyperparameters()
        self.config = Config.from_stored(config)  # checkpoints of older versions too
        self.pitch_range = PitchRange(encoding_info["low"], encoding_info["high"])
        self.n_voices = encoding_info["n_voices"]
        self.encoding = encoding_named(encoding_info["encoding"])  # an Encoding; the checkpoint keeps the name
        model_cls = AutoregressiveBaseline if self.config.model.kind == "autoregressive" else RMVAE
        self.model = model_cls(self.config.model, self.n_voices, self.pitch_range.n_pitches, self.encoding,
                               target_offset=self.config.data.offset)
        self._last_finite: dict[str, float] = {}
        self._unit_sums: Tensor | None = None  # (3, Z): count, Σ shift, Σ shift² over the eval epoch
        self._eval_generator: torch.Generator | None = None  # subset draws of the batch being evaluated

    # --- the objective ------------------------------------------------------------------------

    def elbo_masks(self, batch_size: int, device) -> list[tuple[str, Tensor]]:
        """(name, voice mask (V,)) per ELBO term: full set, then (``loss.elbo_terms="subsampled"``)
        each voice alone and k random subsets."""
        voices = self.n_voices
        terms = [("full", torch.ones(voices, dtype=torch.bool, device=device))]
        if voices > 1 and self.config.loss.elbo_terms == "subsampled":
            for v in range(voices):
                mask = torch.zeros(voices, dtype=torch.bool, device=device)
                mask[v] = True
                terms.append((f"voice{v}", mask))
            pool = voice_subsets(voices)
            if pool and self.config.loss.n_subsets:
                # Training: torch's global RNG, reseeded every step (rmvae.data.sampling.step_seed).
                # Evaluation: a generator seeded per batch, so two evaluations of one checkpoint agree.
                generator = None if self.training else self._eval_generator
                picks = torch.randint(len(pool), (self.config.loss.n_subsets,), generator=generator).tolist()
                for i in picks:
                    mask = torch.zeros(voices, dtype=torch.bool, device=device)
                    mask[list(pool[i])] = True
                    terms.append(("subset", mask))
        return terms

    def recon_measure_sample(self, batch_size: int, measures: int, device) -> Tensor | None:
        """``(B, k)`` input measures to reconstruct this training step, drawn without replacement
        per window (``loss.recon_inputs_measures``); None = all of them (also in validation)."""
        k = self.config.loss.recon_inputs_measures
        if not self.training or not self.config.loss.recon_inputs or k == 0 or k >= measures:
            return None
        if self.model.writes_window:
            return None  # its pass over the window reconstructs every input measure anyway
        # torch's global RNG, reseeded every step (rmvae.data.sampling.step_seed).
        return torch.rand(batch_size, measures, device=device).argsort(dim=1)[:, :k]

    def reconstruction(self, decoded: Decoded, truth: Tensor, voice_mask: Tensor) -> Tensor:
        return self.encoding.recon_loss(decoded, truth, voice_mask)

    def music_terms(self, decoded: Decoded, truth: Tensor, truth_mask: Tensor) -> dict[str, Tensor]:
        """Scale, rhythm and harmony terms of a predicted measure, per sample ``(B,)``: measured in
        every run, whatever their weights (the arms of a music-loss grid are compared on them), and
        ``harmony_loss``, the weighted harmony term, only where some harmony weight is not 0."""
        pc = self.encoding.pitch_class_mass(decoded, self.pitch_range.low)  # (B, V, S, 12)
        rhythm = self.encoding.rhythm_loss(decoded, truth, truth_mask)
        harmony = losses.harmony_terms(pc)  # (B, 3)
        terms = {"scale": losses.scale_loss(pc, truth, truth_mask, self.pitch_range.low, self.pitch_range.n_pitches),
                 "rhythm": rhythm, "harmony_semitone": harmony[:, 0], "harmony_tone": harmony[:, 1],
                 "harmony_tritone": harmony[:, 2], "harmony": losses.harmony_value(pc)}
        if any(self.config.loss.harmony_weights):
            terms["harmony_loss"] = losses.harmony_loss(pc, self.config.loss.harmony_weights)
        return terms

    def beta(self) -> float:
        if not self.training:
            return 1.0
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        return losses.kl_weight(self.global_step, total, self.config.loss.kl_start, self.config.loss.kl_end)

    def model_step(self, batch: dict, stage: str) -> tuple[Tensor, dict[str, Tensor], RMVAEOutput]:
        """The training objective and its logs; returns (loss, logs, the pure prediction's output).

        The returned output predicts the target from the past alone (no target voice known):
        accuracy and the music terms read it, whatever the full-set term infers its latent from.
        """
        if self.config.model.kind == "autoregressive":
            return self.autoregressive_step(batch)
        window = self.encode_window(batch)
        if not self.model.has_latents:  # direct predictor: the next-measure NLL is the whole objective
            return self.direct_step(window)
        beta, logs = self.beta(), {}
        recon_measures = self.recon_measure_sample(window.batch_size, window.measures, window.inputs.device)
        # A window writer decodes every term's target in one call (they share its pass over the window).
        batched = self.model.writes_window
        terms = [(name, *self.term_output(window, name, voices, recon_measures, decode=not batched))
                 for name, voices in self.elbo_masks(window.batch_size, window.inputs.device)]
        if batched:
            self.decode_targets(window, [output for _, output, _ in terms])
        total = torch.zeros((), device=self.device)
        for name, output, term_mask in terms:
            total = total + self.term_loss(window, name, output, term_mask, beta, recon_measures, logs)
        prediction = self.pure_prediction(terms[0][1], window, known_target=self.config.loss.target_posterior)
        # recon_nll: the single-sample NLL of the prediction from the past alone (z drawn once from
        # the temporal prediction, its mean in evaluation): not a reconstruction of the inputs.
        logs["recon_nll"] = self.reconstruction(prediction.prediction, window.target, window.target_mask).mean()
        total = total + self.music_loss(prediction, window, logs)
        logs.update(loss=total, beta=torch.tensor(beta))
        return total, logs, prediction

    def encode_window(self, batch: dict) -> Window:
        """Encode the window and the target measure once; each ELBO term only changes masks."""
        inputs, input_mask = batch["inputs"], batch["input_mask"].bool()  # (B, T, V, S[, P, 2]), (B, T, V)
        target = batch["target"]  # (B, V, S[, P, 2])
        features = self.model.features(torch.cat([inputs, target.unsqueeze(1)], dim=1))
        mu, logvar = self.model.encode(features)  # (B, T+1, V, Z)
        measures = inputs.shape[1]
        return Window(inputs, input_mask, target, batch["target_mask"].bool(), mu[:, :measures], logvar[:, :measures],
                      mu[:, measures], logvar[:, measures])

    def direct_step(self, window: Window) -> tuple[Tensor, dict[str, Tensor], RMVAEOutput]:
        """The direct predictor's objective: the next measure's NLL (and the music terms)."""
        output = self.model.from_experts(window.input_mu, window.input_logvar, window.input_mask,
                                         sample=self.training, reconstruct=False, teacher=window.teacher)
        nll = self.reconstruction(output.prediction, window.target, window.target_mask)
        logs = {"recon_nll": nll.mean(), "recon": nll.mean()}
        total = nll.mean() + self.music_loss(output, window, logs)
        logs["loss"] = total
        return total, logs, output

    def term_output(self, window: Window, name: str, voices: Tensor, recon_measures: Tensor | None,
                    decode: bool = True) -> tuple[RMVAEOutput, Tensor]:
        """The model's pass of one term of the sub-sampled ELBO under the voice mask ``voices`` (V,),
        and the term's input mask ``(B, T, V)``; ``decode=False`` leaves the target's prediction to
        :meth:`decode_targets`."""
        cfg = self.config.loss
        full = name == "full"
        # (B, T, V): a subset term hides the other voices in the past too (the thesis's sub-sampled ELBO).
        term_mask = window.input_mask & voices
        # Full-set term: the target's latent from the prediction alone (thesis) or from the
        # target too (an ELBO of the next measure); subset terms know the subset's voices.
        known = window.target_mask & voices if not full or cfg.target_posterior else torch.zeros_like(window.target_mask)
        # Input measures are reconstructed in the full-set term only: decoding all T measures
        # once per subset would multiply the decoder cost by the number of terms.
        output = self.model.from_experts(window.input_mu, window.input_logvar, term_mask, window.target_mu,
                                         window.target_logvar, known, sample=self.training,
                                         reconstruct=cfg.recon_inputs and full, recon_measures=recon_measures,
                                         decode=decode, teacher=window.teacher, writer_context=window.writer_context)
        if window.writer_context is None and self.model.writes_window:
            window.writer_context = output.target_context
        return output, term_mask

    def decode_targets(self, window: Window, outputs: list[RMVAEOutput]) -> None:
        """Every term's target prediction from one writer call: the terms' latents and states
        stacked ``(n, B, ·)`` after the window's shared context; fills each ``prediction``."""
        z = torch.stack([output.target_z for output in outputs])
        state = torch.stack([output.state for output in outputs])
        decoded = self.model.decode(z, state, window.target, window.writer_context)  # (n, B, V, S, ·)
        for i, output in enumerate(outputs):
            output.prediction = decoded.map(lambda value: value[i])

    def term_loss(self, window: Window, name: str, output: RMVAEOutput, term_mask: Tensor, beta: float,
                  recon_measures: Tensor | None, logs: dict[str, Tensor]) -> Tensor:
        """One term of the sub-sampled ELBO: the NLL of the whole target plus β·KL of its latent,
        averaged over windows; the full-set term also carries the input measures' terms. Adds its
        logs to ``logs``."""
        full = name == "full"
        recon_target = self.reconstruction(output.prediction, window.target, window.target_mask)  # all voices
        # The target's KL is against the temporal model's prediction, in every term.
        kl = losses.kl_divergence(output.target_mu, output.target_logvar, output.prior_mu, output.prior_logvar)
        logs[f"kl_target_{name}"] = logs.get(f"kl_target_{name}", 0) + kl.mean()
        logs["recon"] = logs.get("recon", 0) + recon_target.mean()
        input_recon, free_bits = torch.zeros(()), torch.zeros(())
        if full:
            logs["recon_full_term"] = recon_target.mean()
            input_kl, input_recon, free_bits = self.input_measure_terms(window, output, term_mask, recon_measures, logs)
            kl = kl + input_kl
        logs["kl"] = logs.get("kl", 0) + kl.mean()
        return (recon_target + beta * kl + input_recon).mean() + beta * free_bits

    def input_measure_terms(self, window: Window, output: RMVAEOutput, term_mask: Tensor,
                            recon_measures: Tensor | None, logs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The input measures' part of the full-set term: their KL ``(B,)``, their reconstruction
        ``(B,)`` and the free-bits excess (scalar).

        Their KL is paired with their reconstruction, so it is counted once, here: counting it in
        every subset term without the matching reconstruction pulled every posterior onto the
        prior (posterior collapse)."""
        cfg = self.config.loss
        input_kl = self.input_kl(output, term_mask)  # (B, T, Z)
        logs["kl_inputs"] = input_kl.sum(dim=(1, 2)).mean()
        free_bits = losses.free_bits_excess(input_kl, cfg.free_bits) if cfg.free_bits > 0 else torch.zeros(())
        recon = torch.zeros(())
        if output.recon is not None:
            truth, truth_mask, scale = window.inputs, term_mask, 1.0
            if recon_measures is not None:  # k of the T measures, scaled by T/k: unbiased for the sum over all T
                truth, truth_mask = pick_measures(window.inputs, recon_measures), pick_measures(term_mask, recon_measures)
                scale = window.measures / recon_measures.shape[1]
            recon = self.reconstruction(output.recon, truth, truth_mask) * scale
            logs["recon_inputs"] = recon.mean()
        return input_kl.sum(dim=(1, 2)), recon, free_bits

    def input_kl(self, output: RMVAEOutput, mask: Tensor) -> Tensor:
        """KL of every present input measure's posterior against its prior (N(0, I) or the
        temporal prediction), per dimension ``(B, T, Z)``; measures with no voice count 0."""
        present = mask.any(dim=-1).float().unsqueeze(-1)  # (B, T, 1)
        kl = losses.kl_divergence(output.post_mu, output.post_logvar, output.input_prior_mu,
                                  output.input_prior_logvar, per_dim=True)
        return kl * present

    def autoregressive_step(self, batch: dict) -> tuple[Tensor, dict[str, Tensor], RMVAEOutput]:
        """The autoregressive baseline's objective: the NLL of every present token of the window
        (input measures and target), per window; ``recon_nll`` is the target's alone."""
        inputs, input_mask = batch["inputs"], batch["input_mask"].bool()
        target, target_mask = batch["target"], batch["target_mask"].bool()
        log_probs = self.model.window_log_probs(inputs, input_mask, target)  # (B, T + offset, V, S, C)
        measures = inputs.shape[1]
        window_tokens = torch.cat([inputs, target.unsqueeze(1)], dim=1)  # (B, T + 1, V, S)
        window_mask = torch.cat([input_mask, target_mask.unsqueeze(1)], dim=1)  # (B, T + 1, V)
        scored = torch.cat([log_probs[:, :measures], log_probs[:, -1:]], dim=1)  # the gap is never scored
        token_nll = -scored.gather(-1, window_tokens.long().unsqueeze(-1)).squeeze(-1).sum(-1)  # (B, T + 1, V)
        token_nll = token_nll * window_mask
        prediction = self.model.measure_heads(log_probs[:, -1])
        output = RMVAEOutput(expert_mu=None, expert_logvar=None, state=None, prediction=prediction)
        target_nll = token_nll[:, -1].sum(-1)
        total = token_nll.sum(dim=(1, 2)).mean()
        logs = {"recon_nll": target_nll.mean(), "recon": target_nll.mean(), "loss": total,
                "window_nll_per_token": token_nll.sum() / (window_mask.sum() * STEPS_PER_MEASURE)}
        logs.update({k: v.mean() for k, v in self.music_terms(prediction, window_tokens, window_mask).items()})
        return total, logs, output

    def pure_prediction(self, output: RMVAEOutput, window: Window, known_target: bool) -> RMVAEOutput:
        """The full-set output, or — when its target latent was inferred from the target — the
        same past decoded from the prediction alone (a sample in training, the mean otherwise)."""
        if not known_target:
            return output
        z = reparameterise(output.prior_mu, output.prior_logvar) if self.training else output.prior_mu
        prediction = self.model.decode(z, output.state, window.target, output.target_context)
        return dataclasses.replace(output, target_mu=output.prior_mu, target_logvar=output.prior_logvar,
                                   target_z=z, prediction=prediction)

    def music_loss(self, output: RMVAEOutput, window: Window, logs: dict[str, Tensor]) -> Tensor:
        """Weighted scale, rhythm and harmony terms of the predicted measure (all logged, weight 0 or not)."""
        truth = torch.cat([window.inputs, window.target.unsqueeze(1)], dim=1)
        truth_mask = torch.cat([window.input_mask, window.target_mask.unsqueeze(1)], dim=1)
        music = {k: v.mean() for k, v in self.music_terms(output.prediction, truth, truth_mask).items()}
        logs.update(music)
        return self.weighted_music(music)

    def weighted_music(self, music: dict[str, Tensor]) -> Tensor:
        """The music terms' part of the objective: each term (batch means, as :meth:`music_terms`
        names them) times its weight; harmony is ``losses.harmony_loss``. A term of weight 0 is off:
        it is left out of the sum, not added times 0 (a NaN in it cannot reach the objective)."""
        cfg = self.config.loss
        total = torch.zeros((), device=self.device)
        if cfg.scale_weight:
            total = total + cfg.scale_weight * music["scale"]
        if cfg.rhythm_weight:
            total = total + cfg.rhythm_weight * music["rhythm"]
        if any(cfg.harmony_weights):
            total = total + music["harmony_loss"]
        return total

    @torch.no_grad()
    def predictive_nll(self, batch: dict, n_samples: int, generator: torch.Generator) -> Tensor:
        """Importance-weighted estimate of −log p(target | past) per window ``(B,)`` (Burda et al. 2016).

        The past is encoded deterministically (posterior means, as generation does), so the
        model's predictive distribution is p(x) = ∫ p(z | past) p(x | z, past) dz; with the
        proposal q(z) = the temporal prediction ⊗ every present target voice's expert,

            −log p(x) ≈ −log (1/K) Σ_k p(x | z_k) p(z_k) / q(z_k),   z_k ~ q,

        which is an upper bound for every K, tightens as K grows and equals the exact NLL for a
        direct model (no latent). Same nats per target measure as the baselines' NLL.
        """
        inputs, input_mask = batch["inputs"], batch["input_mask"].bool()
        target, target_mask = batch["target"], batch["target_mask"].bool()
        if self.config.model.kind == "autoregressive":  # exact by the chain rule
            heads = self.model.measure_heads(self.model.window_log_probs(inputs, input_mask, target)[:, -1])
            return self.reconstruction(heads, target, target_mask)
        if not self.model.has_latents:
            output = self.model(inputs, input_mask, target, sample=False, reconstruct=False)
            return self.reconstruction(output.prediction, target, target_mask)
        output = self.model(inputs, input_mask, target, target_mask, sample=False, reconstruct=False)
        q_mu, q_logvar = output.target_mu, output.target_logvar  # (B, Z)
        z = draw_latents(q_mu, q_logvar, n_samples, generator)  # (K, B, Z)
        # the state (and a writer's teacher tokens) broadcast over the K draws
        decoded = self.model.decode(z, output.state, target, output.target_context)
        expand = lambda x: x.expand(n_samples, *x.shape).reshape(-1, *x.shape[1:])  # noqa: E731
        flat = decoded.map(lambda value: value.reshape(-1, *value.shape[2:]))
        log_lik = -self.reconstruction(flat, expand(target), expand(target_mask)).reshape(n_samples, -1)  # (K, B)
        log_prior = losses.gaussian_log_density(z, output.prior_mu, output.prior_logvar)
        log_q = losses.gaussian_log_density(z, q_mu, q_logvar)
        log_weights = log_lik + log_prior - log_q
        return -(torch.logsumexp(log_weights, dim=0) - math.log(n_samples))

    # --- Lightning hooks ----------------------------------------------------------------------

    def _log_all(self, stage: str, logs: dict[str, Tensor], batch_size: int,
                 weights: dict[str, int] | None = None) -> None:
        """Log every value; the epoch value is the mean weighted by ``batch_size`` (windows) or, for
        the keys in ``weights``, by that count (e.g. onsets)."""
        on_step = stage == "train"
        weights = weights or {}
        for key, value in logs.items():
            value = value if isinstance(value, Tensor) else torch.tensor(float(value))
            if torch.isnan(value) or weights.get(key, 1) == 0:
                continue
            self.log(f"{stage}/{key}", value.detach().float(), on_step=on_step, on_epoch=True,
                     prog_bar=key in {"loss", "acc"}, batch_size=weights.get(key, batch_size), sync_dist=not on_step)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Step ``t``'s noise depends on ``(seed, t, rank)`` only, so a resumed run replays it exactly."""
        torch.manual_seed(step_seed(self.config.train.seed, self.global_step, self.global_rank))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, logs, output = self.model_step(batch, "train")
        if not torch.isfinite(loss):
            terms = ", ".join(f"{k}={v:.4g}" for k, v in self._last_finite.items())
            raise TrainingDiverged(f"loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                                   f"last finite terms: {terms or 'none (first step)'}. Lower train.lr, "
                                   f"raise train.grad_clip or check the data.")
        self._last_finite = {k: float(v.detach()) for k, v in logs.items() if isinstance(v, Tensor) and v.numel() == 1}
        logs.update(self.accuracy_logs(output, batch))
        self._log_all("train", logs, batch["inputs"].shape[0], self.accuracy_weights(batch))
        return loss

    def scored_prediction(self, output: RMVAEOutput, batch_idx: int) -> Decoded:
        """What ``acc*`` decodes greedily: each step's predictive marginal over ``loss.nll_samples``
        latent draws (the evaluation noise of batch ``batch_idx``), or a direct model's prediction."""
        if not self.model.has_latents or self.config.model.writes:  # a writer's: teacher-forced
            return output.prediction
        return self.model.predictive_marginal(output.prior_mu, output.prior_logvar, output.state,
                                              self.config.loss.nll_samples, eval_generator(batch_idx))

    def _eval_step(self, batch: dict, batch_idx: int, stage: str) -> None:
        self._eval_generator = eval_generator(batch_idx)
        _, logs, output = self.model_step(batch, stage)
        # greedy accuracy of the predictive distribution, not of its mean latent
        logs.update(self.accuracy_logs(dataclasses.replace(output, prediction=self.scored_prediction(output, batch_idx)),
                                       batch))
        if self.model.has_latents and not self.config.model.writes:
            logs.update(self.accuracy_logs(output, batch, prefix="acc_mean_latent"))
        logs.update(self.baseline_logs(batch))
        logs.update(self.fill_logs(batch, batch_idx))
        logs.update(self.shuffled_latent_logs(output, batch))
        logs["nll"] = self.predictive_nll(batch, self.config.loss.nll_samples, eval_generator(batch_idx)).mean()
        self._accumulate_units(output, batch["input_mask"].bool())
        self._log_all(stage, logs, batch["inputs"].shape[0], self.accuracy_weights(batch, ("acc", "acc_mean_latent")))

    def on_validation_epoch_start(self) -> None:
        self._unit_sums = None

    def on_validation_epoch_end(self) -> None:
        self._log_active_units("val")

    def on_test_epoch_start(self) -> None:
        self._unit_sums = None

    def on_test_epoch_end(self) -> None:
        self._log_active_units("test")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.config.train.lr)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.config.train.lr_decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def load_module(checkpoint, map_location="cpu") -> RMVAEModule:
    """Rebuild a trained module from its checkpoint alone (``weights_only`` loading)."""
    return RMVAEModule.load_from_checkpoint(checkpoint, map_location=map_location, weights_only=True)

