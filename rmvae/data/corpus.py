"""The corpus: which files are read, the versioned cache, the manifest and the split by piece.

Parsing is slow (music21 needs ~0.1 s per chorale), so a corpus is parsed once, in parallel
processes, into ``data/cache/<key>/`` — note arrays plus a manifest naming every source file as
used or skipped with its reason — and reloaded from there in a fraction of a second. The key
hashes the parse-relevant data config and ``ENCODING_VERSION``, so changing either rebuilds.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rmvae.config import DataConfig
from rmvae.data.notes import ENCODING_VERSION, PitchRange
from rmvae.data.midi import Score, ScoreError, read_midi, read_music21

MIDI_SUFFIXES = {".mid", ".midi", ".kar"}
MUSIC21_SUFFIXES = {".mxl", ".xml", ".musicxml", ".krn", ".abc"}


class NoUsableFilesError(ValueError):
    """A source gave no usable piece at all; the message names it and lists why."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("RMVAE_CACHE", Path.cwd() / "data" / "cache"))


@dataclass
class Corpus:
    """Parsed pieces, the manifest of every source file, and how the corpus was obtained."""

    scores: list[Score]
    manifest: list[dict]
    parsed_files: int  # files parsed by this call: 0 when loaded from the cache
    seconds: float
    cache_path: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def skipped(self) -> list[dict]:
        return [{"file": row["file"], "reason": row["reason"]} for row in self.manifest if row["status"] == "skipped"]

    def split(self, fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
        """Indices of pieces per split; by piece name so a piece never appears in two splits."""
        names = sorted(range(len(self.scores)), key=lambda i: self.scores[i].name)
        order = np.random.default_rng(seed).permutation(len(names))
        shuffled = [names[i] for i in order]
        n_val = int(round(fractions[1] * len(shuffled)))
        n_test = int(round(fractions[2] * len(shuffled)))
        n_train = len(shuffled) - n_val - n_test
        return {"train": sorted(shuffled[:n_train]), "val": sorted(shuffled[n_train:n_train + n_val]),
                "test": sorted(shuffled[n_train + n_val:])}


def source_files(source: str) -> tuple[Path, list[Path], list[dict]]:
    """The source's root folder, its score files, and files not considered at all (listed, never silent)."""
    if source == "bach":
        from music21 import corpus

        files = sorted(corpus.getComposer("bach"), key=lambda p: p.name)
        root = Path(corpus.__file__).parent
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise NoUsableFilesError(f"source '{source}' is neither 'bach' nor an existing folder of MIDI files")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        root = folder
    used, ignored = [], []
    for path in files:
        suffix = path.suffix.lower()
        if suffix in MIDI_SUFFIXES or (source == "bach" and suffix in MUSIC21_SUFFIXES):
            used.append(path)
        else:
            ignored.append({"file": str(path.relative_to(root)), "status": "skipped",
                            "reason": f"not a score file ({suffix or 'no extension'})"})
    return root, used, ignored


def _parse_one(args) -> tuple[str, Score | None, str | None]:
    path, config = args
    try:
        if Path(path).suffix.lower() in MIDI_SUFFIXES:
            score = read_midi(path, config.n_voices, config.time_signature, config.transpose, config.pickup_beats)
        else:
            score = read_music21(path, config.n_voices, config.time_signature, config.transpose)
        return str(path), score, None
    except ScoreError as error:
        return str(path), None, str(error)
    except Exception as error:  # an unexpected parser failure still only skips this file
        return str(path), None, f"unreadable ({type(error).__name__}: {str(error)[:80]})"


def cache_key(config: DataConfig) -> str:
    payload = json.dumps({"parse": config.parse_key(), "encoding_version": ENCODING_VERSION}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def _save(path: Path, corpus: Corpus) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    scores = corpus.scores
    offsets = np.cumsum([0] + [len(s.notes) for s in scores])
    np.savez(tmp / "scores.npz",
             notes=np.concatenate([s.notes for s in scores]).astype(np.int16) if scores else np.zeros((0, 4), np.int16),
             offsets=offsets,
             n_measures=np.array([s.n_measures for s in scores]),
             key_shift=np.array([s.key_shift for s in scores]),
             key_number=np.array([-1 if s.key_number is None else s.key_number for s in scores]),
             tempo=np.array([s.tempo for s in scores], dtype=np.float64),
             pickup_steps=np.array([s.pickup_steps for s in scores]),
             n_voices=np.array([s.n_voices for s in scores]))
    (tmp / "manifest.json").write_text(json.dumps({"meta": corpus.meta, "files": corpus.manifest,
                                                   "names": [s.name for s in scores]}, indent=1))
    if path.exists():  # another process built it meanwhile: keep theirs
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, path)


def _load(path: Path) -> Corpus:
    started = time.perf_counter()
    manifest = json.loads((path / "manifest.json").read_text())
    with np.load(path / "scores.npz") as arrays:
        notes = arrays["notes"].astype(np.int64)
        offsets, n_measures = arrays["offsets"], arrays["n_measures"]
        key_shift, key_number, tempo = arrays["key_shift"], arrays["key_number"], arrays["tempo"]
        pickup, n_voices = arrays["pickup_steps"], arrays["n_voices"]
    scores = [Score(name=name, notes=notes[offsets[i]:offsets[i + 1]], n_voices=int(n_voices[i]),
                    n_measures=int(n_measures[i]), key_shift=int(key_shift[i]),
                    key_number=None if key_number[i] < 0 else int(key_number[i]), tempo=float(tempo[i]),
                    pickup_steps=int(pickup[i]))
              for i, name in enumerate(manifest["names"])]
    return Corpus(scores, manifest["files"], parsed_files=0, seconds=time.perf_counter() - started,
                  cache_path=path, meta=manifest["meta"])


def load_corpus(config: DataConfig, cache_dir: Path | None = None, workers: int | None = None,
                progress: bool = False, rebuild: bool = False) -> Corpus:
    """Load the corpus of ``config.source`` from the cache, parsing (in parallel) only when needed.

    Raises:
        NoUsableFilesError: the source has no usable piece; the message names it and the reasons.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / cache_key(config)
    if path.exists() and not rebuild:
        return _load(path)
    started = time.perf_counter()
    root, files, ignored = source_files(config.source)
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    jobs = [(str(p), config) for p in files]
    if workers > 1 and len(jobs) > 8:
        with ProcessPoolExecutor(workers) as pool:
            results = list(_progress(pool.map(_parse_one, jobs, chunksize=4), len(jobs), progress))
    else:
        results = list(_progress(map(_parse_one, jobs), len(jobs), progress))
    scores, manifest = [], list(ignored)
    for file, score, reason in results:
        file = str(Path(file).relative_to(root))
        if score is None:
            manifest.append({"file": file, "status": "skipped", "reason": reason})
        else:
            scores.append(score)
            manifest.append({"file": file, "status": "used", "name": score.name, "measures": score.n_measures,
                             "key_shift": score.key_shift, "pickup_steps": score.pickup_steps})
    if not scores:
        reasons = sorted({row["reason"] for row in manifest})
        raise NoUsableFilesError(f"no usable piece in '{config.source}' ({len(manifest)} file(s) looked at; "
                                 f"reasons: {'; '.join(reasons[:5]) or 'no files'})")
    seconds = time.perf_counter() - started
    meta = {"parse": config.parse_key(), "encoding_version": ENCODING_VERSION, "build_seconds": seconds}
    corpus = Corpus(scores, manifest, parsed_files=len(jobs), seconds=seconds, cache_path=path, meta=meta)
    _save(path, corpus)
    return corpus


def _progress(iterable, total: int, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc="parsing", unit="file", file=sys.stderr)


def pitch_range_of(scores: list[Score]) -> PitchRange:
    """The smallest range holding every note of these scores (the training pieces)."""
    pitches = np.concatenate([s.notes[:, 3] for s in scores])
    return PitchRange(int(pitches.min()), int(pitches.max()))
