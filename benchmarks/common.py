"""What every benchmark does with its numbers: print them and keep them under benchmarks/results/."""
from __future__ import annotations

import argparse
from pathlib import Path


def publish(lines: list[str], path: Path) -> str:
    """Print ``lines`` and write them to ``path`` (folders made); returns the text."""
    text = "\n".join(lines)
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return text


def checkpoints_parser(doc: str, split: str) -> argparse.ArgumentParser:
    """The options of a benchmark over trained checkpoints that draws continuations: the
    checkpoints, the split (``split`` by default), draws per chorale and torch threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--split", default=split, choices=["val", "test"])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    return parser
