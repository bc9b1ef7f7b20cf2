"""Loading a checkpoint as the whole model it describes, defence included.

Sits above models and defences: :func:`pipeline.models.checkpoint.load_network` rebuilds
the network; a sidecar ``wrapper`` block (``{"name": ..., ...}``) then rebuilds the
defence around it through :data:`pipeline.sad.WRAPPERS`, so an attack differentiates
through all of it (DESIGN.md section 2). A wrapped module exposes its inner network as
``.network``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.models.checkpoint import load_network, sidecar_path
from pipeline.sad import WRAPPERS


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
    # the wrapper holds the network as its only submodule: same device, same mode
    return WRAPPERS.get(block["name"])(network, block).train(network.training)


def load_model(
    dir_or_model_pt: str | Path,
    device: str | torch.device = "cpu",
    expect_dataset_fingerprint: str | None = None,
    expect_arch: str | None = None,
    wrap: bool = True,
) -> tuple[nn.Module, dict]:
    """The checkpoint's model in eval mode on ``device``, and its sidecar.

    Args: as :func:`~pipeline.models.checkpoint.load_network`; ``wrap`` False returns the
    bare inner network of a wrapped (defended) checkpoint.
    """
    network, meta = load_network(dir_or_model_pt, device, expect_dataset_fingerprint,
                                 expect_arch)
    if not wrap:
        return network, meta
    try:
        return wrap_model(network, meta), meta
    except (KeyError, TypeError, ValueError) as e:
        side = sidecar_path(dir_or_model_pt)
        msg = e.args[0] if isinstance(e, KeyError) and type(e) is KeyError else str(e)
        raise ValueError(f"checkpoint sidecar {side}: bad 'wrapper' block ({msg}); it is "
                         "corrupt or of another salpipe version (recalibrate it)") from None
