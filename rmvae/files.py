"""Atomic file writes: a reader sees the old file or the new one, never half of it.

A process killed (SIGKILL, preemption) in the middle of a write leaves at most a stray
temporary file beside the target, never a torn target. Used by training (``rmvae.train``,
its checkpoints and ``metrics.csv``), the ablation runner and aggregation (``ablations``) and
the reports (``reports``); torch-free.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_writer(path: Path, binary: bool = False) -> Iterator[IO]:
    """A file handle whose content replaces ``path`` in one rename once the block ends.

    The temporary file lives in the target's folder (a rename within one file system is atomic)
    and is flushed to disk before the rename; if the block raises, it is removed and ``path`` is
    left as it was.

    Args:
        path: destination; its folder is created if needed.
        binary: a bytes handle instead of a UTF-8 text handle.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name opened exclusively (not mkstemp, whose files are private): the umask applies.
    tmp_name = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp_name, "xb" if binary else "x", **({} if binary else {"encoding": "utf-8"})) as tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    Args:
        path: destination; its folder is created if needed.
        text: full content.
    """
    with atomic_writer(path) as handle:
        handle.write(text)


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON with sorted keys."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(frame, path: Path) -> None:
    """Atomically write a pandas DataFrame as CSV (no index)."""
    atomic_write_text(path, frame.to_csv(index=False))


def remove_stray_temporaries(folder: Path) -> None:
    """Delete the temporary files that writes killed before their rename left in ``folder``."""
    for stray in Path(folder).glob(".*.tmp"):
        stray.unlink(missing_ok=True)
