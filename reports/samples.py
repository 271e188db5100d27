"""One sample per arm beside the report: ``OUT/<grid>/samples/<arm>.{mid,png,wav}``."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
from scipy.io import wavfile

from ablations import runfolder

WAV_RATE, WAV_SECONDS = 11025, 16.0  # sample WAVs: sine synthesis, the first 16 s (≈ 350 kB each)


def render_wav(midi_path: Path, wav_path: Path, seconds: float = WAV_SECONDS, rate: int = WAV_RATE) -> Path:
    """A sample to listen to without a MIDI player: ``pretty_midi``'s sine synthesis (no soundfont),
    cut at the MIDI's end (pretty_midi pads 1 s) and at ``seconds`` to keep files small, peak-normalised
    int16. Raises whatever pretty_midi raises on a file it cannot read."""
    midi = pretty_midi.PrettyMIDI(str(midi_path))
    audio = np.zeros(int(round(rate * min(midi.get_end_time(), seconds))))
    synthesized = midi.synthesize(fs=rate)[:len(audio)]
    audio[:len(synthesized)] = synthesized
    peak = np.abs(audio).max() if len(audio) else 0.0
    pcm = (audio * (32767 / peak) if peak > 0 else audio).astype(np.int16)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = wav_path.with_name(f".{wav_path.stem}.tmp.wav")
    wavfile.write(tmp, rate, pcm)
    tmp.replace(wav_path)
    return wav_path


def _add_wav(grid_dir: Path, arm: str, files: dict[str, str]) -> None:
    """Render ``samples/<arm>.wav`` beside the arm's MIDI; a MIDI that will not load is marked
    ``unreadable`` (with the reason) in ``files``, so one bad file costs its WAV, not the report."""
    wav = grid_dir / "samples" / f"{arm}.wav"
    try:
        render_wav(grid_dir / files["mid"], wav)
        files["wav"] = f"samples/{arm}.wav"
    except Exception as error:  # any parse failure of a saved file means "unreadable"
        wav.unlink(missing_ok=True)  # no stale WAV of an earlier sample
        reason = str(error).strip().splitlines()
        files["unreadable"] = f"{type(error).__name__}: {reason[0] if reason else ''}"[:160]


def copy_samples(grid_dir: Path, status: pd.DataFrame, arms: list[str]) -> dict[str, dict[str, str]]:
    """One sample per arm (lowest finished seed): ``samples/<arm>.mid`` and ``.png`` copied, and
    ``.wav`` rendered from the MIDI (:func:`_add_wav`)."""
    samples = {}
    if status.empty:
        return samples
    done = status[status["status"] == "done"].sort_values("seed")
    for arm in arms:
        for run_id in done.loc[done["arm"] == arm, "run_id"]:
            run_dir = runfolder.run_dir(grid_dir, run_id)
            files = {}
            for suffix in ("mid", "png"):
                source = run_dir / f"{runfolder.SAMPLE}.{suffix}"
                if source.exists():
                    target = grid_dir / "samples" / f"{arm}.{suffix}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    files[suffix] = f"samples/{arm}.{suffix}"
            if "mid" in files:
                _add_wav(grid_dir, arm, files)
            if files:
                samples[arm] = files
                break
    return samples
