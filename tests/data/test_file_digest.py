"""sha256_file (hashlib.file_digest) gives the digest a hand-written chunked loop gives."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.core.io import sha256_file


def chunked_sha256(path, chunk: int = 1 << 20) -> str:
    """The reference: the read loop sha256_file replaced."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 3 * (1 << 20) + 12345])
def test_file_digest_equals_chunked_loop(tmp_path, size):
    path = tmp_path / "blob.bin"
    path.write_bytes(np.random.default_rng(size).bytes(size))
    assert sha256_file(path) == chunked_sha256(path) == chunked_sha256(path, 4096)
    assert sha256_file(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()
