"""Named moments of a run (training, then its test evaluation) at which a worker SIGKILLs itself.

A moment is one line of text:

- ``train S``: training step ``S`` starts;
- ``val S B``: validation batch ``B`` starts after step ``S`` (``sanity B`` in the sanity check
  that only a fresh start runs);
- ``test B``: test batch ``B`` of the evaluation starts;
- ``write NAME AT``: ``NAME``, a file of the run folder (``last.ckpt``, ``metrics.csv``,
  ``test_metrics.json``, …), is written in full to its temporary file and not yet renamed over ``NAME``: a kill there lands
  inside the atomic write. ``AT`` is the last training step this process started, ``start``
  before the first, ``trained`` once training returned, ``eval`` during the evaluation.

A moment of the uninterrupted run recurs at the same point of the run in a process that
resumes before it (the steps replay), so moments picked from the uninterrupted run's trace, in
its order, are reached one by one by successive killed attempts.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path


class Moments:
    """Writes every moment this process reaches in the run folder ``root`` to ``trace`` and dies
    by SIGKILL at ``kill_at``."""

    def __init__(self, root: Path, kill_at: str | None = None, trace: Path | None = None):
        self.root, self.kill_at, self.at = Path(root).resolve(), kill_at, "start"
        self.trace = open(trace, "a", encoding="utf-8") if trace else None

    def reached(self, moment: str) -> None:
        if self.trace:
            self.trace.write(moment + "\n")
            self.trace.flush()
        if moment == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def phase(self, name: str) -> None:
        self.at = name

    def install(self) -> None:
        """Hook the training module's batch starts and every ``os.replace`` of this process."""
        from rmvae.module import RMVAEModule

        moments, train_start, replace = self, RMVAEModule.on_train_batch_start, os.replace

        def on_train_batch_start(module, batch, batch_idx):
            moments.phase(str(module.global_step))
            moments.reached(f"train {module.global_step}")
            return train_start(module, batch, batch_idx)

        def on_validation_batch_start(module, batch, batch_idx, dataloader_idx=0):
            sanity = module.trainer.sanity_checking
            moments.reached(f"sanity {batch_idx}" if sanity else f"val {module.global_step} {batch_idx}")

        def on_test_batch_start(module, batch, batch_idx, dataloader_idx=0):
            moments.reached(f"test {batch_idx}")

        def replace_or_die(source, destination, *args, **kwargs):
            if moments.root in Path(destination).resolve().parents:  # not the corpus cache, say
                moments.reached(f"write {Path(destination).name} {moments.at}")
            return replace(source, destination, *args, **kwargs)

        RMVAEModule.on_train_batch_start = on_train_batch_start
        RMVAEModule.on_validation_batch_start = on_validation_batch_start
        RMVAEModule.on_test_batch_start = on_test_batch_start
        os.replace = replace_or_die


def selectable(trace: list[str]) -> list[str]:
    """The moments of an uninterrupted run's trace a resumed attempt reaches again, each once, in order."""
    return list(dict.fromkeys(m for m in trace if m and not m.startswith("sanity")))
