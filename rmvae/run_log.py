"""``metrics.csv``: Lightning's CSV log, kept whole across any number of resumes.

Lightning's CSVLogger deletes ``metrics.csv`` when a new process opens the run folder and
appends in place, so a resumed run loses the rows logged before it and a kill during a write
tears the file. :class:`RunCSVLogger` writes the same table (one row per ``log_metrics`` call,
columns sorted) but keeps every row in memory and rewrites the whole file atomically on each
save. The rows themselves travel in ``last.ckpt`` (:mod:`rmvae.checkpoints`): a resume puts
back exactly the rows logged up to that checkpoint, and the replayed steps log the rest again,
so every row appears once whatever was on disk when the run died.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from rmvae.files import atomic_write_text

Row = dict[str, Any]


class _WholeFileWriter(ExperimentWriter):
    """Lightning's experiment writer, but every save writes all rows at once (atomically)."""

    def __init__(self, log_dir: str):
        self.rows: list[Row] = []
        self._written = 0  # rows in the file on disk (nothing written yet)
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        """Keep the folder's files: the run resumes there (Lightning deletes ``metrics.csv`` here)."""

    def restore(self, rows: list[Row]) -> None:
        """Start from ``rows`` (those of a checkpoint) and write them out, dropping any later row."""
        self.rows, self.metrics = [dict(row) for row in rows], []
        self.write()

    def save(self) -> None:
        self.rows.extend(self.metrics)
        self.metrics = []
        if len(self.rows) != self._written:  # Lightning saves after every log call, rows or not
            self.write()

    def write(self) -> None:
        keys = sorted(set().union(*self.rows)) if self.rows else []
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.metrics_file_path, buffer.getvalue() if keys else "")
        self._written = len(self.rows)


class RunCSVLogger(CSVLogger):
    """``metrics.csv`` directly in the run folder, whole across resumes (see the module docstring)."""

    def __init__(self, save_dir: str):
        super().__init__(save_dir=save_dir, name="", version="")

    @property
    @rank_zero_experiment
    def experiment(self) -> _WholeFileWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _WholeFileWriter(log_dir=self.log_dir)
        return self._experiment

    def rows(self) -> list[Row]:
        """Every row logged so far, the unsaved ones included (rank 0; other ranks log nothing)."""
        if rank_zero_only.rank != 0:
            return []
        return [*self.experiment.rows, *self.experiment.metrics]

    def restore(self, rows: list[Row]) -> None:
        """Continue from the rows of a checkpoint (rank 0 writes them to ``metrics.csv``)."""
        if rank_zero_only.rank == 0:
            self.experiment.restore(rows)
