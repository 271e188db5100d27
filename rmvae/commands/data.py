"""`rmvae data`: build or load the encoded corpus cache and print what is in it."""
from __future__ import annotations

import json
import time
from collections import Counter

from rmvae.config import Config, DataConfig, apply_overrides


def add_arguments(parser) -> None:
    parser.add_argument("--source", default=DataConfig.source,
                        help="'bach' (music21's chorales, the default) or a folder of MIDI files")
    parser.add_argument("--no-transpose", action="store_true", help="keep raw keys (default: C major / A minor)")
    parser.add_argument("--voices", type=int, default=DataConfig.n_voices, help="voices per piece")
    parser.add_argument("--pickup", type=float, default=DataConfig.pickup_beats, metavar="BEATS",
                        help="MIDI sources: length of the pickup in quarter notes (default: start on a downbeat)")
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: ./data/cache or $RMVAE_CACHE)")
    parser.add_argument("--rebuild", action="store_true", help="parse again even if a cache exists")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("overrides", nargs="*", metavar="data.KEY=VALUE", help="any other data config field")


def data_config_from_args(args) -> DataConfig:
    config = Config(data=DataConfig(source=args.source, transpose=not args.no_transpose, n_voices=args.voices,
                                    pickup_beats=args.pickup))
    return apply_overrides(config, args.overrides).data


def run(args) -> int:
    from rmvae.errors import UserError
    from rmvae.data.corpus import NoUsableFilesError, load_corpus
    from rmvae.data.datamodule import ChoraleDataModule

    started = time.perf_counter()
    config = data_config_from_args(args)
    try:
        if args.rebuild:
            load_corpus(config, args.cache_dir, progress=not args.json, rebuild=True)
        datamodule = ChoraleDataModule(config, cache_dir=args.cache_dir, progress=not args.json)
        datamodule.setup()
    except NoUsableFilesError as error:
        raise UserError(str(error)) from None
    summary = datamodule.summary()
    summary["seconds_total"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(summary))
        return 0
    how = "loaded from cache" if summary["from_cache"] else f"parsed {summary['files_parsed']} files"
    print(f"source {summary['source']}: {summary['pieces_used']} pieces used, "
          f"{summary['pieces_skipped']} skipped ({how} in {summary['seconds']:.2f} s)")
    reasons = Counter(row["reason"] for row in summary["skipped"])
    for reason, count in reasons.most_common():
        print(f"  skipped {count:4d} × {reason}")
    print(f"measures {summary['measures']} ({summary['with_pickup']} pieces with a pickup, padded)")
    print("pieces  " + ", ".join(f"{k} {v}" for k, v in summary["pieces"].items()))
    print("windows " + ", ".join(f"{k} {v}" for k, v in summary["windows"].items()))
    low, high = summary["pitch_range"]
    print(f"pitch range MIDI {low}–{high} ({high - low + 1} pitches), "
          f"{summary['notes_octave_shifted']} notes octave-shifted into it; transposed: {summary['transposed']}")
    print(f"manifest {summary['cache']}/manifest.json; total {summary['seconds_total']:.2f} s")
    return 0
