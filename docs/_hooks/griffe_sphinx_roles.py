"""Griffe extension: render the package's reStructuredText inline markup in Markdown (mkdocstrings).

taghead's docstrings use Google sections (``Args:``, ``Returns:``, ``Raises:``) with Sphinx inline
markup inside: ``:class:`X```, ``:func:`~pkg.f```, ``:meth:``, ``:attr:``, ``:data:``, ``:mod:``,
``:exc:``, ``:math:`...``` and ``.. math::`` blocks. mkdocstrings renders Markdown, where those roles
would show up verbatim. Before the docstrings are parsed, this extension rewrites

- a cross-reference role into a link to the object's entry in the API reference when the name resolves
  (relative names are resolved in the docstring's own scope, as Sphinx does) and that object is
  documented on the site; otherwise into inline code (an *optional* autoref: never a broken link);
- ``:math:`x``` into ``$x$`` and a ``.. math::`` block into a ``$$ ... $$`` block (pymdownx.arithmatex).

Docstrings in the source are left as they are. Loaded by ``mkdocs.yml`` (``extensions:`` of the Python
handler); the file lives in ``docs/_hooks/``, which the site excludes.
"""

from __future__ import annotations

import html
import re
import textwrap

import griffe

ROLE = re.compile(r":(?P<role>class|func|meth|attr|data|mod|exc|obj|const):`(?P<target>[^`]+)`")
MATH_ROLE = re.compile(r":math:`(?P<tex>[^`]+)`")
MATH_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*\n(?P<body>(?:(?P=indent)[ \t]+\S.*\n|[ \t]*\n)+)",
                        re.MULTILINE)


def _math_block(match: re.Match) -> str:
    indent = match["indent"]
    body = textwrap.dedent(match["body"]).strip("\n")
    lines = [f"{indent}$$", *(f"{indent}{line}" for line in body.splitlines()), f"{indent}$$", ""]
    return "\n".join(lines) + "\n"


class SphinxRolesToMarkdown(griffe.Extension):
    """Rewrite reST roles and math of every docstring of the loaded packages into Markdown."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        self._collection = loader.modules_collection
        self._walk(pkg, seen=set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj.docstring.value, obj)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)

    def _rewrite(self, text: str, scope: griffe.Object) -> str:
        text = MATH_BLOCK.sub(_math_block, text)
        text = MATH_ROLE.sub(lambda m: f"${m['tex'].strip()}$", text)
        return ROLE.sub(lambda m: self._reference(m["target"], scope), text)

    def _reference(self, target: str, scope: griffe.Object) -> str:
        short = target.startswith("~")
        target = target.lstrip("~").strip()
        title = target.rsplit(".", 1)[-1] if short else target
        title = title.removesuffix("()")
        identifier = self._resolve(target.removesuffix("()"), scope)
        code = f"<code>{html.escape(title)}</code>"
        if identifier is None:
            return code
        return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'

    def _resolve(self, target: str, scope: griffe.Object) -> str | None:
        """The canonical path of ``target`` seen from ``scope``, or None when it names nothing known."""
        for candidate in self._candidates(target, scope):
            try:
                obj = self._collection[candidate]
            except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            try:
                return obj.final_target.path if obj.is_alias else obj.path
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return None
        return None

    @staticmethod
    def _candidates(target: str, scope: griffe.Object) -> list[str]:
        first, _, rest = target.partition(".")
        candidates = [target]
        node: griffe.Object | None = scope
        while node is not None:  # the scope and its parents, innermost first (class, module, package)
            try:
                resolved = node.resolve(first)
            except (griffe.NameResolutionError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                resolved = None
            if resolved:
                candidates.append(f"{resolved}.{rest}" if rest else resolved)
                break
            node = node.parent
        return candidates
