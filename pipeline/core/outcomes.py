"""Per-example outcomes of an evaluation row, kept in the results table as text.

An accuracy row of the results table carries ``outcome``: which of its ``n`` examples
(in the order of the evaluated split) were classified correctly, clean or under the
row's attack, as the hex digits of the bits packed little-endian (bit ``i`` of byte
``i // 8`` is example ``i``). 1,000 examples take 250 characters. Paired tests over
images (McNemar) read them back; rows without per-example outcomes hold "".
"""

from __future__ import annotations

import numpy as np


def encode_outcome(correct) -> str:
    """Hex text of a boolean vector (a tensor or an array of ``n`` values)."""
    bits = np.asarray(correct.cpu() if hasattr(correct, "cpu") else correct, dtype=bool)
    if bits.ndim != 1:
        raise ValueError(f"an outcome is one value per example, got shape {bits.shape}")
    return np.packbits(bits, bitorder="little").tobytes().hex()


def decode_outcome(text: str, n: int) -> np.ndarray:
    """The boolean vector of ``n`` examples that :func:`encode_outcome` wrote.

    Raises:
        ValueError: ``text`` is empty, not hex, or does not hold exactly ``n`` examples.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("this row has no per-example outcome (a table written before "
                         "outcomes were recorded, or a metric row): re-run its evaluation")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"outcome {text[:16]!r}... is not hex text") from None
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"outcome holds {len(raw) * 8} bits, not the {n} examples of its "
                         "row (n): the table is inconsistent")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n,
                         bitorder="little").astype(bool)
