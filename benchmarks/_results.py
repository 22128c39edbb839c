"""What the benchmarks share: one named section of ``benchmarks/RESULTS.md`` written without touching the
others, and the CPU's name for the machine line."""

from __future__ import annotations

import platform
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
#: Pictures the benchmarks draw live with the documentation's (the guides show them); RESULTS.md links them as
#: ``../docs/images/<name>``.
IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace the text between ``<!-- name -->`` and ``<!-- /name -->`` (appended if absent)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"<!-- {name} -->\n{markdown.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
