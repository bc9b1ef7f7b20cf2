"""Model wrappers: defences that compute something at inference around a checkpoint.

A checkpoint whose sidecar has a ``wrapper`` block (``{"name": ..., ...}``) holds the
weights of the inner network; :func:`wrap_model` rebuilds the defence around it, so
``pipeline.train.checkpoint.load_model`` returns the whole defended classifier and an
attack differentiates through it (DESIGN.md section 2). A wrapped module exposes its
inner network as ``.network``. Factories: ``(network, wrapper_block) -> nn.Module``.
"""

from __future__ import annotations

import hashlib
import json

from torch import nn

from pipeline.registry import Registry

WRAPPERS = Registry("model wrapper")


def _register_all() -> None:
    # Lazy: the wrapper packages import pipeline.models themselves.
    import pipeline.sad.model  # noqa: F401  (registers "sad")


def wrap_model(network: nn.Module, meta: dict) -> nn.Module:
    """``network`` wrapped as the sidecar ``meta`` says (unchanged without ``wrapper``).

    Raises:
        ValueError: the ``wrapper`` block is not a mapping with a registered ``name``.
    """
    block = meta.get("wrapper")
    if not block:
        return network
    if not isinstance(block, dict) or "name" not in block:
        raise ValueError(f"sidecar 'wrapper' must be a mapping with a 'name', got {block!r}")
    _register_all()
    # the wrapper holds the network as its only submodule: same device, same mode
    return WRAPPERS.get(block["name"])(network, block).train(network.training)


def wrapped_model_id(meta: dict) -> str:
    """What identifies the evaluated model: the weights' sha256, plus the wrapper if any.

    Two wrapped variants can share weights (SAD saliency-only keeps the base model's), so
    for a wrapped model this is the sha256 of ``{sha256, wrapper}``; for a plain model it
    is the weights' sha256 itself.
    """
    block = meta.get("wrapper")
    if not block:
        return str(meta.get("sha256", ""))
    text = json.dumps({"sha256": meta.get("sha256"), "wrapper": block}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
