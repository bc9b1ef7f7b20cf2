"""Every registered saliency method honours the contract (STYLE.md section 5)."""

from __future__ import annotations

import pickle

import pytest
import torch

from pipeline.config import build_method
from pipeline.models import build_model
from pipeline.saliency import SALIENCY


def _no_hooks(model: torch.nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
        and not m._backward_pre_hooks
        for m in model.modules()
    )


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build_model("resnet10", 10, width=8)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", SALIENCY.names())
def test_contract(name, training, resnet):
    method = build_method(SALIENCY, name, {}, f"saliency.{name}")
    model = resnet.train(training)
    x = torch.rand(3, 3, 16, 16).requires_grad_(True)
    x.grad = torch.full_like(x, 7.0)
    target = torch.tensor([0, 3, 9])
    buffers = {k: v.clone() for k, v in model.state_dict().items()}

    attr = method.attribute(model, x, target)
    again = method.attribute(model, x, target)

    assert attr.shape == x.shape and attr.dtype == torch.float32
    assert torch.isfinite(attr).all()
    assert torch.equal(attr, again), "same input and seed must give the same map"
    assert model.training is training
    assert x.requires_grad and torch.equal(x.grad, torch.full_like(x, 7.0))
    assert _no_hooks(model)
    assert all(p.grad is None for p in model.parameters())
    # eval mode inside: BN running statistics untouched even for a training-mode model
    for k, v in model.state_dict().items():
        assert torch.equal(v, buffers[k]), k
    mask = method.salience_mask(attr)
    assert mask.shape == (3, 16, 16) and mask.dtype == torch.bool


@pytest.mark.parametrize("name", SALIENCY.names())
def test_small_cnn_and_device(name, small_model, images):
    """Runs on the other architecture; output lives on x's device."""
    attr = SALIENCY.get(name)().attribute(small_model, images, torch.tensor([1, 2, 3, 4]))
    assert attr.shape == images.shape and attr.device == images.device
    assert torch.isfinite(attr).all()


@pytest.mark.parametrize("name", SALIENCY.names())
def test_picklable_and_hashable(name, small_model, images):
    """Dask ships methods to workers: a pickled copy is equal and gives the same map."""
    method = SALIENCY.get(name)()
    copy = pickle.loads(pickle.dumps(method))
    assert copy == method and hash(copy) == hash(method)
    t = torch.tensor([0, 1, 2, 3])
    assert torch.equal(copy.attribute(small_model, images, t),
                       method.attribute(small_model, images, t))


@pytest.mark.parametrize("name", ["grad", "gradcampp_box", "ig", "smoothgrad"])
def test_large_batch_split_is_transparent(name, small_model):
    """A batch larger than the CPU piece size gives each image the map it gets alone
    (ig/smoothgrad: the same as their own chunking of the whole batch)."""
    x = torch.rand(70, 3, 8, 8)
    t = torch.arange(70) % 10
    params = {"ig": {"steps": 4}, "smoothgrad": {"samples": 2}}.get(name, {})
    whole = SALIENCY.get(name)(**params).attribute(small_model, x, t)
    if name in ("ig", "smoothgrad"):
        key = "internal_batch_size" if name == "ig" else "batch_size"
        ref = SALIENCY.get(name)(**params, **{key: 1000}).attribute(small_model, x, t)
    else:
        ref = torch.cat([SALIENCY.get(name)().attribute(small_model, x[i:i + 1], t[i:i + 1])
                         for i in range(70)])
    assert torch.allclose(whole, ref, atol=1e-6, rtol=1e-4)


def test_hooks_removed_on_error(resnet):
    """A failing call (bad target index) leaves no hook behind."""
    x = torch.rand(2, 3, 16, 16)
    for name in ("gbp", "gradcampp", "guided_gradcampp", "enhanced_gbp"):
        with pytest.raises((IndexError, RuntimeError)):
            SALIENCY.get(name)().attribute(resnet.eval(), x, torch.tensor([0, 99]))
        assert _no_hooks(resnet), name


def test_bad_target_shape(resnet):
    with pytest.raises(ValueError, match="target must have shape"):
        SALIENCY.get("grad")().attribute(resnet, torch.rand(2, 3, 16, 16), torch.tensor([1]))


def test_frozen_model(resnet):
    """A teacher with requires_grad=False parameters still gets CAM-layer gradients."""
    for p in resnet.parameters():
        p.requires_grad_(False)
    try:
        attr = SALIENCY.get("gradcampp")().attribute(resnet, torch.rand(2, 3, 16, 16),
                                                     torch.tensor([1, 2]))
        assert attr.abs().sum() > 0
    finally:
        for p in resnet.parameters():
            p.requires_grad_(True)


def test_config_errors():
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="steps"):
        build_method(SALIENCY, "ig", {"stepz": 3}, "saliency.ig")
    with pytest.raises(ConfigError, match="baseline"):
        build_method(SALIENCY, "ig", {"baseline": "gray"}, "saliency.ig")
    with pytest.raises(ConfigError, match="unknown"):
        build_method(SALIENCY, "smoothgrad", {"base": "nope"}, "saliency.smoothgrad")
