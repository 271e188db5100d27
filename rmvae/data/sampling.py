"""Training order and training noise that a resumed run reproduces exactly.

A run killed and resumed must end with the numbers of a run never interrupted (README,
"Exact resume"). Two things make that hold without saving any random generator's state:

- **Order**: epoch ``e`` visits the windows in ``randperm(n)`` drawn from a generator seeded
  by ``(seed, e)`` alone (:class:`EpochShuffle`), not from the global generator at the moment
  the epoch's iterator happens to be created.
- **Noise**: every training step reseeds torch's generator from ``(seed, step, rank)``
  (:func:`step_seed`), so dropout, the sampled latents, the random ELBO subsets and the sampled
  input measures of step ``t`` depend on ``t`` only, not on what ran before it in this process
  (validation, a resume, another run in the same worker).

Checkpoints are written at the end of an epoch, so a kill mid-epoch resumes from the last
epoch end and replays the lost steps identically. :class:`ExactResume` puts the two counters
Lightning gets wrong on such a resume back in line: the epoch whose order is drawn, and the
step the loggers write.
"""
from __future__ import annotations

from typing import Iterator

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Sampler


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of training step ``step`` on process ``rank``: independent streams per step."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochShuffle(Sampler[int]):
    """A random order of ``n`` items per epoch, a function of ``(seed, epoch)`` only.

    Lightning calls :meth:`set_epoch` at the start of every epoch (as for a
    ``DistributedSampler``); under DDP Lightning wraps this sampler in its distributed wrapper,
    which shuffles by ``(seed, epoch)`` too.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]))
        return torch.randperm(self.n, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch))

    def __len__(self) -> int:
        return self.n


class ExactResume(Callback):
    """Keeps a resumed run on the uninterrupted run's epoch order and logging steps.

    Lightning (2.6) replays the end of the checkpointed epoch when it resumes, which counts that
    epoch twice in ``epoch_progress.processed`` (the value it passes to ``set_epoch``) and once
    more in the step its loggers write. The epoch a run is in is ``trainer.current_epoch`` and,
    without gradient accumulation, the logging step is ``trainer.global_step``: both are set
    from those at every epoch's start, before any batch is drawn or logged.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        set_epoch = getattr(getattr(trainer.train_dataloader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):  # EpochShuffle, or Lightning's distributed wrapper of it under DDP
            set_epoch(trainer.current_epoch)
        loop = trainer.fit_loop.epoch_loop
        if trainer.accumulate_grad_batches == 1 and hasattr(loop, "_batches_that_stepped"):
            loop._batches_that_stepped = trainer.global_step
