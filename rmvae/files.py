"""Atomic file writes: a reader sees the old file or the new one, never half of it.

Used by training (``rmvae.train``), the ablation runner and aggregation (``ablations``) and the
reports (``reports``); torch-free.
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
