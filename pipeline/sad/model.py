"""The SAD model (paper 001, Alg. 1, "Model inference"): predict on x + r * S1(x).

``SADModel(network)`` is an ``nn.Module`` whose forward computes the saliency S1(x) of
the *predicted* class under ``network`` (the BN-recalibrated classifier), normalises it
per image, and returns ``network(clip(x + ratio * normalise(S1(x)), 0, 1))``. Attacks that
are handed this module therefore attack the whole defence (DESIGN.md section 2).

Gradient modes (what ``d logits / d x`` means):

- ``exact``: double backprop, the saliency step is part of the graph
  (``create_graph=True``); only for the vanilla ``grad`` saliency, whose map is a
  differentiable function of x (other methods in the registry return detached maps).
- ``bpda``: the whole input transformation (saliency step and clip) is the identity in
  the backward pass (Athalye et al. 2018, notes/peers.md C.2 3a): the gradient is the
  network's at the transformed input, on every pixel. (Detaching only the saliency term
  would keep the clip, which zeroes the gradient of clipped pixels, and on a ReLU network
  would equal ``exact``, whose second-order term vanishes almost everywhere.)

The paper's Alg. 1 writes ``argmax Phi(x + S1(x))`` without the ratio but the text (Sec.
3.3, 4.5) adds the map "with a hybridization ratio"; we scale by ``ratio`` at inference
exactly as at calibration. The paper does not say how maps are normalised; ``maxabs``
(per image, [-1, 1], sign kept) is our default and is recorded in the sidecar.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from pipeline.config import build_method
from pipeline.config.sad import SadConfig
from pipeline.core.grad import straight_through
from pipeline.saliency import SALIENCY
from pipeline.saliency.transforms import normalise

# The sidecar's ``wrapper`` block: the inference settings, in this order (a checkpoint's
# identity in the results is derived from its sidecar, so the keys never change).
WRAPPER_KEYS = ("ratio", "saliency", "saliency_params", "normalise", "grad_mode",
                "add_saliency")


def wrapper_block(cfg: SadConfig) -> dict[str, Any]:
    """The sidecar's ``wrapper`` block of ``cfg``: ``{"name": "sad", ratio, saliency,
    saliency_params, normalise, grad_mode, add_saliency}``."""
    block: dict[str, Any] = {"name": "sad"}
    for key in WRAPPER_KEYS:
        value = getattr(cfg, key)
        block[key] = dict(value) if isinstance(value, dict) else value
    return block


def spec_from_meta(wrapper: dict) -> SadConfig:
    """The :class:`SadConfig` of a sidecar's ``wrapper`` block (other keys ignored; the
    calibration-only settings take their defaults)."""
    return SadConfig(**{k: wrapper[k] for k in WRAPPER_KEYS if k in wrapper})


def predicted_class_gradient(network: nn.Module, x: torch.Tensor,
                             create_graph: bool) -> torch.Tensor:
    """d logit_pred / d x, with the graph kept (``create_graph``) for double backprop.

    Equals the registry's ``grad`` saliency of the predicted class (a test holds it).
    When ``create_graph`` is False or ``x`` needs no gradient the map is detached.
    """
    keep = create_graph and x.requires_grad
    with torch.enable_grad():
        xi = x if keep else x.detach().requires_grad_(True)
        logits = network(xi)
        pred = logits.argmax(1, keepdim=True)
        (grad,) = torch.autograd.grad(logits.gather(1, pred).sum(), xi, create_graph=keep)
    return grad if keep else grad.detach()


class SADModel(nn.Module):
    """``network(clip(x + ratio * normalise(S1(x))))`` with S1 under ``network``.

    Args:
        network: the (BN-recalibrated) classifier; exposed as ``.network`` so that
            non-adaptive attacks can target it alone.
        cfg: :class:`~pipeline.config.sad.SadConfig`; inference reads its ratio,
            saliency (and params), normalisation, gradient mode and add_saliency.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; returns logits ``[N, K]``.

    Works under ``torch.no_grad()`` (the saliency enables gradients internally). No
    parameter ``.grad`` is written by the saliency step (``autograd.grad`` only).
    """

    def __init__(self, network: nn.Module, cfg: SadConfig | None = None):
        super().__init__()
        cfg = SadConfig() if cfg is None else cfg
        self.network = network.eval()
        self.spec = cfg  # the settings (pipeline.evaluate.views reads `.spec`)
        SALIENCY.get(cfg.saliency)  # unknown name -> KeyError listing the known ones
        self._method = None
        if cfg.active and cfg.saliency != "grad":
            self._method = build_method(SALIENCY, cfg.saliency, dict(cfg.saliency_params),
                                        "sad.saliency")

    def train(self, mode: bool = True) -> SADModel:
        """Sets the wrapper's flag only: the network always runs in eval mode.

        The recalibrated BN statistics are the defence (frozen, notes/peers.md C.2 1), so
        no forward pass, not even an attack with ``bn_mode='train'``, may use batch
        statistics or move the running ones.
        """
        super().train(mode)
        self.network.eval()
        return self

    def with_grad_mode(self, grad_mode: str) -> SADModel:
        """A view of the same network with another gradient mode (shares the weights)."""
        return SADModel(self.network, replace(self.spec, grad_mode=grad_mode)).train(
            self.training)

    def saliency(self, x: torch.Tensor) -> torch.Tensor:
        """S1(x): the raw saliency map of the predicted class, ``[N, C, H, W]``."""
        exact = self.spec.grad_mode == "exact" and torch.is_grad_enabled()
        if self._method is None:
            return predicted_class_gradient(self.network, x, create_graph=exact)
        with torch.no_grad():
            target = self.network(x).argmax(1)
        return self._method.attribute(self.network, x.detach(), target).to(x.dtype)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        """The processed input ``clip(x + ratio * normalise(S1(x)), 0, 1)``."""
        if not self.spec.active:
            return x
        term = float(self.spec.ratio) * normalise(self.saliency(x), self.spec.normalise)
        out = (x + term).clamp(0, 1)
        if self.spec.grad_mode == "bpda":
            return straight_through(out, x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.purify(x))

    def extra_repr(self) -> str:
        c = self.spec
        return (f"ratio={c.ratio}, saliency={c.saliency}, normalise={c.normalise}, "
                f"grad_mode={c.grad_mode}, add_saliency={c.add_saliency}")
