"""The saliency contract and the bookkeeping every method shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import nn

from pipeline.core.modes import eval_mode
from pipeline.saliency.transforms import salience_mask

TARGETS = ("label", "pred")


def check_target(x: torch.Tensor, target: torch.Tensor) -> None:
    """``target`` must hold one class per image of ``x``: shape ``[N]``."""
    if target.shape != (x.shape[0],):
        raise ValueError(f"target must have shape [{x.shape[0]}], got {tuple(target.shape)}")


def resolve_target(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, target: str) -> torch.Tensor:
    """The class whose saliency is taken: the true ``label`` or the model's ``pred``."""
    if target == "label":
        if y is None:
            raise ValueError("target 'label' needs labels")
        return y
    if target == "pred":
        with torch.no_grad(), eval_mode(model):
            return model(x).argmax(1)
    raise ValueError(f"saliency target must be one of {TARGETS}, not {target!r}")


def auto_batch(device: torch.device) -> int:
    """Images per forward/backward when a method splits a large batch itself.

    Small on CPU, where a 64-image backward keeps its activations in cache and runs
    2-4x faster per image than a 512-image one (measured on the narrow ResNet-10);
    large on accelerators, which want big batches.
    """
    return 64 if torch.device(device).type == "cpu" else 1024


class SaliencyMethod(ABC):
    """Base class: ``attribute`` wraps ``_attribute`` with eval mode and input bookkeeping.

    The call leaves ``model.training``, ``x.requires_grad`` and ``x.grad`` as they were,
    leaves no hooks, and does not accumulate parameter gradients.

    Methods whose maps are computed image by image (``per_image = True``, the default)
    get the batch in pieces of :func:`auto_batch` images; this changes speed, not the
    result (beyond float rounding). Methods that draw noise for the whole batch (SmoothGrad, IG's uniform
    baseline) set ``per_image = False`` and split their work themselves.
    """

    per_image: ClassVar[bool] = True

    def attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Saliency of class ``target[i]`` for image ``x[i]``.

        Shape:
            x: ``[N, C, H, W]``, target: ``[N]`` (long); returns ``[N, C, H, W]`` (float32).
        """
        check_target(x, target)
        x, target = x.detach(), target.to(x.device)
        step = auto_batch(x.device) if self.per_image else x.shape[0]
        with eval_mode(model), torch.enable_grad():
            attr = [
                self._attribute(model, xs.clone(), ts).detach().float()
                for xs, ts in zip(x.split(max(step, 1)), target.split(max(step, 1)))
            ]
        return attr[0] if len(attr) == 1 else torch.cat(attr)

    def salience_mask(self, attr: torch.Tensor) -> torch.Tensor:
        """The cache's salience ``mask`` for this method's maps, ``bool [N, H, W]``.

        Default: the smallest set of pixels holding half the channel-summed |attr|
        (SIP-AT's rule, :func:`pipeline.saliency.transforms.salience_mask`); methods
        whose map already is a set (``sip_topk``, box methods) override it.
        """

        return salience_mask(attr)

    @abstractmethod
    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The method proper; ``x`` is a detached copy, model in eval mode, grad enabled."""


def target_logit_grad(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d logit_target / d x for every image of the batch in one backward pass."""
    x = x.requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
    return grad


class _GuidedClamp(torch.autograd.Function):
    """Identity forward; backward lets only positive gradients through.

    Placed right after a ReLU's output, the ReLU's own backward then masks by the
    positive input, so the pair back-propagates ``g * 1[g > 0] * 1[x > 0]``: guided
    backprop (Springenberg et al. 2015).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


def _guide(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return _GuidedClamp.apply(output)


@contextmanager
def guided_relu(model: nn.Module) -> Iterator[int]:
    """Guided-backprop ReLUs for the duration: forward hooks on every ``nn.ReLU``.

    Yields the number of ReLU modules hooked (0 means the model's ReLUs are functional
    and guided backprop would silently equal the plain gradient, the SAT-code trap; we
    refuse that). The hooks are removed on exit, exceptions included.
    """
    handles = [m.register_forward_hook(_guide) for m in model.modules()
               if isinstance(m, nn.ReLU)]
    try:
        if not handles:
            raise ValueError(
                f"guided backprop needs nn.ReLU modules; {type(model).__name__} has none "
                "(functional ReLUs would be left unguided)"
            )
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def guided_logit_grad(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Guided-backprop gradient of the target logit, one batched backward pass."""
    with guided_relu(model):
        return target_logit_grad(model, x, target)


def resolve_layer(model: nn.Module, layer: str | None) -> nn.Module:
    """``model.cam_layer`` when ``layer`` is None, else the submodule named ``layer``."""
    if layer is None:
        if not hasattr(model, "cam_layer"):
            raise ValueError(
                f"{type(model).__name__} has no cam_layer; name a layer explicitly"
            )
        return model.cam_layer
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:20]
        raise ValueError(f"model has no layer {layer!r}; some layers: {names}") from None


def layer_activation_grad(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations ``A`` of ``layer`` and ``d logit_target / d A``, batched.

    A forward hook only records the output (removed before returning); the gradient
    is taken with ``torch.autograd.grad`` so no ``.grad`` is left anywhere.

    Shape:
        returns two tensors ``[N, K, h, w]``.
    """
    store: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, i, o: store.append(o))
    try:
        # x requires grad so the graph exists even for a frozen (requires_grad=False) model
        logits = model(x.detach().requires_grad_(True))
    finally:
        handle.remove()
    if len(store) != 1:
        raise ValueError(f"the CAM layer ran {len(store)} times in one forward (expected 1)")
    acts = store[0]
    (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), acts)
    return acts.detach(), grads


def upsample_map(cam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear (``align_corners=False``, as cv2.resize) upsampling of ``[N, 1, h, w]``
    to ``x``'s size, then broadcast over ``x``'s channels: ``[N, C, H, W]``."""
    cam = torch.nn.functional.interpolate(
        cam, size=x.shape[-2:], mode="bilinear", align_corners=False
    )
    return cam.expand(-1, x.shape[1], -1, -1).contiguous()
