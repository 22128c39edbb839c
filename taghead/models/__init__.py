"""Model registry, the wrapped-model container and Hub I/O."""
