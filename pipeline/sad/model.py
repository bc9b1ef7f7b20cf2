"""The SAD model (paper 001, Alg. 1, "Model inference"): predict on x + r * S1(x).

``SADModel(network)`` is an ``nn.Module`` whose forward computes the saliency S1(x) of
the *predicted* class under ``network`` (the BN-recalibrated classifier), normalises it
per image, and returns ``network(clip(x + ratio * normalise(S1(x)), 0, 1))``. Attacks that
are handed this module therefore attack the whole defence (DESIGN.md section 2).

Gradient modes (what ``d logits / d x`` means):

- ``exact``: double backprop, the saliency step is part of the graph
  (``create_graph=True``); only for the vanilla ``grad`` saliency, whose map is a
  differentiable function of x (other methods in the registry return detached maps).
- ``bpda``: the saliency term is a constant in the backward pass (Athalye et al. 2018,
  notes/peers.md C.2 3a): ``d/dx network(clip(x + c))`` with c = r * normalise(S1(x)).

The paper's Alg. 1 writes ``argmax Phi(x + S1(x))`` without the ratio but the text (Sec.
3.3, 4.5) adds the map "with a hybridization ratio"; we scale by ``ratio`` at inference
exactly as at calibration. The paper does not say how maps are normalised; ``maxabs``
(per image, [-1, 1], sign kept) is our default and is recorded in the sidecar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from pipeline.config import build_method
from pipeline.saliency import SALIENCY

GRAD_MODES = ("exact", "bpda")
NORMALISATIONS = ("maxabs", "minmax", "sign", "raw")


def normalise_map(attr: torch.Tensor, how: str) -> torch.Tensor:
    """Per-image normalisation, differentiable and dtype-preserving.

    Same rules as :func:`pipeline.saliency.transforms.normalise` (a test holds them equal
    in float32), which casts to float32 and so cannot serve the float64 gradient check.

    Args:
        attr: maps ``[N, ...]``.
        how: ``maxabs`` | ``minmax`` | ``sign`` | ``raw``; a constant map becomes 0.

    Returns:
        a tensor shaped like ``attr``.
    """
    if how not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, not {how!r}")
    if how == "raw":
        return attr
    if how == "sign":
        return attr.sign()
    flat = attr.flatten(1)
    if how == "maxabs":
        scale = flat.abs().amax(1, keepdim=True)
        out = flat / torch.where(scale > 0, scale, torch.ones_like(scale))
    else:
        lo = flat.amin(1, keepdim=True)
        rng = flat.amax(1, keepdim=True) - lo
        out = (flat - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))
    return out.view_as(attr)


@dataclass(frozen=True)
class SADSpec:
    """What the SAD wrapper does at inference (the sidecar's ``wrapper`` block).

    Args:
        ratio: hybridization ratio r (paper: 0.8); 0 adds nothing.
        saliency: saliency method name (``SALIENCY``), of the predicted class.
        saliency_params: that method's hyperparameters.
        normalise: per-image normalisation of the map (``maxabs`` default).
        grad_mode: ``exact`` (double backprop) or ``bpda`` (saliency term constant).
        add_saliency: False for the BN-recalibration-only ablation (forward = network).
    """

    ratio: float = 0.8
    saliency: str = "grad"
    saliency_params: dict[str, Any] = field(default_factory=dict)
    normalise: str = "maxabs"
    grad_mode: str = "exact"
    add_saliency: bool = True

    def __post_init__(self):

        if self.grad_mode not in GRAD_MODES:
            raise ValueError(f"SAD grad_mode must be one of {GRAD_MODES}, not "
                             f"{self.grad_mode!r}")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"SAD normalise must be one of {NORMALISATIONS}, not "
                             f"{self.normalise!r}")
        if not 0 <= float(self.ratio) <= 10:
            raise ValueError(f"SAD ratio must be in [0, 10], got {self.ratio}")
        SALIENCY.get(self.saliency)  # unknown name -> error listing the known ones
        if self.grad_mode == "exact" and self.saliency != "grad" and self.active:
            raise ValueError(
                f"SAD grad_mode 'exact' needs saliency 'grad' (the maps of "
                f"{self.saliency!r} are detached, so double backprop cannot see them); "
                "use grad_mode 'bpda'")

    @property
    def active(self) -> bool:
        """Whether a saliency term is added at all."""
        return self.add_saliency and float(self.ratio) != 0.0

    def to_dict(self) -> dict:
        return {"name": "sad", **asdict(self)}


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
        spec: :class:`SADSpec` (ratio, saliency, normalisation, gradient mode).

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; returns logits ``[N, K]``.

    Works under ``torch.no_grad()`` (the saliency enables gradients internally). No
    parameter ``.grad`` is written by the saliency step (``autograd.grad`` only).
    """

    def __init__(self, network: nn.Module, spec: SADSpec = SADSpec()):
        super().__init__()
        self.network = network.eval()
        self.spec = spec
        self._method = None
        if spec.active and spec.saliency != "grad":

            self._method = build_method(SALIENCY, spec.saliency, dict(spec.saliency_params),
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
        term = float(self.spec.ratio) * normalise_map(self.saliency(x), self.spec.normalise)
        if self.spec.grad_mode == "bpda":
            term = term.detach()
        return (x + term).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.purify(x))

    def extra_repr(self) -> str:
        s = self.spec
        return (f"ratio={s.ratio}, saliency={s.saliency}, normalise={s.normalise}, "
                f"grad_mode={s.grad_mode}, add_saliency={s.add_saliency}")


def spec_from_meta(wrapper: dict) -> SADSpec:
    """The :class:`SADSpec` of a sidecar's ``wrapper`` block (unknown keys ignored)."""

    names = {f.name for f in fields(SADSpec)}
    return SADSpec(**{k: v for k, v in wrapper.items() if k in names})
