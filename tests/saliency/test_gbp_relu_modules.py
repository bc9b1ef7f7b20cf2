"""Guided backprop sees every ReLU of every registered model.

``gbp`` guides ReLUs through forward hooks on ``nn.ReLU`` modules
(:func:`pipeline.saliency.base.guided_relu`). A ReLU written as ``F.relu``,
``torch.relu``, ``x.relu()`` or ``x.clamp(min=0)`` inside a ``forward`` escapes those
hooks, and the map silently becomes the plain gradient there: the public SAT code's
trap (notes/peers.md section 0.1). Captum hooks modules too, so agreeing with Captum
proves nothing about this; the checks below watch the forward pass itself with a
``TorchFunctionMode``:

1. every ReLU-like call of a forward pass must produce a tensor that a GBP hook then
   guided (same object), and vice versa;
2. an independent guided backprop, which replaces every ReLU-like *call* (module or
   functional) by a guided-ReLU autograd function, equals ``gbp`` on every model.

Negative controls show that both checks catch a functional ReLU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

import pipeline.saliency.base as saliency_base
from pipeline.models import MODELS, build_model
from pipeline.saliency import SALIENCY
from pipeline.saliency.base import guided_relu

# narrow versions keep the forward cheap on CPU; unknown (new) models get width 4
SMALL_WIDTH = {"wrn34_10": 1}

_RELUS = {torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_CLAMPS = {torch.clamp, torch.clamp_, torch.clip, torch.clip_, torch.Tensor.clamp,
           torch.Tensor.clamp_, torch.Tensor.clip, torch.Tensor.clip_, torch.clamp_min,
           torch.clamp_min_, torch.Tensor.clamp_min, torch.Tensor.clamp_min_}
_ALWAYS_RECTIFY = {F.relu6, F.hardtanh, F.hardtanh_, F.threshold, F.threshold_,
                   torch.threshold, torch.threshold_}


def is_relu_call(func, args, kwargs) -> bool:
    """A call that rectifies at 0 (ReLU, relu6/hardtanh/threshold, ``clamp(min=0)``)."""
    if func in _RELUS or func in _ALWAYS_RECTIFY:
        return True
    if func in _CLAMPS:
        lo = kwargs.get("min", args[1] if len(args) > 1 else None)
        hi = kwargs.get("max", args[2] if len(args) > 2 else None)
        return hi is None and lo is not None and float(lo) == 0.0
    return False


class ReluCalls(TorchFunctionMode):
    """Records the output of every ReLU-like torch call while active (nested calls made
    inside an intercepted one, such as ``F.relu`` -> ``torch.relu``, are not seen)."""

    def __init__(self):
        super().__init__()
        self.outputs: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if is_relu_call(func, args, kwargs):
            self.outputs.append(out)
        return out


class _ReferenceGuidedReLU(torch.autograd.Function):
    """relu forward; backward ``g * 1[g > 0] * 1[x > 0]`` (Springenberg et al. 2015)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype)


class GuideEveryReluCall(TorchFunctionMode):
    """Replaces every ReLU-like call (module or functional) by the reference guided
    ReLU, so the gradient is guided backprop whatever the model's code looks like."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS or (func in _CLAMPS and is_relu_call(func, args, kwargs)):
            return _ReferenceGuidedReLU.apply(args[0])
        if func in _ALWAYS_RECTIFY:
            raise NotImplementedError(f"no reference guide for {func}")
        return func(*args, **kwargs)


def unguided_relu_calls(model: nn.Module, x: torch.Tensor, monkeypatch) -> tuple[int, int]:
    """``(ReLU-like calls whose output no GBP hook guided, GBP hook calls)`` in one
    forward of ``model`` under :func:`guided_relu`."""
    guided: list[torch.Tensor] = []
    original = saliency_base._guide

    def recording_guide(module, inputs, output):
        guided.append(output)
        return original(module, inputs, output)

    monkeypatch.setattr(saliency_base, "_guide", recording_guide)
    calls = ReluCalls()
    with torch.no_grad(), guided_relu(model), calls:
        model(x)
    assert all(any(g is out for out in calls.outputs) for g in guided), \
        "a GBP hook guided a tensor that no ReLU-like call produced"
    missed = sum(not any(out is g for g in guided) for out in calls.outputs)
    return missed, len(guided)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, 10, width=SMALL_WIDTH.get(name, 4)).eval()
    with torch.no_grad():  # BN statistics away from identity: the ReLUs gate per image
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


@pytest.mark.parametrize("name", MODELS.names())
def test_every_relu_call_is_a_hooked_module(name, monkeypatch):
    model = _model(name)
    x = torch.rand(2, 3, 16, 16)
    missed, hooked = unguided_relu_calls(model, x, monkeypatch)
    n_modules = sum(isinstance(m, nn.ReLU) for m in model.modules())
    assert missed == 0, f"{name}: {missed} ReLU calls outside nn.ReLU modules"
    assert hooked >= n_modules > 0  # every module ran (at least once) and was guided


@pytest.mark.parametrize("name", MODELS.names())
def test_gbp_equals_guided_backprop_of_every_relu_call(name):
    """An independent GBP (guides calls, not modules) equals ``gbp`` and differs from
    the plain gradient, on every registered model."""
    model = _model(name)
    x = torch.rand(2, 3, 16, 16)
    t = torch.tensor([1, 7])
    ours = SALIENCY.get("gbp")().attribute(model, x, t)
    xr = x.clone().requires_grad_(True)
    with GuideEveryReluCall():
        logits = model(xr)
    (ref,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), xr)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-5), name
    grad = SALIENCY.get("grad")().attribute(model, x, t)
    assert (ours - grad).abs().max() > 0.05 * grad.abs().max(), name


class _FunctionalTail(nn.Module):
    """One ReLU module and one hidden functional ReLU (what the checks must catch)."""

    def __init__(self, hidden: str):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.hidden = hidden

    def forward(self, x):
        h = self.conv2(self.relu(self.conv1(x)))
        h = {"F.relu": F.relu, "torch.relu": torch.relu, "method": torch.Tensor.relu,
             "clamp": lambda t: t.clamp(min=0), "clamp_min": lambda t: t.clamp_min(0.0),
             "inplace": lambda t: F.relu(t, inplace=True)}[self.hidden](h)
        return self.fc(h.mean(dim=(2, 3)))


@pytest.mark.parametrize("hidden", ["F.relu", "torch.relu", "method", "clamp",
                                    "clamp_min", "inplace"])
def test_checks_catch_a_functional_relu(hidden, monkeypatch):
    torch.manual_seed(0)
    model = _FunctionalTail(hidden).eval()
    x = torch.rand(4, 3, 8, 8)
    assert unguided_relu_calls(model, x, monkeypatch) == (1, 1)
    t = torch.tensor([0, 1, 2, 0])
    ours = SALIENCY.get("gbp")().attribute(model, x, t)
    xr = x.clone().requires_grad_(True)
    with GuideEveryReluCall():
        logits = model(xr)
    (ref,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), xr)
    assert not torch.allclose(ours, ref, atol=1e-6, rtol=1e-5)


def test_inplace_relu_module_is_seen(monkeypatch):
    """``nn.ReLU(inplace=True)`` returns its input tensor; the hook still guides it."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(64, 3)).eval()
    x = torch.rand(2, 3, 6, 6)
    assert unguided_relu_calls(model, x, monkeypatch) == (0, 1)
