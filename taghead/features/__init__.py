"""Feature caches: run a frozen backbone once, keep its feature maps, train heads on them in minutes.

- :func:`extract_features` (``taghead extract-features``): a backbone's maps of a dataset, stored in a
  cache folder of safetensors shards (resumable; sharded across torchrun processes; unreadable videos
  skipped; optionally several augmented views per clip).
- :class:`FeatureDataset`: one split of a cache as ``(feature map, label)`` items, read lazily; the
  :class:`~taghead.engine.Trainer` trains the head alone on it (``taghead train --features DIR``), and
  :meth:`FeatureDataset.build_model` gives the full model (the cache's backbone and weights + a new head).
- :mod:`~taghead.features.cache`: the folder layout, the backbone fingerprint and the guard rails.
"""

from .cache import FeatureCacheError, backbone_fingerprint
from .dataset import FeatureDataset
from .extract import extract_features

__all__ = ["extract_features", "FeatureDataset", "FeatureCacheError", "backbone_fingerprint"]
