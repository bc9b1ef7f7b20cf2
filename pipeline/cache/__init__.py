"""The Zarr cache (DESIGN.md section 3): schema, bit packing, stores, saliency sources, the
batch type and the training streams.

Importing the package registers every stream mode in :data:`STREAMS`.
"""

from pipeline.cache.batch import Batch
from pipeline.cache.streams import STREAMS

__all__ = ["STREAMS", "Batch"]
