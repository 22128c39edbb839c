"""Models: the wrapped-model container, its spec and saved form, the model registry and the built-in models."""

from . import zoo  # noqa: F401  (registers the built-in models; timm's pattern)
