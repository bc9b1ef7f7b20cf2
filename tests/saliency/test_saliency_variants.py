"""SmoothGrad, enhanced GBP, SIP top-k and the Grad-CAM++ box."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.config import build_method
from pipeline.models import build_model
from pipeline.saliency import SALIENCY
from pipeline.saliency.transforms import box_from_map


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build_model("resnet10", 10, width=8).eval()


@pytest.fixture
def batch():
    return torch.rand(3, 3, 16, 16), torch.tensor([1, 5, 8])


@pytest.mark.parametrize("base", ["grad", "gbp", "gradcampp"])
def test_smoothgrad_sigma_zero_is_base(base, resnet, batch):
    x, t = batch
    plain = SALIENCY.get(base)().attribute(resnet, x, t)
    sg = build_method(SALIENCY, "smoothgrad", {"base": base, "sigma": 0.0}, "sg")
    assert torch.equal(sg.attribute(resnet, x, t), plain)
    # the averaging path itself (tiny noise) also reproduces the base map
    tiny = SALIENCY.get("smoothgrad")(base=base, sigma=1e-9, samples=3, batch_size=4)
    assert torch.allclose(tiny.attribute(resnet, x, t), plain, atol=1e-6, rtol=1e-4)


def test_smoothgrad_seed_and_chunking(resnet, batch):
    x, t = batch
    sg = SALIENCY.get("smoothgrad")
    a = sg(samples=5, seed=1, batch_size=3).attribute(resnet, x, t)
    b = sg(samples=5, seed=1, batch_size=1000).attribute(resnet, x, t)
    c = sg(samples=5, seed=2).attribute(resnet, x, t)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(sg(samples=5, seed=1, batch_size=3).attribute(resnet, x, t), a)


def test_smoothgrad_is_mean_over_noisy_copies(resnet, batch):
    """Reference: average of the base method on the same noise, one copy at a time."""
    x, t = batch
    sigma, n = 0.2, 4
    gen = torch.Generator().manual_seed(0)
    scale = sigma * (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, 1, 1, 1)
    ref = torch.zeros_like(x)
    for _ in range(n):
        noise = torch.randn((1, *x.shape), generator=gen)[0]
        ref += SALIENCY.get("grad")().attribute(resnet, x + noise * scale, t)
    ours = SALIENCY.get("smoothgrad")(sigma=sigma, samples=n).attribute(resnet, x, t)
    assert torch.allclose(ours, ref / n, atol=1e-6)


def _hand_model() -> nn.Module:
    """logits = W relu(x.flatten()) + b on 2x1x2 inputs, three classes.

    For x > 0 guided backprop of class k is relu(W_k) (reshaped), so enhanced GBP
    can be written down by hand.
    """
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([
            [1.0, 3.0, 2.0, 2.0],    # class 0: ch0 (1, 3), ch1 (2, 2)
            [2.0, 2.0, -1.0, 4.0],   # class 1: ch0 (2, 2), ch1 (-1, 4)
            [0.0, 1.0, 5.0, 0.0],    # class 2: a different map, lower logit
        ]))
        lin.bias.copy_(torch.tensor([0.0, 0.0, -100.0]))
    return nn.Sequential(nn.Flatten(), nn.ReLU(), lin)


def test_enhanced_gbp_hand_example():
    model = _hand_model().eval()
    x = torch.full((1, 2, 1, 2), 0.5)
    # logits: class 0 = 4, class 1 = 3.5, class 2 = 3 - 100: m = 1 for k = 0
    attr = SALIENCY.get("enhanced_gbp")().attribute(model, x, torch.tensor([0]))
    # s0 = ch0 (1,3)/4, ch1 (2,2)/4; s1 = ch0 (2,2)/4, ch1 (0,4)/4 (relu'd by GBP)
    expected = torch.tensor([[[[0.0, 0.25]], [[0.5, 0.0]]]])
    assert torch.allclose(attr, expected, atol=1e-6)
    # k = 1 (not the prediction): contrast is the prediction, class 0
    attr1 = SALIENCY.get("enhanced_gbp")().attribute(model, x, torch.tensor([1]))
    expected1 = torch.tensor([[[[0.25, 0.0]], [[0.0, 0.5]]]])
    assert torch.allclose(attr1, expected1, atol=1e-6)


def test_sip_topk_mass_property(resnet):
    x = torch.rand(4, 3, 16, 16)
    t = torch.tensor([0, 1, 2, 3])
    mask = SALIENCY.get("sip_topk")().attribute(resnet, x, t)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mask[:, 0], mask[:, 2])
    energy = SALIENCY.get("grad")().attribute(resnet, x, t).abs().sum(1)
    for e, m in zip(energy, mask[:, 0].bool()):
        total = e.sum()
        inside = e[m].sum()
        assert inside >= 0.5 * total
        assert inside - e[m].min() < 0.5 * total  # minimal: dropping any member fails
        assert e[m].min() >= e[~m].max()  # a top-k set
    assert torch.equal(SALIENCY.get("sip_topk")().salience_mask(mask), mask[:, 0].bool())


def test_box_from_map_largest_component():
    m = torch.zeros(2, 8, 10)
    m[0, 1:3, 1:4] = 1.0   # 6 pixels
    m[0, 5:8, 6:9] = 0.9   # 9 pixels: the largest
    m[0, 4, 5] = 0.8       # diagonal neighbour of the big blob (8-connected)
    # image 1: constant map -> whole image
    boxes = box_from_map(m, 0.5)
    assert boxes.tolist() == [[5, 4, 8, 7], [0, 0, 9, 7]]
    assert box_from_map(m[:, None].expand(-1, 3, -1, -1), 0.95).tolist()[0] == [1, 1, 3, 2]


def test_gradcampp_box_consistent(resnet, batch):
    x, t = batch
    method = SALIENCY.get("gradcampp_box")(threshold=0.5)
    boxes = method.boxes(resnet, x, t)
    attr = method.attribute(resnet, x, t)
    cam = SALIENCY.get("gradcampp")().attribute(resnet, x, t)
    assert torch.equal(boxes, box_from_map(cam, 0.5))
    for (x0, y0, x1, y1), a in zip(boxes.tolist(), attr):
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[y0:y1 + 1, x0:x1 + 1] = True
        assert torch.equal(a, torch.where(inside, 1.0, -1.0).expand(3, -1, -1))
    assert torch.equal(method.salience_mask(attr), attr[:, 0] > 0)
    with pytest.raises(ValueError, match="threshold"):
        SALIENCY.get("gradcampp_box")(threshold=1.5)


def test_gradcampp_box_one_pass_gives_map_and_boxes(resnet, batch, monkeypatch):
    """``attribute_and_boxes``: the same map and boxes as the two calls, one CAM pass."""
    import pipeline.saliency.gradcampp_box as box_mod

    x, t = batch
    method = SALIENCY.get("gradcampp_box")(threshold=0.5)
    attr, boxes = method.attribute(resnet, x, t), method.boxes(resnet, x, t)
    passes = []
    real = box_mod.gradcampp_low_res
    monkeypatch.setattr(box_mod, "gradcampp_low_res",
                        lambda *a, **k: passes.append(1) or real(*a, **k))
    attr1, boxes1 = method.attribute_and_boxes(resnet.train(), x, t)
    assert resnet.training
    resnet.eval()
    assert len(passes) == 1
    assert torch.equal(attr1, attr) and attr1.dtype == attr.dtype
    assert torch.equal(boxes1, boxes)
    with pytest.raises(ValueError, match="target must have shape"):
        method.attribute_and_boxes(resnet, x, t[:2])
