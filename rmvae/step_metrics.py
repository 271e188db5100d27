"""What every training, validation and test step logs besides the objective: accuracy of the
greedy prediction (all tokens, onsets, pitches, per voice) and its onset weights, the trivial
baselines on the same targets, the fill task's accuracy, and the active-unit sums.

A mixin of :class:`rmvae.module.RMVAEModule` (it reads ``self.model``, ``self.encoding``,
``self.pitch_range``, ``self.n_voices``), kept apart so the module file holds the objective.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rmvae import losses
from rmvae.model.rmvae import RMVAEOutput


class StepMetrics:
    """Metric logs of a step (see the module docstring)."""

    _unit_sums: Tensor | None = None  # (3, Z): count, Σ shift, Σ shift² over the eval epoch

    def accuracy_logs(self, output: RMVAEOutput, batch: dict, prefix: str = "acc") -> dict[str, Tensor]:
        """Accuracy of the greedy decoding of the target measure: all, onsets only, pitches only, per voice."""
        predicted = self.encoding.decode_tokens(output.prediction)
        scores = self.encoding.accuracy(predicted, batch["target"], self.pitch_range)
        renamed = {"all": prefix, "onsets": f"{prefix}_onsets", "pitches": f"{prefix}_pitches"}
        return {renamed.get(k, f"{prefix}_{k.replace('_', '')}"): torch.as_tensor(v) for k, v in scores.items()}

    def accuracy_weights(self, batch: dict, prefixes: tuple[str, ...] = ("acc",)) -> dict[str, int]:
        """What each batch's onset and pitch accuracy averages over: its number of onsets, so the
        epoch's value (Lightning's mean weighted by these counts, summed across devices too) is the
        share of all the epoch's onsets, not a mean of per-batch shares."""
        count = self.encoding.n_onsets(batch["target"], batch["target_mask"], self.pitch_range)
        if count is None:  # no onset accuracy
            return {}
        return {f"{prefix}_{kind}": count for prefix in prefixes for kind in ("onsets", "pitches")}

    def baseline_logs(self, batch: dict) -> dict[str, Tensor]:
        """Trivial baselines on the same targets (mono: always hold; repeat the last input measure)."""
        return self.encoding.baseline_accuracy(batch["inputs"], batch["target"], self.pitch_range)

    def fill_logs(self, batch: dict, batch_idx: int) -> dict[str, Tensor]:
        """Accuracy of filling one voice (cycled over batches) of the target measure, as ``rmvae
        generate --task fill`` predicts it: every voice of the earlier measures visible (the real
        ones here, teacher-forced; the task reads its own earlier output) and the other voices of
        the target measure known."""
        voice = batch_idx % self.n_voices
        keep = torch.ones(self.n_voices, dtype=torch.bool, device=self.device)
        keep[voice] = False
        inputs, input_mask, target = batch["inputs"], batch["input_mask"].bool(), batch["target"]
        known_mask = batch["target_mask"].bool() & keep
        if self.config.model.kind == "autoregressive":  # greedy, the kept voices clamped
            predicted = self.model.write(inputs, input_mask, target, known_mask)
        else:
            # greedy from the mean latent, the kept voices known (a writer also hears them)
            output = self.model(inputs, input_mask, target, known_mask, sample=False, reconstruct=False, decode=False)
            predicted = self.model.write(output.target_mu, output.state, output.target_context, target, known_mask)
        hits = self.encoding.step_hits(predicted[:, voice], batch["target"][:, voice])
        return {"acc_fill": hits.float().mean()}

    def shuffled_latent_logs(self, output: RMVAEOutput, batch: dict) -> dict[str, Tensor]:
        """``recon_nll`` again with each window's predicted z handed to the next window's decoder
        (its own temporal state kept): the gap to ``recon_nll`` is what the decoder reads from z.
        No gap means the decoder ignores its latent (posterior collapse)."""
        if not self.model.has_latents or output.target_z is None or len(output.target_z) < 2:
            return {}
        z = torch.roll(output.target_z, 1, dims=0)
        decoded = self.model.decode(z, output.state, batch["target"], output.target_context)
        nll = self.encoding.recon_loss(decoded, batch["target"], batch["target_mask"].bool())
        return {"recon_nll_shuffled_z": nll.mean()}

    def _accumulate_units(self, output: RMVAEOutput, mask: Tensor) -> None:
        """Sums for the active-unit count: what the data moves each input posterior mean away
        from its prior's mean, over every present measure of the epoch."""
        if output.post_mu is None:
            return
        shift = output.post_mu if output.input_prior_mu is None else output.post_mu - output.input_prior_mu
        present = mask.any(dim=-1)  # (B, T)
        shift = shift[present].double()  # (N, Z)
        sums = torch.stack([shift.new_full(shift.shape[1:], float(len(shift))), shift.sum(0), (shift ** 2).sum(0)])
        self._unit_sums = sums if self._unit_sums is None else self._unit_sums + sums

    def _log_active_units(self, stage: str) -> None:
        """Active units of the epoch's input posteriors (:func:`rmvae.losses.active_units`) on the
        shift of each posterior mean from its prior's mean, which is the posterior mean itself
        under an N(0, I) prior. Zero means every encoder is switched off."""
        sums, self._unit_sums = self._unit_sums, None
        if sums is None:
            return
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum") if self._trainer is not None else sums
        self.log(f"{stage}/active_units", float(losses.active_units(*sums)), sync_dist=False)
