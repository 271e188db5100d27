"""`rmvae train`: one training run; named flags for the ablation toggles, dotted overrides for the rest.

Any config field can be set as ``--section.key=value`` (e.g. ``--model.z_dim=64``,
``--loss.n_subsets=3``, ``--data.max_pieces=40``); an unknown key is an error listing valid ones.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rmvae.config import ENCODERS, ENCODINGS, OFFSETS, PRECISIONS, SIZES, Config, LossConfig, apply_overrides
from rmvae.profiles import PROFILES, THESIS_DESIGN, profile_overrides, profiles_help

FLAG_TO_KEY = {  # named flags → config fields; one place, so --help and overrides agree
    "source": "data.source", "transpose": "data.transpose", "offset": "data.offset", "encoding": "data.encoding",
    "n_measures": "data.n_measures", "batch_size": "data.batch_size",
    "size": "model.size", "encoder": "model.encoder", "rpoe": "model.rpoe",
    "max_epochs": "train.max_epochs", "max_steps": "train.max_steps",
    "seed": "train.seed", "devices": "train.devices", "accelerator": "train.accelerator",
    "precision": "train.precision", "lr": "train.lr",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, config.json)")
    parser.add_argument("--config", help="a config.json to start from (e.g. another run's)")
    parser.add_argument("--profile", choices=list(PROFILES),
                        help=f"a training budget shared with the ablation grids: {profiles_help()}; "
                             "flags and --section.key=value still override it")
    parser.add_argument("--thesis-design", action="store_true",
                        help="the thesis's model and objective (rmvae.profiles.THESIS_DESIGN: RNN encoders, factorised "
                             "decoders, N(0, I) priors, lr 1e-3, …) instead of the default design")
    parser.add_argument("--source", help="'bach' or a folder of MIDI files")
    parser.add_argument("--size", choices=list(SIZES))
    parser.add_argument("--encoder", choices=ENCODERS)
    parser.add_argument("--encoding", choices=ENCODINGS)
    parser.add_argument("--rpoe", action=argparse.BooleanOptionalAction, default=None, help="recurrent PoE")
    parser.add_argument("--scale-rhythm", action=argparse.BooleanOptionalAction, default=None,
                        help="scale and rhythm losses together at their default weights (--no-scale-rhythm: "
                             "loss.scale_weight=0 and loss.rhythm_weight=0)")
    parser.add_argument("--harmony", action=argparse.BooleanOptionalAction, default=None,
                        help="harmony loss at its default weights (--no-harmony: loss.harmony_weights=0,0,0)")
    parser.add_argument("--transpose", action=argparse.BooleanOptionalAction, default=None,
                        help="transpose pieces to C major / A minor")
    parser.add_argument("--offset", type=int, choices=OFFSETS,
                        help="predict measure t+1 or t+2 (the band player's; it also sets model.writer_context=measure: "
                             "the band writes each measure after the one before it)")
    parser.add_argument("--n-measures", type=int, help="input window length in measures")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--devices", type=int, help="N > 1 trains with DDP over N processes/GPUs")
    parser.add_argument("--accelerator", help="auto, cpu, gpu, …")
    parser.add_argument("--precision", help=", ".join(PRECISIONS))
    parser.add_argument("--no-wandb", action="store_true", help="only the local CSV log, no Weights & Biases")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def music_loss_overrides(scale_rhythm: bool | None, harmony: bool | None) -> dict[str, object]:
    """The weights that ``--[no-]scale-rhythm`` and ``--[no-]harmony`` stand for: a music loss is
    off at weight 0 and on at its :class:`~rmvae.config.LossConfig` default; None leaves it alone."""
    default = LossConfig()
    overrides: dict[str, object] = {}
    if scale_rhythm is not None:
        overrides["loss.scale_weight"] = default.scale_weight if scale_rhythm else 0.0
        overrides["loss.rhythm_weight"] = default.rhythm_weight if scale_rhythm else 0.0
    if harmony is not None:
        overrides["loss.harmony_weights"] = default.harmony_weights if harmony else (0.0, 0.0, 0.0)
    return overrides


def config_from_args(args, extra: list[str]) -> Config:
    from rmvae.errors import UserError

    config = Config()
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UserError(f"config file '{path}' does not exist")
        config = Config.from_stored(json.loads(path.read_text()))
    if args.profile:
        config = apply_overrides(config, profile_overrides(args.profile))
    if args.thesis_design:
        config = apply_overrides(config, THESIS_DESIGN)
    overrides = {key: getattr(args, flag) for flag, key in FLAG_TO_KEY.items() if getattr(args, flag, None) is not None}
    if args.offset == 2:  # a --model.writer_context given too still wins (dotted overrides come last)
        overrides["model.writer_context"] = "measure"
    overrides.update(music_loss_overrides(args.scale_rhythm, args.harmony))
    if args.no_wandb:
        overrides["train.wandb"] = False
    dotted = []
    items = iter(extra)
    for item in items:
        if not item.startswith("--") or "." not in item:
            raise UserError(f"unrecognised argument {item!r}; use named flags (see --help) or --section.key=value")
        item = item[2:]
        if "=" not in item:
            value = next(items, None)
            if value is None:
                raise UserError(f"--{item} needs a value")
            item = f"{item}={value}"
        dotted.append(item)
    config = apply_overrides(config, overrides)
    return apply_overrides(config, dotted)


def run(args) -> int:
    from rmvae.train import TrainingDiverged, train
    from rmvae.errors import UserError
    from rmvae.data.corpus import NoUsableFilesError

    config = config_from_args(args, getattr(args, "extra", []))
    try:
        result = train(config, args.out, progress_bar=not args.no_progress)
    except TrainingDiverged as error:
        raise UserError(str(error)) from None
    except NoUsableFilesError as error:
        raise UserError(str(error)) from None
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # under DDP every process returns here; one summary line
        print(json.dumps(result))
        from rmvae.train import collapse_warning

        warning = collapse_warning(result)
        if warning:
            import sys

            print(warning, file=sys.stderr)
    return 0
