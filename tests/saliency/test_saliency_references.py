"""Our batched methods against Captum, pytorch-grad-cam and closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.saliency import SALIENCY
from pipeline.saliency.cam import class_activation_map


@pytest.fixture(scope="module")
def resnet(bn_resnet):
    return bn_resnet


@pytest.fixture
def batch():
    return torch.rand(4, 3, 32, 32), torch.tensor([0, 4, 7, 9])


def test_grad_linear_is_weight_row(linear_model):
    x = torch.rand(5, 3, 4, 4)
    target = torch.tensor([0, 1, 2, 1, 0])
    attr = SALIENCY.get("grad")().attribute(linear_model, x, target)
    w = linear_model[1].weight
    assert torch.allclose(attr.flatten(1), w[target], atol=1e-6)


def test_ig_linear_closed_form(linear_model):
    """On a linear model IG is exactly (x - b) * w_t for any quadrature."""
    x = torch.rand(5, 3, 4, 4)
    target = torch.tensor([0, 1, 2, 1, 0])
    attr = SALIENCY.get("ig")(steps=3).attribute(linear_model, x, target)
    w = linear_model[1].weight[target].view_as(x)
    assert torch.allclose(attr, x * w, atol=1e-5)


def test_grad_equals_captum_saliency(resnet, batch):
    from captum.attr import Saliency

    x, t = batch
    ours = SALIENCY.get("grad")().attribute(resnet, x, t)
    theirs = Saliency(resnet).attribute(x.clone(), target=t, abs=False)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_gbp_equals_captum_and_differs_from_grad(resnet, batch):
    from captum.attr import GuidedBackprop

    x, t = batch
    ours = SALIENCY.get("gbp")().attribute(resnet, x, t)
    theirs = GuidedBackprop(resnet).attribute(x.clone(), target=t)
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=1e-4)
    grad = SALIENCY.get("grad")().attribute(resnet, x, t)
    # the SAT-code trap: unhooked ReLUs would make these equal
    assert (ours - grad).abs().max() > 0.1 * grad.abs().max()


def test_gbp_refuses_functional_relus(linear_model):
    with pytest.raises(ValueError, match="nn.ReLU"):
        SALIENCY.get("gbp")().attribute(linear_model, torch.rand(2, 3, 4, 4),
                                        torch.tensor([0, 1]))


@pytest.mark.parametrize("name", ["gradcam", "gradcampp"])
def test_gradcam_equals_pytorch_grad_cam(name, resnet, batch):
    """pytorch-grad-cam min-max normalises the low-res map, resizes it (cv2 bilinear)
    and min-max normalises again (its layer aggregation); we do the same to ours."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x, _ = batch
    with torch.no_grad():
        t = resnet(x).argmax(1)  # the predicted class: positive CAMs on a random net
    method = SALIENCY.get(name)()
    lib = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus}[name]
    with lib(model=resnet, target_layers=[resnet.cam_layer]) as cam:
        theirs = cam(input_tensor=x.clone(),
                     targets=[ClassifierOutputTarget(int(c)) for c in t])
    with torch.enable_grad():
        low = method.low_res(resnet, x.clone(), t).detach()
    flat = low.flatten(1)
    lo, hi = flat.amin(1)[:, None, None, None], flat.amax(1)[:, None, None, None]
    ours = F.interpolate((low - lo) / (hi - lo + 1e-7), size=(32, 32), mode="bilinear",
                         align_corners=False)[:, 0]
    flat = ours.flatten(1)
    lo, hi = flat.amin(1)[:, None, None], flat.amax(1)[:, None, None]
    ours = (ours - lo) / (hi - lo + 1e-7)
    assert (hi > 0).all()  # non-degenerate maps: the comparison means something
    assert torch.allclose(ours, torch.from_numpy(theirs), atol=1e-4)
    full = method.attribute(resnet, x, t)
    up = F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(full, up.expand(-1, 3, -1, -1), atol=1e-6)
    assert torch.equal(full[:, 0], full[:, 2])  # one channel broadcast


def test_guided_gradcampp_is_product(resnet, batch):
    x, t = batch
    gbp = SALIENCY.get("gbp")().attribute(resnet, x, t)
    cam = SALIENCY.get("gradcampp")().attribute(resnet, x, t)
    ours = SALIENCY.get("guided_gradcampp")().attribute(resnet, x, t)
    assert torch.allclose(ours, gbp * cam, atol=1e-7, rtol=1e-5)


def test_cam_closed_form(resnet, batch):
    """Spatial mean of the CAM plus the fc bias is the target logit (GAP model)."""
    x, t = batch
    with torch.no_grad():
        low = class_activation_map(resnet, x, t)
        logits = resnet(x).gather(1, t[:, None])[:, 0]
    assert torch.allclose(low.mean(dim=(1, 2, 3)) + resnet.fc.bias[t], logits, atol=1e-5)
    attr = SALIENCY.get("cam")().attribute(resnet, x, t)
    up = F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(attr, up.expand(-1, 3, -1, -1), atol=1e-6)


def test_ig_equals_captum(resnet, batch):
    from captum.attr import IntegratedGradients

    x, t = batch
    ours = SALIENCY.get("ig")(steps=16, internal_batch_size=24).attribute(resnet, x, t)
    theirs = IntegratedGradients(resnet).attribute(
        x.clone(), baselines=torch.zeros_like(x), target=t, n_steps=16,
        method="gausslegendre", internal_batch_size=24,
    )
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("baseline", ["black", "uniform"])
def test_ig_completeness(baseline, resnet, batch):
    x, t = batch
    method = SALIENCY.get("ig")(steps=128, baseline=baseline, internal_batch_size=512)
    attr = method.attribute(resnet, x, t)
    with torch.no_grad():
        b = method.baseline_for(x)
        gap = (resnet(x) - resnet(b)).gather(1, t[:, None])[:, 0]
    err = (attr.flatten(1).sum(1) - gap).abs()
    assert (err <= 0.02 * gap.abs() + 1e-4).all(), (err, gap)


def test_ig_chunking_invariant(resnet, batch):
    x, t = batch
    a = SALIENCY.get("ig")(steps=10, internal_batch_size=4).attribute(resnet, x, t)
    b = SALIENCY.get("ig")(steps=10, internal_batch_size=1000).attribute(resnet, x, t)
    assert torch.allclose(a, b, atol=1e-6)
