"""SAD calibration (paper 001, Alg. 1, "Model update"): BatchNorm statistics only.

For each training batch B: x_adv = attack(Phi0, x, y) under the ORIGINAL model Phi0
(BatchNorm in eval mode while crafting, the Attack default); x_s = clip(x_adv + r *
normalise(S0(x_adv))) with S0 the saliency of Phi0's predicted class at x_adv; then x_s is
passed through the network in train mode without gradients, so only the BN running
statistics move. The statistics are reset first and accumulated as a cumulative average
(``momentum=None``), i.e. the new mu1/sigma1 are those of the processed training data
(AdaBN, Li et al. 2016). Weights (conv, linear, BN affine gamma/beta) never change.

Choices where the paper is silent or where we deviate, recorded in the sidecar:

- Only the processed adversarial images D_sadv are used (Alg. 1); clean images are not.
- Phi0 stays frozen while the statistics accumulate (a deep copy crafts the attacks and
  the saliency), so batch k is not crafted against half-recalibrated statistics.
- The attack is configurable (``ATTACKS``); default PGD (eps 8/255, 10 steps, random
  start), as the paper only says "adversarial perturbation by Eq. (3)".
- No augmentation; the last partial batch is dropped (equal weight per batch in the
  cumulative average).
- The stage-one saliency cache is not used: S0 is taken at x_adv, not at the clean
  training images the cache holds maps of, so no cached map is the one Alg. 1 needs.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

import torch
from torch import nn
from tqdm import tqdm

from pipeline.attacks import ATTACKS
from pipeline.cache.stream import MemoryStream
from pipeline.config import build_method
from pipeline.config.sad import SadConfig
from pipeline.core.modes import module_mode
from pipeline.sad.model import SADModel
from pipeline.saliency import SALIENCY

log = logging.getLogger(__name__)


def build_attack(cfg: SadConfig):
    """The calibration attack of ``cfg`` (``ATTACKS``; an unknown name or parameter is a
    config error naming ``sad.attack``)."""
    return build_method(ATTACKS, cfg.attack, dict(cfg.attack_params), "sad.attack")


def check_names(cfg: SadConfig) -> None:
    """The registry checks :class:`SadConfig` cannot make (the config layer has no
    registries): the attack and the saliency method exist and their parameters build.

    Raises:
        ConfigError: naming ``sad.attack`` or ``sad.saliency``.
    """
    build_attack(cfg)
    build_method(SALIENCY, cfg.saliency, dict(cfg.saliency_params), "sad.saliency")


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model`` (tracking running statistics)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def recalibrate_bn(network: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   original: nn.Module, attack, cfg: SadConfig, *, seed: int = 0) -> int:
    """Replace ``network``'s BN running statistics by those of processed batches.

    Args:
        network: the model whose BN statistics are recalibrated in place.
        batches: ``(x, y, index)`` triples, x in [0, 1] on the network's device.
        original: the frozen original model Phi0 (attacks and saliency are taken under it).
        attack: ``Attack`` crafting x_adv under ``original``.
        cfg: ratio, saliency and normalisation of the processed input.
        seed: attack seed (per-example streams keyed by dataset index).

    Returns:
        the number of batches used.
    """
    layers = batchnorm_layers(network)
    if not layers:
        raise ValueError(f"{type(network).__name__} has no BatchNorm layers to recalibrate")
    momenta = [m.momentum for m in layers]
    processor = SADModel(original, cfg)
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    count = 0
    try:
        for x, y, index in batches:
            x_adv = attack(original, x, y, index=index, seed=seed)
            with torch.no_grad():
                x_s = processor.purify(x_adv)
                with module_mode(network, True):  # train mode: the running stats move
                    network(x_s)
            count += 1
    finally:
        for m, mom in zip(layers, momenta):
            m.momentum = mom
    if count == 0:
        raise ValueError("SAD calibration got no batches (empty training split?)")
    return count


def calibrate(model: nn.Module, images, labels, cfg: SadConfig,
              device: torch.device | str = "cpu") -> tuple[nn.Module, int]:
    """The recalibrated copy of ``model`` (the original is left untouched).

    Args:
        model: the trained classifier Phi0 (with BatchNorm).
        images: uint8 ``[N, C, H, W]`` training images; labels: ``[N]``.
        cfg: the SAD settings (:class:`~pipeline.config.sad.SadConfig`).

    Returns:
        ``(network Phi1 in eval mode, batches used)``; with ``bn_update`` False, Phi1 is
        an unchanged copy of Phi0 and 0 batches are used.
    """

    original = copy.deepcopy(model).eval()
    for p in original.parameters():
        p.requires_grad_(False)
    network = copy.deepcopy(model).eval()
    if not cfg.bn_update:
        return network, 0
    n = len(labels)
    stream = MemoryStream(images, labels, batch_size=min(cfg.batch_size, n), seed=cfg.seed,
                          device=device, drop_last=True)
    total = stream.num_batches if cfg.batches is None else min(cfg.batches,
                                                                 stream.num_batches)

    def batches():
        for k, b in enumerate(stream.batches(0)):
            if k >= total:
                return
            yield b.x, b.y, b.index

    used = recalibrate_bn(network, tqdm(batches(), total=total, desc="sad-calibrate",
                                        leave=False),
                          original, build_attack(cfg), cfg, seed=cfg.seed)
    log.info("recalibrated %d BN layers on %d batches of %d", len(batchnorm_layers(network)),
             used, stream.batch_size)
    return network.eval(), used
