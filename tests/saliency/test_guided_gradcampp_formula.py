"""Guided Grad-CAM++'s two formulas against closed forms of its own parts.

``product`` (default): ``gbp * upsample(gradcampp)``; ``sat_code`` (public SAT code):
``((sign(gbp) + 1) * (minmax(upsample(gradcampp)) + 1) - 2) / 2``. The parts are the
registered ``gbp`` and ``gradcampp`` methods; the min-max and the upsampling of the
reference are written out here, not taken from the package.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import ConfigError, build_method
from pipeline.saliency import SALIENCY
from pipeline.saliency.gradcam_plus_plus import gradcampp_low_res


@pytest.fixture(scope="module")
def resnet(bn_resnet):
    return bn_resnet


@pytest.fixture
def batch(resnet):
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        t = resnet(x).argmax(1)  # predicted class: non-degenerate Grad-CAM++ maps
    return x, t


def _parts(model, x, t):
    gbp = SALIENCY.get("gbp")().attribute(model, x, t)
    with torch.enable_grad():
        low = gradcampp_low_res(model, x.clone(), t).detach()
    up = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return gbp, up.expand(-1, x.shape[1], -1, -1)


def test_default_is_product(resnet, batch):
    x, t = batch
    gbp, cam = _parts(resnet, x, t)
    method = SALIENCY.get("guided_gradcampp")()
    assert method.formula == "product"
    ours = method.attribute(resnet, x, t)
    assert torch.allclose(ours, gbp * cam, atol=1e-7, rtol=1e-5)
    assert torch.equal(ours, SALIENCY.get("guided_gradcampp")(formula="product")
                       .attribute(resnet, x, t))


def test_sat_code_closed_form(resnet, batch):
    x, t = batch
    gbp, cam = _parts(resnet, x, t)
    lo = cam.amin(dim=(1, 2, 3), keepdim=True)
    hi = cam.amax(dim=(1, 2, 3), keepdim=True)
    assert (hi > lo).all()  # non-constant maps: the min-max means something
    g = (cam - lo) / (hi - lo)
    expected = ((torch.sign(gbp) + 1) * (g + 1) - 2) / 2
    ours = SALIENCY.get("guided_gradcampp")(formula="sat_code").attribute(resnet, x, t)
    assert torch.allclose(ours, expected, atol=1e-5)
    # piecewise form: -1 where gbp < 0, (g - 1) / 2 where gbp = 0, g where gbp > 0
    piecewise = torch.where(gbp > 0, g, torch.where(gbp < 0, -torch.ones_like(g),
                                                    (g - 1) / 2))
    assert torch.allclose(ours, piecewise, atol=1e-5)
    assert ours.min() >= -1 and ours.max() <= 1 + 1e-6
    assert (ours == -1).any() and (ours > 0).any()  # both signs of gbp occur


def test_formulas_differ_and_bad_formula_is_refused(resnet, batch):
    x, t = batch
    a = SALIENCY.get("guided_gradcampp")().attribute(resnet, x, t)
    b = SALIENCY.get("guided_gradcampp")(formula="sat_code").attribute(resnet, x, t)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="formula"):
        SALIENCY.get("guided_gradcampp")(formula="selvaraju")
    with pytest.raises((ConfigError, ValueError), match="formula"):
        build_method(SALIENCY, "guided_gradcampp", {"formula": "sum"}, "saliency.x")
    assert build_method(SALIENCY, "guided_gradcampp", {"formula": "sat_code"},
                        "saliency.x").formula == "sat_code"
