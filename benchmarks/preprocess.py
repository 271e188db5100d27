"""Preprocessing time of the default corpus: cold first parse and reload from the cache.

    OMP_NUM_THREADS=1 python benchmarks/preprocess.py [--workers 2] [--source bach] [--repeats 3]

Cold: a fresh temporary cache folder, and music21's scratch folder (where it would keep parse
pickles) pointed at a fresh temporary folder too, so nothing parsed before is reused;
:func:`rmvae.data.midi.read_music21` already parses with ``forceSource=True, storePickle=False``.
The files are parsed by ``load_corpus(workers=N)`` in N processes.

Warm: inside this (already running) process, with every import done, the time of
``load_corpus`` on the cache just written and of ``ChoraleDataModule.setup()`` (which also
splits, finds the pitch range and encodes every piece into windows). The best of ``--repeats``
is reported next to the first.

Goals: cold < 60 s on 2 cores, warm < 1 s.
"""
from __future__ import annotations

import argparse
import collections
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

COLD_GOAL_S, WARM_GOAL_S = 60.0, 1.0


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="parser processes (default 2)")
    parser.add_argument("--source", default="bach", help="data.source (default: music21's Bach chorales)")
    parser.add_argument("--repeats", type=int, default=3, help="warm reloads to time (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="rmvae-preprocess-"))
    scratch = root / "music21-scratch"
    scratch.mkdir()
    # music21's scratch folder is tempfile.gettempdir()/music21 unless the user settings name one;
    # point the temp dir at a fresh folder (inherited by the forked parser processes).
    os.environ["TMPDIR"] = str(scratch)
    tempfile.tempdir = None

    import music21  # noqa: F401  (imports are not timed)
    from music21 import environment

    from rmvae.config import DataConfig
    from rmvae.data.corpus import load_corpus
    from rmvae.data.datamodule import ChoraleDataModule

    configured_scratch = environment.get("directoryScratch")
    scratch_used = configured_scratch or environment.Environment().getRootTempDir()
    config = DataConfig(source=args.source)
    cache = root / "cache"
    try:
        print(f"source={args.source} workers={args.workers} cpus={len(os.sched_getaffinity(0))} "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
        print(f"cache={cache} (fresh)  music21 scratch={scratch_used}"
              + ("  [set in the music21 user settings: parse pickles are still off]" if configured_scratch else ""))
        print(f"load average before: {_load_average()}")

        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        corpus = load_corpus(config, cache_dir=cache, workers=args.workers)
        cold = time.perf_counter() - started
        cold_cpu = _cpu_seconds() - cpu_before
        load_after_cold = _load_average()
        assert corpus.parsed_files > 0, "the cold run did not parse: the cache was not fresh"

        reloads, setups = [], []
        for _ in range(max(1, args.repeats)):
            started = time.perf_counter()
            reloaded = load_corpus(config, cache_dir=cache, workers=args.workers)
            reloads.append(time.perf_counter() - started)
            assert reloaded.parsed_files == 0, "the reload parsed again instead of reading the cache"
            datamodule = ChoraleDataModule(config, cache_dir=cache)
            started = time.perf_counter()
            datamodule.setup()
            setups.append(time.perf_counter() - started)

        used, skipped = len(corpus.scores), corpus.skipped
        reasons = collections.Counter(_reason_kind(row["reason"]) for row in skipped)
        summary = datamodule.summary()
        print()
        print(f"pieces: {used} used, {len(skipped)} skipped, of {len(corpus.manifest)} files "
              f"({corpus.parsed_files} parsed)")
        for reason, count in reasons.most_common():
            print(f"  skipped {count:4d}  {reason}")
        print(f"windows: {summary['windows']}  pitch range: {summary['pitch_range']}")
        print()
        print(f"{'measure':44s} {'seconds':>9s} {'goal':>8s}  ok")
        rows = [(f"cold parse + cache write ({args.workers} processes)", cold, COLD_GOAL_S),
                ("reload: load_corpus from the cache (first)", reloads[0], WARM_GOAL_S),
                (f"reload: load_corpus (best of {len(reloads)})", min(reloads), WARM_GOAL_S),
                ("reload: ChoraleDataModule.setup() (first)", setups[0], WARM_GOAL_S),
                (f"reload: ChoraleDataModule.setup() (best of {len(setups)})", min(setups), WARM_GOAL_S)]
        for label, seconds, goal in rows:
            print(f"{label:44s} {seconds:9.3f} {'< ' + str(int(goal)):>8s}  {'yes' if seconds < goal else 'NO'}")
        n_files = max(1, corpus.parsed_files)
        print(f"cold: {cold_cpu:.1f} s of CPU (this process + its parser processes), "
              f"{cold_cpu / n_files * 1000:.0f} ms per file; on {args.workers} otherwise idle cores that is "
              f"≈{cold_cpu / args.workers:.1f} s of wall time (lower bound: perfect balance, no contention)")
        print(f"load average after cold parse: {load_after_cold}; at the end: {_load_average()}")
        ok = cold < COLD_GOAL_S and reloads[0] < WARM_GOAL_S and setups[0] < WARM_GOAL_S
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its reaped children (the parser processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reason_kind(reason: str) -> str:
    """Group skip reasons: 'time signature 3/4' and 'time signature 3/4 and 4/4' stay apart, file names go."""
    if reason.startswith("not a score file"):
        return reason
    return reason.split(";")[0]


if __name__ == "__main__":
    sys.exit(main())
