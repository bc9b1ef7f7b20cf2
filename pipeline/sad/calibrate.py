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
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from pipeline.attacks import ATTACKS
from pipeline.cache.stream import MemoryStream
from pipeline.config import build_method
from pipeline.sad.model import SADModel, SADSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SADCalibration:
    """Hyperparameters of ``salpipe sad-calibrate`` (all recorded in the sidecar).

    Args:
        ratio: hybridization ratio r (paper 0.8; Table 4 sweeps 0.5-0.9).
        attack: attack name (``ATTACKS``) crafting x_adv under the original model.
        attack_params: its parameters (e.g. ``eps``, ``steps``).
        saliency: saliency method (``SALIENCY``) of the predicted class.
        saliency_params: its hyperparameters.
        normalise: per-image map normalisation (``maxabs`` | ``minmax`` | ``sign`` | ``raw``).
        bn_update: recalibrate BN statistics (False: saliency-only ablation, Table 5).
        add_saliency: add the map at calibration and inference (False: BN-only ablation).
        grad_mode: default gradient mode of the saved SAD model (``exact`` | ``bpda``).
        batch_size: calibration batch size; batches: at most this many (None: all).
        seed: seeds the batch order and the attack's random starts.
    """

    ratio: float = 0.8
    attack: str = "pgd"
    attack_params: dict[str, Any] = field(default_factory=dict)
    saliency: str = "grad"
    saliency_params: dict[str, Any] = field(default_factory=dict)
    normalise: str = "maxabs"
    bn_update: bool = True
    add_saliency: bool = True
    grad_mode: str = "exact"
    batch_size: int = 128
    batches: int | None = None
    seed: int = 0

    def __post_init__(self):
        if not (self.bn_update or self.add_saliency):
            raise ValueError("SAD with neither BN update nor saliency is the base model; "
                             "drop --no-bn-update or --no-saliency")
        if self.batch_size < 1 or (self.batches is not None and self.batches < 1):
            raise ValueError("SAD calibration needs batch_size >= 1 and batches >= 1")
        self.spec()  # validates ratio, saliency, normalisation, grad mode

    @property
    def variant(self) -> str:
        """``sad``, ``sad_bn_only`` (no saliency) or ``sad_saliency_only`` (no BN update)."""
        if not self.add_saliency:
            return "sad_bn_only"
        return "sad" if self.bn_update else "sad_saliency_only"

    def spec(self) -> SADSpec:
        """The inference-time wrapper spec."""
        return SADSpec(ratio=self.ratio, saliency=self.saliency,
                       saliency_params=dict(self.saliency_params), normalise=self.normalise,
                       grad_mode=self.grad_mode, add_saliency=self.add_saliency)

    def build_attack(self):

        return build_method(ATTACKS, self.attack, dict(self.attack_params), "sad.attack")


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model`` (tracking running statistics)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def recalibrate_bn(network: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   original: nn.Module, attack, spec: SADSpec, *, seed: int = 0) -> int:
    """Replace ``network``'s BN running statistics by those of processed batches.

    Args:
        network: the model whose BN statistics are recalibrated in place.
        batches: ``(x, y, index)`` triples, x in [0, 1] on the network's device.
        original: the frozen original model Phi0 (attacks and saliency are taken under it).
        attack: ``Attack`` crafting x_adv under ``original``.
        spec: ratio, saliency and normalisation of the processed input.
        seed: attack seed (per-example streams keyed by dataset index).

    Returns:
        the number of batches used.
    """
    layers = batchnorm_layers(network)
    if not layers:
        raise ValueError(f"{type(network).__name__} has no BatchNorm layers to recalibrate")
    momenta = [m.momentum for m in layers]
    processor = SADModel(original, spec)
    was_training = network.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    count = 0
    try:
        for x, y, index in batches:
            x_adv = attack(original, x, y, index=index, seed=seed)
            with torch.no_grad():
                x_s = processor.purify(x_adv)
                network.train()
                network(x_s)
                network.eval()
            count += 1
    finally:
        for m, mom in zip(layers, momenta):
            m.momentum = mom
        network.train(was_training)
    if count == 0:
        raise ValueError("SAD calibration got no batches (empty training split?)")
    return count


def calibrate(model: nn.Module, images, labels, cfg: SADCalibration,
              device: torch.device | str = "cpu") -> tuple[nn.Module, int]:
    """The recalibrated copy of ``model`` (the original is left untouched).

    Args:
        model: the trained classifier Phi0 (with BatchNorm).
        images: uint8 ``[N, C, H, W]`` training images; labels: ``[N]``.
        cfg: calibration hyperparameters.

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
                          original, cfg.build_attack(), cfg.spec(), seed=cfg.seed)
    log.info("recalibrated %d BN layers on %d batches of %d", len(batchnorm_layers(network)),
             used, stream.batch_size)
    return network.eval(), used
