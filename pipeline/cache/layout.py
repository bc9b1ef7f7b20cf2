"""Names and paths of the cache schema (DESIGN.md section 3), in one place.

```
<dataset>.zarr/                   attrs: schema_version, dataset, classes, fingerprint, ...
  <split>/images                  uint8  [N,C,H,W], chunks [B,C,H,W], Blosc zstd
  <split>/labels                  int16  [N]
  <split>/annotations/mask        uint8 bit-packed [N, ceil(H*W/8)] (+ has_mask bool [N])
  <split>/annotations/bbox        int16  [N,4]  (x0, y0, x1, y1), inclusive pixel corners
  <split>/saliency/<source>/map   float16 [N,C,H,W]
  <split>/saliency/<source>/sign  uint8 bit-packed [N, ceil(C*H*W/8)] (bit set = positive)
  <split>/saliency/<source>/mask  uint8 bit-packed [N, ceil(H*W/8)]
  <split>/saliency/<source>/bbox  int16 [N,4]
```
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 1
DEFAULT_CHUNK = 512  # images per chunk along N (about 1.5 MB of 32x32 RGB uint8)

_SOURCE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")


def split_path(split: str) -> str:
    return split


def images_path(split: str) -> str:
    return f"{split}/images"


def labels_path(split: str) -> str:
    return f"{split}/labels"


def annotation_path(split: str, kind: str) -> str:
    """``kind`` is ``mask``, ``has_mask`` or ``bbox``."""
    return f"{split}/annotations/{kind}"


def saliency_group(split: str, source: str) -> str:
    """Group of one saliency source, e.g. ``train/saliency/resnet10_adv.gbp``."""
    check_source(source)
    return f"{split}/saliency/{source}"


def check_source(source: str) -> str:
    """Source names are ``<origin>.<method>``: ``resnet10_adv.gbp``, ``annotation.mask``."""
    if not _SOURCE.match(source):
        raise ValueError(
            f"saliency source {source!r} must look like '<teacher>.<method>' or "
            "'annotation.<mask|bbox>' (lowercase letters, digits, underscores)"
        )
    return source
