"""Training recipes: the defaults of ``taghead train`` chosen by the situation of the run.

- **from scratch** (the backbone starts from random weights): the demo's optimisation (AdamW, lr 1e-3,
  weight decay 0.05, one warm-up epoch) and a TAG-Head of one post-norm layer without dropout. With it
  the demo's tiny CNN trained end to end on the synthetic benchmark reaches 97.5 % validation Top-1 in
  10 epochs, where the reference's deeper head with dropout 0.5 reaches 87.5 % (training guide,
  ``docs/guides/training.md``, "Which TAG-Head settings learn from scratch"; ``benchmarks/RESULTS.md``).
- **fine-tuning** (a pretrained backbone: ``--pretrained-backbone``, or a saved model with ``--init``):
  the TAG-Head paper's recipe, Adam, lr 1e-5, no weight decay, no warm-up, and the head as built (the
  reference's two layers with dropout 0.5).

Both decay the learning rate with a per-step cosine to 0 over 60 epochs. Every option given on the
command line overrides its recipe value; :func:`resolve_recipe` says which were given.
"""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Recipe", "FROM_SCRATCH", "FINE_TUNING", "RECIPE_OPTIONS", "ResolvedRecipe", "choose_recipe",
           "resolve_recipe", "recipes_help"]

_OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW"}

RECIPE_OPTIONS = ("epochs", "optimizer", "lr", "weight_decay", "warmup_epochs")
"""The ``taghead train`` options whose defaults depend on the recipe (argparse destinations)."""


@dataclass(frozen=True)
class Recipe:
    """Default optimisation (and TAG-Head settings) of one training situation.

    Attributes:
        name: ``"from scratch"`` or ``"fine-tuning"``.
        when: the situation, in words.
        epochs: training epochs.
        optimizer: ``"adam"`` or ``"adamw"``.
        lr: peak learning rate (after the warm-up, before the cosine decay).
        weight_decay: decoupled weight decay (AdamW) or L2 penalty (Adam).
        warmup_epochs: epochs of linear warm-up; ``0`` for none.
        tag_head_kwargs: TAG-Head options for a head built with ``--backbone``/``--head tag`` (each only
            where ``--head-kwargs`` does not give it).
        basis: where the numbers come from.
    """

    name: str
    when: str
    epochs: int
    optimizer: str
    lr: float
    weight_decay: float
    warmup_epochs: float
    tag_head_kwargs: dict[str, Any] = field(default_factory=dict)
    basis: str = ""


FROM_SCRATCH = Recipe(
    name="from scratch", when="the backbone starts from random weights", epochs=60, optimizer="adamw", lr=1e-3,
    weight_decay=0.05, warmup_epochs=1.0, tag_head_kwargs={"depth": 1, "dropout": 0.0},
    basis="the study 'Which TAG-Head settings learn from scratch' (docs/guides/training.md, "
    "benchmarks/RESULTS.md)",
)
"""Random weights: AdamW with weight decay and a warm-up, and a one-layer TAG-Head without dropout."""
FINE_TUNING = Recipe(
    name="fine-tuning", when="a pretrained backbone (--pretrained-backbone) or a saved model (--init)", epochs=60,
    optimizer="adam", lr=1e-5, weight_decay=0.0, warmup_epochs=0.0,
    basis="the TAG-Head paper's recipe (2 Transformer layers, dropout 0.5: the head's defaults)",
)
"""A pretrained backbone or a saved model: the TAG-Head paper's fine-tuning (Adam, lr 1e-5, no warm-up)."""


def choose_recipe(args: argparse.Namespace) -> Recipe:
    """:data:`FINE_TUNING` when the run starts from trained weights (``--pretrained-backbone``, ``--init``),
    :data:`FROM_SCRATCH` otherwise.

    Args:
        args: ``taghead train``'s parsed options.
    """
    pretrained = getattr(args, "pretrained_backbone", None) is not None or getattr(args, "init", None) is not None
    return FINE_TUNING if pretrained else FROM_SCRATCH


