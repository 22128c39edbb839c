"""One docstring style for the public API: what the API reference renders is documented, in Google style.

The API reference (``docs/reference/*.md``) names the objects mkdocstrings renders (``::: taghead.x.y``); a
rendered module shows its ``__all__``, a rendered class its public methods and properties. griffe (the parser
behind mkdocstrings, installed with the docs extra) reads the package statically, with the options of
``mkdocs.yml``. For every rendered function, method, property and class this checks that

- it has a docstring (the reference silently omits undocumented members), unless it is a method that
  implements an interface a taghead base class documents (``extract`` of an adapter: the base class's entry
  documents it; the override is left out of the reference);
- griffe's Google parser reads it without a warning (an entry it cannot parse, a name that is no parameter);
- a function, method or class (its ``__init__``) that takes parameters has an ``Args:`` section naming exactly
  those parameters, each once (``self``/``cls`` aside; ``*args``/``**kwargs`` may be documented, and need not
  be). No exceptions: a short helper gets a one-line entry per parameter. A dataclass documents its fields in
  an ``Attributes:`` section instead.

A command's ``--help`` shows docstring text too (``taghead demo``'s description is its module docstring): it
must read as plain text, without reStructuredText markup.

Run ``python tests/test_docstrings.py`` to print every problem at once.
"""

from __future__ import annotations

import argparse
import logging
import re
from functools import cache
from pathlib import Path

import griffe  # the docs extra (pip install -e ".[docs]"), which make test installs
import pytest

from taghead.cli import build_parser
from taghead.commands._args import fill_paragraphs, plain_text

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
DIRECTIVE = re.compile(r"^::: ([\w.]+)[ \t]*\n((?:[ \t]+\S.*\n)*)", re.MULTILINE)  # identifier, indented options
VARIADIC = (griffe.ParameterKind.var_positional, griffe.ParameterKind.var_keyword)
PARSER_OPTIONS = {"ignore_init_summary": True, "returns_multiple_items": False}  # as in mkdocs.yml

@cache
def _package() -> griffe.Module:
    return griffe.load("taghead", search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False,
                       docstring_parser=None)


def _lookup(identifier: str) -> griffe.Object:
    obj = _package()
    for part in identifier.split(".")[1:]:
        obj = obj.members[part]
    return obj.final_target if obj.is_alias else obj


def _directives() -> dict[str, bool]:
    """``identifier -> whether its members are rendered too`` for every ``:::`` directive of the reference."""
    found: dict[str, bool] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for identifier, options in DIRECTIVE.findall(page.read_text() + "\n"):
            found[identifier] = found.get(identifier, False) or not re.search(r"members:\s*false", options)
    return found


def _class_members(cls: griffe.Class) -> list[griffe.Object]:
    """The public methods and properties a class entry renders (its own, not inherited ones)."""
    members = []
    for name, member in cls.members.items():
        if name.startswith("_") or member.is_alias:
            continue
        if member.is_function or (member.is_attribute and "property" in member.labels):
            members.append(member)
    return members


@cache
def rendered() -> tuple[griffe.Object, ...]:
    """Every object the API reference renders (modules aside), once, in page order."""
    objects: dict[str, griffe.Object] = {}

    def add(obj: griffe.Object, with_members: bool) -> None:
        if obj.is_module:
            if with_members:
                for name in obj.exports or ():
                    if name in obj.members and not name.startswith("__"):
                        add(_lookup(f"{obj.path}.{name}"), True)
            return
        objects.setdefault(obj.path, obj)
        if obj.is_class and with_members:
            for member in _class_members(obj):
                objects.setdefault(member.path, member)

    for identifier, with_members in _directives().items():
        add(_lookup(identifier), with_members)
    return tuple(objects.values())


def _parameters(obj: griffe.Object) -> list[str]:
    """The parameter names a docstring must document: ``self``/``cls`` and ``*args``/``**kwargs`` aside."""
    if obj.is_class:
        init = obj.all_members.get("__init__")
        if init is None or init.is_alias and not init.resolved:
            return []
        function = init.final_target if init.is_alias else init
        if function.parent is not None and function.parent.path != obj.path and "dataclass" not in obj.labels:
            return []  # an inherited constructor: documented where it is defined
    elif obj.is_function:
        function = obj
    else:
        return []
    names = [p.name for p in function.parameters if p.kind not in VARIADIC]
    names += [f"*{p.name}" for p in function.parameters if p.kind in VARIADIC]  # optional entries
    if names and names[0] in ("self", "cls") and (obj.is_class or obj.parent.is_class):
        names = names[1:]
    return names


def _overrides_documented(obj: griffe.Object) -> bool:
    """Whether ``obj`` implements a method that a taghead base class documents (the interface's entry says it)."""
    if not obj.is_function or obj.parent is None or not obj.parent.is_class:
        return False
    for base in obj.parent.mro():
        member = base.members.get(obj.name)
        if member is not None and not member.is_alias and member.docstring:
            return True
    return False


def _parse(obj: griffe.Object) -> tuple[list[griffe.DocstringSection], list[str]]:
    """griffe's Google sections of a docstring (merged with ``__init__``'s for a class), and its warnings."""
    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("griffe")
    logger.addHandler(handler)
    try:
        sections = list(obj.docstring.parse("google", **PARSER_OPTIONS)) if obj.docstring else []
        init = obj.members.get("__init__") if obj.is_class else None
        if init is not None and not init.is_alias and init.docstring:
            sections += init.docstring.parse("google", **PARSER_OPTIONS)
    finally:
        logger.removeHandler(handler)
    return sections, warnings


