"""The context-free baseline every model number stands beside: the positional unigram.

p(token | voice, step) is counted on the training windows' target measures (add-α smoothing)
and scores a held-out target measure with no context at all. Its NLL is in the same unit as
the model's ``nll``: nats per target measure, summed over the present voices and 16 steps of
the mono token encoding (pitches, rest, hold). A model that does not beat it has learnt
nothing about the next measure from the past. The other baseline, the direct predictor, is a
model (``model.kind=direct``) trained by the same Trainer, not a table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from rmvae.metrics import token_accuracy


@dataclass
class PositionalUnigram:
    """Log-probabilities ``(V, S, C)`` of each token class at each voice and step."""

    log_probs: np.ndarray

    @classmethod
    def fit(cls, targets: np.ndarray, masks: np.ndarray, n_classes: int, alpha: float = 1.0) -> "PositionalUnigram":
        """Count tokens of target measures ``(N, V, S)`` whose voice is present (``masks (N, V)``)."""
        targets, masks = np.asarray(targets, dtype=np.int64), np.asarray(masks, dtype=bool)
        n, voices, steps = targets.shape
        counts = np.full((voices, steps, n_classes), alpha, dtype=np.float64)
        for v in range(voices):
            for s in range(steps):
                counts[v, s] += np.bincount(targets[masks[:, v], v, s], minlength=n_classes)[:n_classes]
        return cls(np.log(counts / counts.sum(axis=-1, keepdims=True)))

    def nll(self, targets: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Nats per target measure ``(N,)``, summed over present voices and steps."""
        targets = np.asarray(targets, dtype=np.int64)
        voices, steps = np.arange(targets.shape[1])[:, None], np.arange(targets.shape[2])[None, :]
        per_token = -self.log_probs[voices, steps, targets]  # (N, V, S)
        return (per_token.sum(axis=-1) * masks).sum(axis=-1)

    def predict(self, n: int) -> np.ndarray:
        """The most likely token at every voice and step, for ``n`` measures ``(n, V, S)``."""
        return np.broadcast_to(self.log_probs.argmax(axis=-1), (n, *self.log_probs.shape[:2])).copy()


def target_tokens(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Every window's target tokens ``(N, V, S)`` and present voices ``(N, V)``, in dataset order."""
    items = [dataset[i] for i in range(len(dataset))]
    key = "target_tokens" if items and "target_tokens" in items[0] else "target"  # poly items carry the tokens too
    return (np.stack([item[key].numpy() for item in items]),
            np.stack([item["target_mask"].numpy() for item in items]))


def unigram_scores(train: Dataset, split: Dataset, pitch_range) -> dict:
    """The positional unigram fitted on ``train`` and scored on ``split``: mean NLL, accuracy, onset
    accuracy, and the NLL of every window (``per_window``, in dataset order)."""
    model = PositionalUnigram.fit(*target_tokens(train), n_classes=pitch_range.hold + 1)
    targets, masks = target_tokens(split)
    per_window = model.nll(targets, masks)
    scores = token_accuracy(model.predict(len(targets)), targets, pitch_range)
    return {"nll": float(per_window.mean()), "acc": scores["all"], "acc_onsets": scores["onsets"],
            "per_window": per_window}
