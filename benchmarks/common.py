"""What every benchmark does with its numbers: print them and keep them under benchmarks/results/."""
from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], path: Path) -> str:
    """Print ``lines`` and write them to ``path`` (folders made); returns the text."""
    text = "\n".join(lines)
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return text
