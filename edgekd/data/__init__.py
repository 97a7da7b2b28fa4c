"""Data: load a source, validate it, split it, normalise it, augment batches.

``prepare_data(spec, ...)`` is the one call stages make; it returns a ``DataBundle``.
"""

from .augment import augment_batch
from .bundle import DataBundle, prepare_data
from .normalize import Normalization
from .raw import RawData, content_hash
from .sources import SOURCES, load_source
from .split import Split, stratified_split
from .validate import validate

__all__ = [
    "SOURCES",
    "DataBundle",
    "Normalization",
    "RawData",
    "Split",
    "augment_batch",
    "content_hash",
    "load_source",
    "prepare_data",
    "stratified_split",
    "validate",
]
