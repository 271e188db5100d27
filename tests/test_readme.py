"""Every command line of the README still runs: each flag it uses is in that command's ``--help``,
each line parses with the command's own parser, ablation grids plan with ``--dry-run``, and the
quick-start lines are the ones CI runs. Nothing trains; the whole file takes a few seconds.
"""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def bash_lines(text: str) -> list[str]:
    """The command lines of the fenced ``bash`` blocks, backslash continuations joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            line = (pending + line).strip()
            pending = ""
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def commands(line: str) -> list[list[str]]:
    """One README line → its commands (split at ``&&``), comments dropped, ``.venv/bin/`` stripped."""
    found = []
    for part in line.split("&&"):
        words = shlex.split(part, comments=True)
        if words:
            found.append([words[0].removeprefix(".venv/bin/"), *words[1:]])
    return found


def kind_of(words: list[str]) -> tuple[str, list[str]]:
    """What a command is (``rmvae``, ``ablations``, ``reports``, ``pip``, ``pytest``, ``venv``) and its arguments."""
    program, args = words[0], words[1:]
    if program == "rmvae":
        return "rmvae", args
    if program in ("pip", "pytest"):
        return program, args
    if re.fullmatch(r"python(3(\.\d+)?)?", program):
        if args[:2] == ["-m", "venv"]:
            return "venv", args[2:]
        if args[:1] in (["ablations/run.py"], ["-m"]) and args[:2] != ["-m", "reports.build"]:
            return "ablations", args[2:] if args[0] == "-m" else args[1:]
        if args[:1] == ["reports/build.py"] or args[:2] == ["-m", "reports.build"]:
            return "reports", args[2:] if args[0] == "-m" else args[1:]
    raise AssertionError(f"README command {' '.join(words)!r} is not one this test knows how to check")


README_COMMANDS = [(line, words) for line in bash_lines(README.read_text()) for words in commands(line)]


def help_text(kind: str, args: list[str], capsys) -> str:
    """The ``--help`` output of the command, through its real entry point."""
    if kind == "rmvae":
        from rmvae.cli import main
        argv = [args[0], "--help"]
    elif kind == "ablations":
        from ablations.run import main
        argv = ["--help"]
    else:
        from reports.build import main
        argv = ["--help"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0, f"{kind} {' '.join(argv)} exited with {exit_info.value.code}"
    return capsys.readouterr().out


def flags(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


def config_keys() -> set[str]:
    from rmvae.config import Config

    return {f"{section}.{key}" for section, values in Config().to_dict().items() for key in values}


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser ``rmvae NAME`` parses with (see :mod:`rmvae.cli`)."""
    from rmvae.cli import COMMANDS

    parser = argparse.ArgumentParser(prog=f"rmvae {name}", exit_on_error=False)
    importlib.import_module(COMMANDS[name][0]).add_arguments(parser)
    return parser


def test_readme_has_commands():
    kinds = {kind_of(words)[0] for _, words in README_COMMANDS}
    assert {"rmvae", "ablations", "reports", "pip", "pytest"} <= kinds
    subcommands = {kind_of(words)[1][0] for _, words in README_COMMANDS if kind_of(words)[0] == "rmvae"}
    assert {"data", "train", "generate", "evaluate", "band"} <= subcommands


@pytest.mark.parametrize("line,words", README_COMMANDS, ids=[" ".join(w)[:70] for _, w in README_COMMANDS])
def test_readme_command(line, words, capsys, tmp_path):
    kind, args = kind_of(words)
    if kind in ("venv", "pytest"):
        return
    if kind == "pip":
        extras = re.findall(r"\[(.*?)\]", " ".join(args))
        pyproject = (ROOT / "pyproject.toml").read_text()
        for extra in extras:
            assert re.search(rf"^{extra} = \[", pyproject, flags=re.MULTILINE), f"no extra {extra!r} in pyproject.toml"
        return
    if kind == "rmvae":
        from rmvae.cli import COMMANDS
        assert args and args[0] in COMMANDS, f"rmvae has no subcommand {args[:1]}: {line}"
    text = help_text(kind, args, capsys)
    keys = config_keys()
    for flag in flags(args[1:] if kind == "rmvae" else args):
        if kind == "rmvae" and args[0] == "train" and "." in flag:  # --section.key=value
            assert flag[2:] in keys, f"{flag}: not a config field ({line})"
            continue
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{flag} is not in the --help of: {line}"
    for value in [a.split("=", 1)[0] for a, prev in zip(args[1:], args) if prev == "--set"]:
        assert value in keys, f"--set {value}: not a config field ({line})"

    if kind == "rmvae":
        parser = command_parser(args[0])
        try:
            parsed, extra = parser.parse_known_args(args[1:])
        except argparse.ArgumentError as error:
            pytest.fail(f"{line}: {error}")
        if args[0] == "train":
            from rmvae.commands.train import config_from_args
            config_from_args(parsed, extra)  # every flag and dotted override resolves to a valid config
        else:
            assert not extra, f"unrecognised {extra}: {line}"
    elif kind == "ablations":
        from ablations.run import main
        argv = [a for a in args if a != "--dry-run"]
        if "--out" in argv:
            del argv[argv.index("--out"):argv.index("--out") + 2]
        assert main([*argv, "--dry-run", "--out", str(tmp_path)]) == 0, f"--dry-run failed: {line}\n{capsys.readouterr().err}"
        assert not any(tmp_path.iterdir()), "--dry-run wrote files"


def test_quick_start_is_what_ci_runs():
    """The README's two quick-start lines are CI's (.ci/run): the test command verbatim, and the main job."""
    ci = (ROOT / ".ci" / "run").read_text()
    lines = bash_lines(README.read_text())
    test_line = next(line for line in lines if line.endswith("pytest"))
    job_line = next(line for line in lines if "pip install -e . &&" in line)
    assert test_line in ci
    assert job_line.split("&& ")[-1] in ci


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_links_exist(doc):
    """Every relative link and image of the README and docs/ names a file of the repository."""
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
