"""Bit packing of sign planes and masks, including sizes that are not multiples of 8."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.cache.bits import pack_bits, packed_width, unpack_bits


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (4, 7, 7), (3, 3, 5, 5), (2, 3, 16, 16),
                                   (6, 9), (1, 1, 1, 17)])
def test_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    planes = rng.random(shape) > 0.5
    packed = pack_bits(planes)
    assert packed.dtype == np.uint8
    assert packed.shape == (shape[0], packed_width(shape[1:]))
    assert packed.shape[1] == -(-int(np.prod(shape[1:])) // 8)
    np.testing.assert_array_equal(unpack_bits(packed, shape[1:]), planes)


def test_padding_bits_are_zero():
    planes = np.ones((2, 3, 3), bool)  # 9 bits -> 2 bytes, 7 padding bits
    packed = pack_bits(planes)
    assert packed[:, 1].tolist() == [0b10000000, 0b10000000]


def test_wrong_width_is_refused():
    with pytest.raises(ValueError, match="expected 2"):
        unpack_bits(np.zeros((1, 3), np.uint8), (3, 3))
