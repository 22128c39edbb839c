"""Command-line pieces that ``taghead train``, ``eval``, ``predict`` and ``explain`` share: the parser, run options, errors."""

from __future__ import annotations

import argparse
import copy
import math
import re
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["add_command_parser", "add_device_argument", "add_video_model_arguments", "add_run_arguments", "fail",
           "run_reporting_errors", "positive_int", "non_negative_int", "finite_float", "positive_float",
           "non_negative_float", "unit_float", "resolve_device", "HelpFormatter", "plain_text",
           "fill_paragraphs"]

_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj|const|math):`~?(.+?)`")
_EMPHASIS = re.compile(r"(?<![\w*/])\*{1,2}(\w(?:[^*\n]*\w)?)\*{1,2}(?![\w*])")


def plain_text(text: str) -> str:
    """A docstring's text as a terminal shows it: reStructuredText inline markup removed.

    Double-backtick literals and Sphinx roles keep their text (a role's ``~`` target its last name), starred
    emphasis loses its stars; anything else (``videos/*.mp4``, ``2 * 3``) is left as written. Command
    descriptions that come from a module docstring go through it, so ``taghead COMMAND --help`` prints no
    markup.

    Args:
        text: the docstring or paragraph.
    """
    text = _ROLE.sub(lambda m: m[1].rsplit(".", 1)[-1] if m[0].count("~") else m[1], text)
    text = _LITERAL.sub(r"\1", text)
    return _EMPHASIS.sub(r"\1", text)


_ITEM = re.compile(r"(?:[-*]|\d+[.)]) ")


def fill_paragraphs(text: str, width: int) -> str:
    """``text`` with its prose paragraphs filled to ``width`` columns and everything indented kept as written.

    A paragraph is a run of lines that start at column 0; a list item (``- ``, ``* ``, ``1. ``) starts a new one
    and its wrapped lines hang under its text. Indented lines (examples, aligned tables) and blank lines are
    left untouched, so a command line in an epilog is never broken.

    Args:
        text: a description or epilog.
        width: the columns to fill to.
    """
    out: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            hang = " " * len(m[0]) if (m := _ITEM.match(paragraph[0])) else ""
            out.extend(textwrap.wrap(" ".join(paragraph), width, subsequent_indent=hang,
                                     break_long_words=False, break_on_hyphens=False))
            paragraph.clear()

    for line in text.splitlines():
        if not line.strip() or line[0].isspace():
            flush()
            out.append(line)
        else:
            if _ITEM.match(line):
                flush()
            paragraph.append(line.strip())
    flush()
    return "\n".join(out)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Description and epilog with their prose paragraphs filled to the terminal's width and indented lines
    (examples) as written (:func:`fill_paragraphs`); every option's help ends with its default
    (``(default: 8)``) unless the help already speaks of its default, or there is none to show (``None``, a
    flag's ``False``)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.indent(fill_paragraphs(text, max(width, 20)), indent)

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        return bool(action.option_strings) and "default" not in (action.help or "") and not (
            action.default is None or action.default is False or action.default is argparse.SUPPRESS)

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and self._shows_default(action):  # argparse prints no help line for help=None
            action = copy.copy(action)
            action.help = ""
            action.help = self._get_help_string(action)
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not self._shows_default(action):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


# ------------------------------------------------------------------------------------- option types
def _int(text: str, lowest: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """``argparse`` type: an int >= 1 (``0`` is an error, never "the default")."""
    return _int(text, 1, "an integer >= 1")


def non_negative_int(text: str) -> int:
    """``argparse`` type: an int >= 0."""
    return _int(text, 0, "an integer >= 0")


def _float(text: str, check: Callable[[float], bool], what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or not check(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """``argparse`` type: a finite float (``inf`` and ``nan`` are errors)."""
    return _float(text, lambda v: True, "a finite number")


def positive_float(text: str) -> float:
    """``argparse`` type: a finite float > 0."""
    return _float(text, lambda v: v > 0, "a finite number > 0")


def non_negative_float(text: str) -> float:
    """``argparse`` type: a finite float >= 0."""
    return _float(text, lambda v: v >= 0, "a finite number >= 0")


def unit_float(text: str) -> float:
    """``argparse`` type: a float in [0, 1]."""
    return _float(text, lambda v: 0 <= v <= 1, "a number in [0, 1]")


# ------------------------------------------------------------------------------------------ checks
def resolve_device(choice: str | None) -> torch.device:
    """The device of ``--device``: CUDA when available for ``None``; ``cuda`` without a GPU is a ``ValueError``."""
    import torch

    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is False); "
                         "use --device cpu")
    return torch.device(choice)


def add_command_parser(subparsers: argparse._SubParsersAction, name: str, *, help: str, description: str,
                       epilog: str | None = None) -> argparse.ArgumentParser:
    """The sub-command's parser: ``description`` (one paragraph, any line breaks; markup removed by
    :func:`plain_text`) filled to the terminal when help is printed, ``epilog`` (examples) as written, defaults
    shown (:class:`HelpFormatter`)."""
    description = " ".join(plain_text(description).split())
    return subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                 formatter_class=HelpFormatter)


def add_device_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--device {cpu,cuda}`` (default: CUDA when available; see :func:`resolve_device`)."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")


def add_video_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The positional ``videos`` (one or more files) and ``--model`` (required), as ``predict`` and ``explain`` take them."""
    parser.add_argument("videos", nargs="+", help="video files")
    parser.add_argument("--model", required=True,
                        help="saved model folder, training output folder, checkpoint file or Hub repo id")


def add_run_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, batch_size_help: str | None = None,
                      amp_help: str | None = None, workers_help: str | None = None,
                      progress_help: str | None = None) -> None:
    """``--batch-size`` (8), ``--workers`` (0), ``--amp`` (none), ``--device`` and ``--no-progress``."""
    from ..engine.trainer import AMP_MODES

    parser.add_argument("--batch-size", type=positive_int, default=8, help=batch_size_help)
    parser.add_argument("--workers", type=non_negative_int, default=0, help=workers_help)
    parser.add_argument("--amp", choices=AMP_MODES, default="none", help=amp_help)
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help=progress_help)


def fail(command: str, message: object) -> int:
    """Print ``taghead COMMAND: error: MESSAGE`` on stderr, on one line (line breaks of the message become
    spaces); returns the usage-error exit code 2."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"taghead {command}: error: {text}", file=sys.stderr)
    return 2


#: What the commands report as ``taghead COMMAND: error: ...``: bad values, missing or unreadable files, an
#: output that would replace something (``FileExistsError``), an unreachable Hub or a full disk (``OSError``),
#: training that diverged (``FloatingPointError``).
USAGE_ERRORS = (ValueError, TypeError, OSError, FloatingPointError)


def run_reporting_errors(command: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``func(args)``; a usage error (:data:`USAGE_ERRORS`: bad value, missing file, unreadable checkpoint, a file
    where a folder should be, a full disk, an existing run in the output, an unreachable Hub, training that
    diverged) is printed as ``taghead COMMAND: error: ...`` on stderr and gives exit code 2 instead of a traceback
    (:class:`taghead.weights.CheckpointError` is a ``ValueError``)."""
    try:
        return func(args)
    except BrokenPipeError:  # the reader went away (`taghead eval ... | head`): not the user's input at fault
        raise
    except USAGE_ERRORS as err:
        return fail(command, err)
