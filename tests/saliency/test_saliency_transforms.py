"""Transforms, annotations as weak saliency, and the energy-in-mask metric."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.saliency.annotations import (
    box_masks,
    weak_saliency_from_boxes,
    weak_saliency_from_masks,
)
from pipeline.saliency.metrics import energy_in_mask
from pipeline.saliency.transforms import normalise, salience_mask, topk_mass_mask


def test_normalise():
    a = torch.tensor([[[[-2.0, 1.0], [0.0, 4.0]]], [[[3.0, 3.0], [3.0, 3.0]]]])
    assert torch.allclose(normalise(a, "maxabs")[0], torch.tensor([[[-0.5, 0.25], [0, 1]]]))
    assert torch.allclose(normalise(a, "minmax")[0], torch.tensor([[[0, 0.5], [1 / 3, 1]]]))
    assert torch.equal(normalise(a, "minmax")[1], torch.zeros(1, 2, 2))  # constant: 0
    assert torch.equal(normalise(a, "sign")[0], a[0].sign())
    assert torch.equal(normalise(a, "raw"), a)
    with pytest.raises(ValueError, match="maxabs"):
        normalise(a, "l2")


def test_topk_mass_mask_hand():
    e = torch.tensor([[4.0, 1.0, 3.0, 2.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    m = topk_mass_mask(e, 0.5)
    # total 10: {4} = 4 < 5, {4, 3} = 7 >= 5; ties by position; all-zero -> empty
    assert m.tolist() == [[True, False, True, False], [True, True, False, False],
                          [False] * 4]
    assert topk_mass_mask(e, 1.0)[0].all()
    with pytest.raises(ValueError, match="non-negative"):
        topk_mass_mask(-e, 0.5)
    attr = torch.zeros(1, 3, 2, 2)
    attr[0, :, 0, 0] = torch.tensor([1.0, -1.0, 1.0])  # energy 3 in one pixel
    attr[0, 0, 1, 1] = -2.0
    assert salience_mask(attr).tolist() == [[[True, False], [False, False]]]


def test_weak_saliency_from_boxes_and_masks():
    boxes = torch.tensor([[1, 0, 2, 1], [0, 0, 3, 2]])
    m = box_masks(boxes, 3, 4)
    assert m[0].tolist() == [[False, True, True, False], [False, True, True, False],
                             [False] * 4]
    assert m[1].all()
    s = weak_saliency_from_boxes(boxes, (3, 3, 4))
    assert s.shape == (2, 3, 3, 4) and s.dtype == torch.float32
    assert torch.equal(s[0, 1], torch.where(m[0], 1.0, -1.0))
    masks = torch.zeros(2, 3, 4, dtype=torch.bool)
    masks[0, 1, 1] = True
    w = weak_saliency_from_masks(masks, 2, has_mask=torch.tensor([True, False]))
    assert w[0, 0, 1, 1] == 1 and w[0, 1, 0, 0] == -1 and (w[1] == 0).all()
    with pytest.raises(ValueError, match="flowers17.*no masks"):
        weak_saliency_from_masks(None, 3, dataset="flowers17")
    with pytest.raises(ValueError, match="cifar10.*no boxes.*annotation.bbox"):
        weak_saliency_from_boxes(None, (3, 32, 32), dataset="cifar10")
    with pytest.raises(ValueError, match="x1 < x0"):
        box_masks(torch.tensor([[3, 0, 1, 1]]), 4, 4)


def test_energy_in_mask():
    sal = torch.zeros(4, 2, 2, 2)
    sal[0, 0, 0, 0], sal[0, 1, 1, 1] = 3.0, -1.0  # 3 of 4 inside
    sal[1] = 1.0                                    # uniform: area share 1/4
    sal[3, 0, 0, 0] = 1.0                           # no mask for this one
    mask = torch.zeros(4, 2, 2, dtype=torch.bool)
    mask[:, 0, 0] = True
    score = energy_in_mask(sal, mask, has_mask=torch.tensor([True, True, True, False]))
    assert score[:3].tolist() == [0.75, 0.25, 0.0]  # image 2: zero energy scores 0
    assert math.isnan(score[3])
    empty = energy_in_mask(sal, torch.zeros(4, 1, 2, 2, dtype=torch.bool))
    assert torch.isnan(empty).all()
    with pytest.raises(ValueError, match="does not match"):
        energy_in_mask(sal, mask[:, :1])