@dataclass
class ResolvedRecipe:
    """The options a run uses: the recipe's, with what the command line gave on top.

    Attributes:
        recipe: the recipe chosen.
        options: ``{option: value}`` for :data:`RECIPE_OPTIONS`.
        head_kwargs: the head options to build with (``--head-kwargs`` plus the recipe's TAG-Head settings).
        given: the options (``--lr``, ``--head-kwargs dropout``, ...) the command line set.
        recipe_head_kwargs: the TAG-Head settings taken from the recipe.
        situation: why this recipe, for this run (``--init runs/a/best: a saved model``).
    """

    recipe: Recipe
    options: dict[str, Any]
    head_kwargs: dict[str, Any]
    given: list[str]
    recipe_head_kwargs: dict[str, Any]
    situation: str = ""

    def describe(self) -> str:
        """One line for the start of a run: the recipe, its values, and which came from the command line."""
        o = self.options
        warmup = o["warmup_epochs"]
        parts = [_OPTIMIZER_NAMES.get(o["optimizer"], o["optimizer"]), f"lr {o['lr']:g}",
                 f"weight decay {o['weight_decay']:g}",
                 (f"{warmup:g} warm-up epoch(s) then " if warmup else "") + "cosine decay",
                 f"{o['epochs']} epochs"]
        parts += [f"head {k}={v}" for k, v in self.recipe_head_kwargs.items()]
        line = f"recipe: {self.recipe.name} ({self.situation or self.recipe.when}): {', '.join(parts)}"
        if self.given:
            line += f"; from the command line: {', '.join(self.given)}"
        return line


def resolve_recipe(args: argparse.Namespace, head_kwargs: dict[str, Any]) -> ResolvedRecipe:
    """The recipe for ``args`` (``taghead train``'s namespace; recipe options left at ``None`` take the
    recipe's value) and the head options: the recipe's TAG-Head settings apply to a TAG-Head built with
    ``--backbone``/``--head`` (not to a registered ``--model`` or an ``--init`` model, whose head is fixed).

    Args:
        args: ``taghead train``'s parsed options.
        head_kwargs: the head options of ``--head-kwargs``; the recipe's TAG-Head settings fill what they lack.
    """
    recipe = choose_recipe(args)
    options, given = {}, []
    for name in RECIPE_OPTIONS:
        value = getattr(args, name, None)
        if value is None:
            value = getattr(recipe, name)
        else:
            given.append(f"--{name.replace('_', '-')} {value:g}" if isinstance(value, float) else
                         f"--{name.replace('_', '-')} {value}")
        options[name] = value
    head_kwargs = dict(head_kwargs)
    from_recipe: dict[str, Any] = {}
    builds_head = getattr(args, "model", None) is None and getattr(args, "init", None) is None
    if builds_head and getattr(args, "head", "tag") == "tag":
        for key, value in recipe.tag_head_kwargs.items():
            if key in head_kwargs:
                given.append(f"--head-kwargs {key}={head_kwargs[key]}")
            else:
                head_kwargs[key] = from_recipe[key] = value
    if getattr(args, "init", None) is not None:
        situation = f"--init {args.init}: a saved model"
    elif getattr(args, "pretrained_backbone", None) is not None:
        situation = f"--pretrained-backbone {args.pretrained_backbone}"
    elif getattr(args, "features", None) is not None:
        situation = f"--features {args.features}: a new head on the cache's frozen backbone"
    else:
        situation = recipe.when
    return ResolvedRecipe(recipe, options, head_kwargs, given, from_recipe, situation)


def recipes_help() -> str:
    """The recipes, as ``taghead train --help`` lists them."""
    lines = ["recipes (the defaults of --epochs, --optimizer, --lr, --weight-decay, --warmup-epochs and, for",
             "--backbone ... --head tag, the TAG-Head's depth and dropout; any option given overrides its value):"]
    for r in (FROM_SCRATCH, FINE_TUNING):
        head = ", ".join(f"{k}={v}" for k, v in r.tag_head_kwargs.items()) or "the head's defaults"
        lines += [f"  {r.name}: {r.when}",
                  f"      {_OPTIMIZER_NAMES[r.optimizer]}, lr {r.lr:g}, weight decay {r.weight_decay:g}, warm-up "
                  f"{r.warmup_epochs:g} epoch(s), cosine to 0, {r.epochs} epochs",
                  f"      TAG-Head: {head}",
                  *textwrap.wrap(f"basis: {r.basis}", 84, initial_indent="      ", subsequent_indent="        ")]
    return "\n".join(lines)
