"""`rmvae` command line: one subcommand per module, imported only when used.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``. User errors
(bad files, missing checkpoints, wrong config keys) are raised as :class:`UserError` or
:class:`~rmvae.config.ConfigError` and printed as one line, with a non-zero exit and no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "data": ("rmvae.commands.data", "build or load the encoded corpus cache and summarise it"),
    "train": ("rmvae.commands.train", "train an RMVAE (CPU, GPU or DDP)"),
    "generate": ("rmvae.commands.generate", "complete, fill, harmonize, redo, inpaint, interpolate from a checkpoint"),
    "evaluate": ("rmvae.commands.evaluate", "accuracy, NLL and musical statistics of a checkpoint or a MIDI folder"),
    "band": ("rmvae.commands.band", "real-time play-along with a trained model"),
}


from rmvae.errors import UserError  # noqa: E402  (re-exported for command modules)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="rmvae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    modules = {}
    for name, (module_path, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # import only the command being run: torch import is slow
            try:
                modules[name] = importlib.import_module(module_path)
            except ModuleNotFoundError as error:
                if error.name != module_path:
                    raise
                parser.error(f"command '{name}' is not available in this version")
            modules[name].add_arguments(command_parser)
    if chosen == "train":  # `rmvae train` also takes dotted overrides: --model.z_dim=64
        args, extra = parser.parse_known_args(argv)
        args.extra = extra
    else:
        args = parser.parse_args(argv)
    from rmvae.config import ConfigError

    try:
        return int(modules[args.command].run(args) or 0)
    except (UserError, ConfigError) as error:
        print(f"rmvae {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rmvae {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
