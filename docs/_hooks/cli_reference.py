"""MkDocs hook: the command-line reference page, generated from the ``taghead`` argparse parsers.

``docs/reference/cli.md`` holds the marker ``<!-- taghead-cli-help -->``; at build time it is replaced by
``taghead --help`` and ``taghead <command> --help`` of every command, so the page cannot drift from the
code. The package is imported from the repository that holds ``mkdocs.yml``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MARKER = "<!-- taghead-cli-help -->"
WIDTH = "90"  # argparse wraps help text to $COLUMNS; about 93 characters fit the code column at 1280 px


def _help_sections(repo_root: Path) -> str:
    if str(repo_root) not in sys.path:
        sys.path.insert(0, str(repo_root))
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        from taghead.cli import build_parser

        parser = build_parser()
        sections = ["## `taghead`", "", "```text", parser.format_help().rstrip(), "```", ""]
        subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        for name, sub in subparsers.choices.items():
            sections += [f"## `taghead {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    repo_root = Path(config["config_file_path"]).resolve().parent
    return markdown.replace(MARKER, _help_sections(repo_root))