def problems_of(obj: griffe.Object) -> list[str]:
    """What is wrong with one rendered object's docstring (empty when nothing)."""
    where = f"{obj.relative_package_filepath}:{obj.lineno} {obj.path}"
    init = obj.members.get("__init__") if obj.is_class else None
    if not obj.docstring and not (init is not None and not init.is_alias and init.docstring):
        if _overrides_documented(obj):
            return []
        return [f"{where}: no docstring (the API reference omits it)"]
    sections, warnings = _parse(obj)
    found = [f"{where}: griffe: {w}" for w in warnings]
    parameters = _parameters(obj)
    kind = griffe.DocstringSectionKind
    documented = [p.name for s in sections if s.kind is kind.parameters for p in s.value]
    optional = {name for name in parameters if name.startswith("*")}  # *args/**kwargs: welcome, not required
    parameters = [name for name in parameters if name not in optional]
    documented = [name for name in documented if "*" + name.lstrip("*") not in optional]
    if obj.is_class and "dataclass" in obj.labels:
        documented = [a.name for s in sections if s.kind is kind.attributes for a in s.value]
        if [p for p in parameters if p not in documented]:
            found.append(f"{where}: the Attributes section names {documented}, the fields are {parameters}")
        return found
    if not parameters and documented:
        found.append(f"{where}: an Args section ({documented}) for no parameter")
    elif parameters and not documented:
        found.append(f"{where}: no Args section for {parameters}")
    elif sorted(documented) != sorted(parameters):
        found.append(f"{where}: the Args section names {documented}, the parameters are {parameters}")
    return found


def all_problems() -> list[str]:
    return [problem for obj in rendered() for problem in problems_of(obj)]


def test_the_reference_renders_the_public_api():
    paths = {obj.path for obj in rendered()}
    assert len(paths) > 150  # a broken collector would check nothing
    for expected in ("taghead.heads.tag.TAGHead", "taghead.heads.tag.TAGHead.forward_features",
                     "taghead.models.wrap.wrap_backbone", "taghead.adapters.base.FeatureExtractor.feature_shape"):
        assert expected in paths


def test_every_rendered_object_has_a_google_docstring():
    problems = all_problems()
    assert not problems, "docstrings to fix (Google style, see docs/guides/contributing-docs.md):\n" + "\n".join(
        problems)


def test_a_bad_docstring_is_caught():
    """The checks fail on the mistakes they exist for (a missing name, a stray name, no docstring)."""
    module = griffe.visit("example", Path("example.py"), code='''
def good(video: str, size: int = 3, *args: int, **kwargs: int):
    """Resize.

    Args:
        video: frames.
        size: pixels.
    """

def missing(video: str, size: int = 3):
    """Resize.

    Args:
        video: frames.
    """

def stray(video: str):
    """Resize.

    Args:
        video: frames.
        size: pixels.
    """

def undocumented(video: str):
    pass

class Thing:
    """A thing.

    Args:
        width: pixels.
    """

    def __init__(self, width: int, height: int):
        pass
''')
    assert problems_of(module["good"]) == []
    assert "the parameters are ['video', 'size']" in " ".join(problems_of(module["missing"]))
    assert problems_of(module["stray"])  # griffe warns about the unknown parameter, and the names differ
    assert "no docstring" in " ".join(problems_of(module["undocumented"]))
    assert "the parameters are ['width', 'height']" in " ".join(problems_of(module["Thing"]))


def _command_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


def test_command_help_is_plain_text():
    parsers = _command_parsers()
    assert {"demo", "train", "predict"} <= set(parsers)
    markup = re.compile(r"``|:(?:class|func|meth|attr|data|mod|exc|math):`")
    for name, parser in parsers.items():
        text = parser.format_help()
        assert not markup.search(text), f"taghead {name} --help shows reStructuredText markup:\n{text}"
    assert parsers["demo"].description.startswith("taghead demo: TAG-Head versus mean pooling")


@pytest.mark.parametrize(("text", "plain"), [
    ("``taghead demo``: a *where* b", "taghead demo: a where b"),
    (":func:`~taghead.explain` and :class:`taghead.VideoClassifier`", "explain and taghead.VideoClassifier"),
    ("videos/*.mp4, 2 * 3 and a**2", "videos/*.mp4, 2 * 3 and a**2"),
])
def test_plain_text_removes_markup_only(text, plain):
    assert plain_text(text) == plain


def test_command_help_prose_fits_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    for name, parser in _command_parsers().items():
        prose = [line for line in parser.format_help().splitlines() if line and not line[0].isspace()]
        too_long = [line for line in prose if len(line) > 80 and " " in line.strip()]
        assert not too_long, f"taghead {name} --help has prose lines wider than the terminal: {too_long}"


@pytest.mark.parametrize("columns", ["60", "137"])
def test_command_help_keeps_hyphenated_words_whole(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    for name, parser in _command_parsers().items():
        prose = " ".join(line for line in parser.format_help().splitlines() if line and not line[0].isspace())
        split = re.findall(r"\b\w+- \w+", prose)  # "per- class": a word broken at its hyphen, then re-joined
        assert not split, f"taghead {name} --help at {columns} columns shows {split}"


def test_fill_paragraphs_fills_prose_and_keeps_indented_lines():
    text = ("A first paragraph written\nover two short lines.\n\nexamples:\n"
            "  taghead train --data synthetic --epochs 12 --batch-size 32 --output runs/tiny\n"
            "- a list item long enough to wrap onto a second line\n- another item")
    assert fill_paragraphs(text, 30).splitlines() == [
        "A first paragraph written over",
        "two short lines.",
        "",
        "examples:",
        "  taghead train --data synthetic --epochs 12 --batch-size 32 --output runs/tiny",
        "- a list item long enough to",
        "  wrap onto a second line",
        "- another item",
    ]


if __name__ == "__main__":
    print("\n".join(all_problems()))
