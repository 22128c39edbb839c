"""Untrusted text (label names, file names, provenance strings) made harmless where taghead writes it out.

- :func:`terminal_text`: for lines printed on a terminal: control characters (ANSI escape sequences,
  carriage returns, NUL, ...) and the invisible bidirectional-override characters are shown as escapes;
- :func:`spreadsheet_cell`: for CSV cells: a value that a spreadsheet would run as a formula
  (``=HYPERLINK(...)``, ``+``, ``-``, ``@`` first, or a leading tab or line break) gets a leading ``'``;
- :func:`markdown_text`, :func:`code_span` and :func:`code_fence`: for the model card (Markdown that
  the Hub renders): no raw HTML (``<script>``), no links, no way out of a code span or block.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["terminal_text", "spreadsheet_cell", "markdown_text", "code_span", "code_fence"]

# Invisible characters that reorder or hide text on a terminal (Trojan-source style).
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape_char(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(text: object) -> str:
    """``str(text)`` with every control character (Unicode category ``Cc``: ESC, ``\\r``, ``\\n``, NUL, DEL, ...)
    and bidirectional-override character written as a visible escape (``\\x1b``, ``\\u202e``)."""
    return "".join(_escape_char(c) if unicodedata.category(c) == "Cc" or c in _BIDI else c for c in str(text))


def spreadsheet_cell(value: object) -> object:
    """A CSV cell value that spreadsheets show as text: a string starting with ``=``, ``+``, ``-`` or ``@``
    (after any spaces), or with a tab or line break, gets a leading ``'`` (OWASP's advice against CSV
    injection); other values are returned as they are."""
    if not isinstance(value, str) or not value:
        return value
    if value[0] in "\t\r\n" or value.lstrip(" ")[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#!])")


def markdown_text(text: object) -> str:
    """``str(text)`` as literal Markdown text: ``<``, ``>`` and ``&`` as HTML entities (no tags, no scripts),
    the Markdown punctuation that makes links, emphasis, code or table cells backslash-escaped, and line
    breaks as spaces (one paragraph)."""
    flat = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def code_span(text: object) -> str:
    """``str(text)`` as an inline code span whose content is shown literally (CommonMark: a fence of more
    backticks than the longest run inside, padded with spaces); line breaks become spaces."""
    flat = " ".join(str(text).split())
    fence = "`" * (_longest_backtick_run(flat) + 1)
    return f"{fence} {flat} {fence}"


def code_fence(text: str, info: str = "") -> list[str]:
    """The lines of a fenced code block holding ``text`` literally (a fence longer than any backtick run in it)."""
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return [f"{fence}{info}", text, fence]
