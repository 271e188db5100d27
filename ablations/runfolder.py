"""The layout of a grid folder and its run folders: every file name, status and read in one place.

::

    OUT/<grid>/grid.json                 the grid's definition (ablations.grids.GridPlan.definition)
    OUT/<grid>/runs/<run_id>/run.json    arm, seed, grid, run id and overrides of the run
                             config.json the resolved config
                             metrics.csv, checkpoints/{best,last}.ckpt   written by rmvae.train
                             train_result.json, test_metrics.json, result.json
                             sample.{mid,png}
                             DONE        written last: the run is finished
                             FAILED      the reason (first line) and traceback of a run that raised

A run's status is ``done``, ``failed``, ``interrupted`` (it has ``checkpoints/last.ckpt``, so
training resumes from it) or ``pending``. Reads forgive a missing or half-written file (an empty
dict); every write is atomic (:mod:`rmvae.files`). Used by the runner, the launchers, aggregation
and the reports; no torch.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rmvae.files import atomic_write_json, atomic_write_text

GRID_JSON = "grid.json"
RUNS = "runs"
DONE, FAILED = "DONE", "FAILED"
RUN_JSON, CONFIG_JSON = "run.json", "config.json"
TRAIN_RESULT, TEST_METRICS, RESULT = "train_result.json", "test_metrics.json", "result.json"
METRICS_CSV = "metrics.csv"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
SAMPLE = "sample"  # sample.mid, sample.png


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; an empty dict if the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def read_grid(grid_dir: Path) -> dict[str, Any]:
    """``grid.json`` of a grid folder (empty dict if missing)."""
    return read_json(Path(grid_dir) / GRID_JSON)


def run_dir(grid_dir: Path, run_id: str) -> Path:
    """``<grid_dir>/runs/<run_id>``."""
    return Path(grid_dir) / RUNS / str(run_id)


def run_folders(grid_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``runs/<id>/`` that has a ``run.json``, with that metadata, sorted by arm order and seed."""
    grid_dir = Path(grid_dir)
    grid = read_grid(grid_dir)
    arm_order = grid.get("arm_order") or list(grid.get("arms", {}))
    found = []
    for folder in sorted((grid_dir / RUNS).glob("*/")):
        meta = read_json(folder / RUN_JSON)
        if meta:
            found.append((folder, meta))

    def order(item):
        arm = item[1].get("arm", "")
        return (arm_order.index(arm) if arm in arm_order else len(arm_order), arm, item[1].get("seed", 0))

    return sorted(found, key=order)


def is_done(folder: Path) -> bool:
    return (Path(folder) / DONE).exists()


def status(folder: Path) -> tuple[str, str]:
    """``(status, reason)``: the status and, for a failed run, the first line of ``FAILED``."""
    folder = Path(folder)
    if (folder / DONE).exists():
        return "done", ""
    if (folder / FAILED).exists():
        text = (folder / FAILED).read_text().strip()
        return "failed", text.splitlines()[0] if text else "unknown reason"
    if (folder / LAST_CHECKPOINT).exists():
        return "interrupted", ""
    return "pending", ""


def run_status(folder: Path) -> str:
    """``done``, ``failed``, ``interrupted`` (has a last checkpoint) or ``pending``."""
    return status(folder)[0]


def write_run_files(folder: Path, config_json: str, meta: dict[str, Any] | None) -> None:
    """``config.json`` (the resolved config's JSON) and, given ``meta``, ``run.json``."""
    atomic_write_text(Path(folder) / CONFIG_JSON, config_json + "\n")
    if meta is not None:
        atomic_write_json(Path(folder) / RUN_JSON, meta)


def mark_done(folder: Path) -> None:
    """Write ``DONE`` (the time), the last file of a finished run."""
    atomic_write_text(Path(folder) / DONE, f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")


def mark_failed(folder: Path, reason: str, details: str = "") -> None:
    """Write ``FAILED``: the one-line ``reason`` first, then ``details`` (a traceback) after a blank line."""
    atomic_write_text(Path(folder) / FAILED, reason + "\n" + (f"\n{details}" if details else ""))


def clear_failed(folder: Path) -> None:
    (Path(folder) / FAILED).unlink(missing_ok=True)
