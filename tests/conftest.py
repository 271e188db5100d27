"""Shared fixtures: small real corpora written once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Chorales without a pickup, so their MIDI export (which has no notion of one) keeps bar lines.
FIXTURE_CHORALES = ("bwv1.6", "bwv10.7", "bwv101.7", "bwv102.7", "bwv103.6", "bwv104.6", "bwv108.6",
                    "bwv11.6", "bwv110.7", "bwv111.6", "bwv112.5", "bwv113.8")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models, batch-1 inference: one thread is as fast, and two spinning threads on a busy
    2-core machine (other jobs, DDP test processes) cost seconds per step."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def chorale_folder(tmp_path_factory) -> Path:
    """A folder of real Bach chorales (4 voices, 4/4) exported to MIDI by music21 itself."""
    import music21

    folder = tmp_path_factory.mktemp("chorales")
    written = 0
    for name in FIXTURE_CHORALES:
        score = music21.corpus.parse(f"bach/{name}")
        signatures = {ts.ratioString for ts in score.recurse().getElementsByClass(music21.meter.TimeSignature)}
        if len(score.parts) != 4 or signatures != {"4/4"}:
            continue
        score.write("midi", fp=str(folder / f"{name}.mid"))
        written += 1
    assert written >= 8
    return folder


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")
