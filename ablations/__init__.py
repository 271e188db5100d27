"""The ablation suite (SPEC §7): grids as data, one ``run_one`` per run, tables, report.

Modules:
    grids      grid → arm → dotted config overrides, the baseline, profiles, run ids.
    run        ``python ablations/run.py --grid NAME``: plan, skip/resume, launch, aggregate.
    launchers  local (sequential), local-parallel (process pool), slurm (submitit).
    aggregate  tidy tables and Student-t statistics from the run folders (no torch).

This package must stay importable without torch or Lightning: ``reports/build.py`` uses it.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    Args:
        path: destination; its folder is created if needed.
        text: full content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON with sorted keys."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(frame, path: Path) -> None:
    """Atomically write a pandas DataFrame as CSV (no index)."""
    atomic_write_text(path, frame.to_csv(index=False))
