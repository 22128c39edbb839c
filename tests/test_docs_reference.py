"""The documentation stays complete: every public name has an API reference entry, and the README's links work.

The API reference pages (``docs/reference/*.md``) name the objects mkdocstrings renders (``::: taghead.x.y``).
A name added to a public module's ``__all__`` without a reference entry fails here, naming the page to edit.
"""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
DIRECTIVE = re.compile(r"^::: ([\w.]+)[ \t]*\n((?:[ \t]+\S.*\n)*)", re.MULTILINE)  # identifier, indented options

# The modules whose public names (``__all__``) the reference documents.
PUBLIC_MODULES = [
    "taghead", "taghead.ops", "taghead.heads", "taghead.adapters", "taghead.backbones", "taghead.data",
    "taghead.engine", "taghead.explanation", "taghead.text", "taghead.config", "taghead.convert", "taghead.weights",
    "taghead.utils", "taghead.hub", "taghead.models.classifier", "taghead.models.wrap", "taghead.models.registry",
    "taghead.models.loading", "taghead.features", "taghead.limits", "taghead.layers", "taghead.layers.batchnorm",
    "taghead.heads.attentive", "taghead.adapters.transformers", "taghead.backbones.weights",
    "taghead.backbones.transformers", "taghead.backbones.transformers_hub", "taghead.features.cache",
    "taghead.features.dataset", "taghead.features.extract", "taghead.engine.recipes", "taghead.utils.checkpointing",
]


def _resolve(identifier: str) -> object:
    """The object a ``::: identifier`` directive renders (a module, or an attribute of one)."""
    parts = identifier.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(identifier)


def _directives() -> dict[str, bool]:
    """``identifier -> whether its members are rendered too`` for every ``:::`` directive of the reference."""
    found = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for identifier, options in DIRECTIVE.findall(page.read_text() + "\n"):
            found[identifier] = found.get(identifier, False) or not re.search(r"members:\s*false", options)
    return found


def _documented() -> list[object]:
    """Every object the reference renders: the named ones, and the public members of rendered modules."""
    objects = []
    for identifier, with_members in _directives().items():
        obj = _resolve(identifier)
        objects.append(obj)
        if isinstance(obj, types.ModuleType) and with_members:
            names = getattr(obj, "__all__", None) or [n for n in vars(obj) if not n.startswith("_")]
            objects += [getattr(obj, name) for name in names if hasattr(obj, name)]
    return objects


def test_every_directive_names_an_existing_object():
    for identifier in _directives():
        _resolve(identifier)  # raises, naming the identifier, when a page renders something that is gone


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(module_name):
    module = importlib.import_module(module_name)
    documented = _documented()
    modules = [ident for ident in _directives()]
    missing = []
    for name in (n for n in module.__all__ if not n.startswith("__")):  # __version__: in prose
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            ok = any(ident == obj.__name__ or ident.startswith(obj.__name__ + ".") for ident in modules)
        else:
            ok = any(d is obj for d in documented)
        if not ok:
            missing.append(name)
    assert not missing, (f"{module_name}.__all__ names {missing}, which no page of docs/reference/ renders: add "
                         f"'::: {module_name}.<name>' to its page")


def test_readme_links_point_at_existing_files():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links no local file"
    assert [t for t in local if not (ROOT / t).exists()] == []
    guides = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "guides").glob("*.md")}
    assert guides - set(local) == set(), "the README's Documentation section must link every guide"


def test_the_site_navigation_lists_every_page():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$|^\s*-\s*([\w/.-]+\.md)\s*$",
                     (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[1], re.MULTILINE)
    listed = {a or b for a, b in nav}
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")
             if not any(part.startswith("_") for part in p.relative_to(ROOT / "docs").parts)}
    assert pages - listed == set(), "mkdocs.yml's nav must list every page of docs/ (guides and reference)"
    assert listed - pages == set(), "mkdocs.yml's nav lists pages that do not exist"
