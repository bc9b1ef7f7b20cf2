"""CAM interpretation maps and Kendall's tau, shared by the interpretation attacks (paper 004).

A plain network is interpreted by its own CAM: ``model.cam_layer``'s output (or
``model.features(x)``) weighted by the rows of the linear ``model.fc``. A defence that
wraps a network, with an inner ``.network`` and a ``purify(x)`` such that ``forward(x)
= network(purify(x))`` (the SAD model, :mod:`pipeline.sad.model`), is interpreted by the
inner network's CAM of the transformed input ``purify(x)``: that network makes the
prediction, on the input it actually sees. Gradients go through ``purify`` as the
wrapper defines its backward (double backprop in SAD's ``exact`` mode, the identity in
``bpda``), so the contract for a module handed to an interpretation attack is: either a
plain network as above, or ``.network`` plus a ``purify`` whose backward is the one the
attack should follow (an evaluation view that wants another surrogate gradient puts it
in its ``purify``). Wrappers are detected by duck typing (attacks import no defence).
"""

from __future__ import annotations

import torch
from torch import nn


def is_wrapper(model: nn.Module) -> bool:
    """Whether ``model`` wraps an inner ``.network`` behind a ``purify(x)`` transform."""
    return (isinstance(getattr(model, "network", None), nn.Module)
            and callable(getattr(model, "purify", None)))


def cam_network(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """The network whose CAM interprets ``model``, and the input that network sees.

    Unwraps ``x -> purify(x)``, ``model -> model.network`` while ``model`` is a wrapper
    (nested wrappers compose); a plain network is returned with ``x`` itself.
    """
    while is_wrapper(model):
        x = model.purify(x)
        model = model.network
    return model, x


def _features(net: nn.Module, x: torch.Tensor, with_logits: bool):
    """``(logits or None, feature map [N, K, h, w])`` of a plain network, checked."""
    layer = getattr(net, "cam_layer", None)
    has_features = callable(getattr(net, "features", None))
    if not (isinstance(getattr(net, "fc", None), nn.Linear)
            and (isinstance(layer, nn.Module) or has_features)):
        raise TypeError(
            f"CAM needs a network with a linear .fc and .cam_layer or .features(x), or a "
            f"wrapper with .network and .purify(x); got {type(net).__name__}")
    if has_features and not with_logits:
        return None, net.features(x)
    if not isinstance(layer, nn.Module):
        return net(x), net.features(x)
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda m, i, o: seen.append(o))
    try:  # one pass gives both (the hook sees only this forward: purify ran before)
        logits = net(x)
    finally:
        hook.remove()
    return logits, seen[-1]


def _cam(net: nn.Module, feats: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    h, w = feats.shape[-2:]
    return torch.einsum("nk,nkhw->nhw", net.fc.weight[classes], feats) / (h * w)


def cam_maps(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """CAM of class ``classes[i]`` for image ``x[i]`` at the feature-map resolution.

    ``I(x, c)[p] = w_c . A(z)[:, p] / (h * w)`` with ``A`` the network's last feature
    map, ``w_c`` its final linear layer's row and ``z = x`` (plain network) or
    ``z = purify(x)`` with the inner network (a wrapper; see the module docstring), so
    ``sum_p I(x, c)[p] = f_c(x) - b_c``: the completeness axiom paper 004 (Boopathy et
    al. 2020, Eq. 1 and Prop. 1) relies on. The 1 / (h w) is a constant scale: the
    public code's ``conv(features, W)`` differs only by it. Differentiable in ``x``
    (through ``purify`` as far as the wrapper's gradient mode lets it).

    Shape:
        x: ``[N, C, H, W]``; classes: ``[N]``; returns ``[N, h, w]``.
    """
    net, z = cam_network(model, x)
    return _cam(net, _features(net, z, with_logits=False)[1], classes)


def logits_and_cam_maps(model: nn.Module, x: torch.Tensor,
                        *classes: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``model``'s logits and :func:`cam_maps` of each class vector in ``classes``, from
    one pass (for a wrapper ``network(purify(x))``, its forward by the contract above,
    so ``purify`` runs once).

    Shape:
        x: ``[N, C, H, W]``; each of classes: ``[N]``; returns ``[N, K]`` and a list of
        ``[N, h, w]``.
    """
    net, z = cam_network(model, x)
    logits, feats = _features(net, z, with_logits=True)
    return logits, [_cam(net, feats, c) for c in classes]


def kendall_tau(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kendall's tau-b between ``a[i]`` and ``b[i]`` flattened, per row (as scipy's default).

    NaN where a row is constant (tau undefined).

    Shape:
        a, b: ``[N, ...]`` with the same shape; returns ``[N]``.
    """
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    iu = torch.triu_indices(a.shape[1], a.shape[1], offset=1, device=a.device)
    sa = (a[:, iu[0]] - a[:, iu[1]]).sign()
    sb = (b[:, iu[0]] - b[:, iu[1]]).sign()
    num = (sa * sb).sum(1)
    den = (sa.abs().sum(1) * sb.abs().sum(1)).sqrt()
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, float("nan")))
