"""The documentation's examples are tests: Sybil collects README.md and docs/**/*.md (see
docs/guides/contributing-docs.md).

- ```python blocks of one page run in order, in one namespace (a block starting with ``>>>`` is a
  doctest, compared with ELLIPSIS and NORMALIZE_WHITESPACE);
- ```bash blocks: every command runs (each must be a ``taghead ...`` command); ```console blocks: the
  ``$ ``-prompted commands run and the lines after each are its expected output (``...`` matches anything);
- ``<!-- skip: next "reason" -->`` before a block skips it, and pytest shows the reason;
- every page runs in its own temporary working directory, shared by its Python and shell blocks, with
  ``HF_HUB_OFFLINE=1`` and a fresh ``TORCH_HOME``: nothing is downloaded and nothing is written into
  the repository.
"""

from __future__ import annotations

import doctest
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown import ClearNamespaceParser, PythonCodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

ROOT = Path(__file__).resolve().parent
COMMAND_TIMEOUT_S = 300
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
SKIP_HINT = 'mark the block with <!-- skip: next "why it cannot run here" --> on the line before it'

_WORKDIR = "__docs_workdir__"
_SAVED = "__docs_saved_state__"
_DOCS_ENV = {
    "HF_HUB_OFFLINE": "1",  # nothing is downloaded: a block that needs the network must be skipped
    "MPLBACKEND": "Agg",
    "TQDM_DISABLE": "1",  # progress bars would only clutter a failure's output
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}


def _shim_dir() -> Path:
    """A folder with a ``taghead`` executable that runs this repository's package with this Python."""
    folder = Path(tempfile.mkdtemp(prefix="taghead-docs-bin-"))
    shim = folder / "taghead"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m taghead.cli "$@"\n')
    shim.chmod(0o755)
    return folder


_SHIM: Path | None = None


def _subprocess_env(workdir: Path) -> dict[str, str]:
    global _SHIM
    if _SHIM is None:
        _SHIM = _shim_dir()
    env = dict(os.environ, **_DOCS_ENV)
    env["PATH"] = f"{_SHIM}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["TORCH_HOME"] = str(workdir / ".torch")
    env["HF_HOME"] = str(workdir / ".hf")
    env["HF_HUB_CACHE"] = str(workdir / ".hf" / "hub")
    return env


def setup_page(namespace: dict) -> None:
    """Give the page a temporary working directory and an offline environment (undone by teardown)."""
    import huggingface_hub.constants as hf_constants

    workdir = Path(tempfile.mkdtemp(prefix="taghead-docs-"))
    env = _subprocess_env(workdir)
    keys = (*_DOCS_ENV, "TORCH_HOME", "HF_HOME", "HF_HUB_CACHE")
    namespace[_SAVED] = {
        "cwd": os.getcwd(),
        "env": {key: os.environ.get(key) for key in keys},
        "hf": (hf_constants.HF_HUB_OFFLINE, hf_constants.HF_HUB_CACHE),
    }
    os.environ.update({key: env[key] for key in keys})
    hf_constants.HF_HUB_OFFLINE = True
    hf_constants.HF_HUB_CACHE = env["HF_HUB_CACHE"]
    namespace[_WORKDIR] = workdir
    os.chdir(workdir)


def teardown_page(namespace: dict) -> None:
    import huggingface_hub.constants as hf_constants

    saved = namespace.pop(_SAVED)
    os.chdir(saved["cwd"])
    for key, value in saved["env"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    hf_constants.HF_HUB_OFFLINE, hf_constants.HF_HUB_CACHE = saved["hf"]
    shutil.rmtree(namespace.pop(_WORKDIR), ignore_errors=True)


def _logical_lines(source: str) -> list[str]:
    """Lines with their backslash continuations joined."""
    lines, current = [], ""
    for raw in source.splitlines():
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    if current:
        lines.append(current)
    return lines


def _not_taghead(command: str) -> str | None:
    """The program a command runs when it is not ``taghead`` (the docs tests run nothing else)."""
    words = shlex.split(command, comments=True)
    return words[0] if words and words[0] != "taghead" else None


class ShellExample:
    """Commands of one shell block, each with the output it must print (``None``: not checked)."""

    def __init__(self, steps: list[tuple[str, str | None]]):
        self.steps = steps

    def __str__(self) -> str:
        return "\n".join(command for command, _ in self.steps)


def run_shell_example(example: Example) -> str | None:
    """Run every command of the block in the page's working directory; the first failure is the result."""
    workdir = example.namespace[_WORKDIR]
    env = _subprocess_env(workdir)
    checker = doctest.OutputChecker()
    for command, _ in example.parsed.steps:  # refuse the whole block before running any of it
        if program := _not_taghead(command):
            return (f"the docs tests run only `taghead ...` commands, not {program!r} ({command.strip()!r}); "
                    f"{SKIP_HINT}")
    for command, expected in example.parsed.steps:
        try:
            done = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"`{command}` ran longer than {COMMAND_TIMEOUT_S} s"
        if done.returncode != 0:
            return (f"`{command}` exited with {done.returncode}\n--- stdout\n{done.stdout[-4000:]}"
                    f"\n--- stderr\n{done.stderr[-4000:]}")
        if expected is not None and not checker.check_output(expected, done.stdout, DOCTEST_FLAGS):
            return f"`{command}` printed\n{done.stdout}\nbut the page shows\n{expected}"
    return None


class ShellBlockParser:
    """```bash blocks (every line a command) and ```console blocks (``$ command`` lines, each followed by
    its expected output)."""

    def __init__(self) -> None:
        self.lexer = FencedCodeBlockLexer(language=r"bash|console", mapping={"language": "language",
                                                                              "source": "source"})

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in self.lexer(document):
            language, source = region.lexemes["language"], str(region.lexemes["source"])
            line = document.text.count("\n", 0, region.start) + 2
            steps = self._console(source, line) if language == "console" else self._bash(source)
            if steps:
                yield Region(region.start, region.end, ShellExample(steps), run_shell_example)

    @staticmethod
    def _bash(source: str) -> list[tuple[str, str | None]]:
        return [(command, None) for command in _logical_lines(source)
                if command.strip() and not command.lstrip().startswith("#")]

    @staticmethod
    def _console(source: str, line: int) -> list[tuple[str, str | None]]:
        steps: list[tuple[str, list[str]]] = []
        for text in _logical_lines(source):
            if text.startswith("$ "):
                steps.append((text[2:], []))
            elif steps:
                steps[-1][1].append(text)
            elif text.strip():
                raise ValueError(f"line {line}: a console block starts with a `$ ` command, got {text!r}")
        return [(command, "\n".join(out).strip() + "\n" if any(o.strip() for o in out) else None)
                for command, out in steps]


pytest_collect_file = Sybil(
    parsers=[
        SkipParser(),
        ClearNamespaceParser(),
        PythonCodeBlockParser(doctest_optionflags=DOCTEST_FLAGS),
        ShellBlockParser(),
    ],
    patterns=["README.md", "docs/*.md", "docs/*/*.md", "docs/*/*/*.md"],
    excludes=["*/README.md", "_*", "_*/*", "site/*"],
    setup=setup_page,
    teardown=teardown_page,
    name="docs",
).pytest()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Report a skipped docs block at its place in the page (not where unittest's SkipTest was raised)."""
    outcome = yield
    report = outcome.get_result()
    example = getattr(item, "example", None)
    if example is not None and report.skipped and isinstance(report.longrepr, tuple):
        report.longrepr = (str(Path(example.path).relative_to(ROOT)), example.line, report.longrepr[2])
