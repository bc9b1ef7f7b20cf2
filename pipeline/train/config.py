"""Training configuration: frozen dataclasses grouped by concern (opt, sched, aug, net).

Defaults live only here. Build a :class:`TrainConfig` from a YAML mapping (plus CLI
overrides) with :func:`train_config_from`; a misspelled key or a wrong type fails with
a :class:`pipeline.config.ConfigError` naming it (``train.opt.lr: expected a number``).
The learning-rate schedule is a pure function of the optimiser step
(:func:`lr_multiplier`), so resuming needs only the step count, no scheduler state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.cache import STREAMS
from pipeline.cache.stream import AugConfig
from pipeline.config import ConfigError, from_dict, set_dotted

PRECISIONS = ("fp32", "bf16", "auto")  # of the training step (evaluation is always fp32)


@dataclass(frozen=True)
class OptConfig:
    """Optimiser.

    Args:
        name: ``sgd`` (with momentum) or ``adam``.
        lr: peak learning rate (per step, not scaled with the batch size).
        momentum: SGD momentum. nesterov: Nesterov momentum (SGD).
        weight_decay: L2 coefficient added to the gradient (both optimisers).
        betas: Adam's (beta1, beta2).
    """

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class SchedConfig:
    """Learning-rate schedule, as a multiplier of ``opt.lr`` per step.

    Args:
        name: ``constant``; ``multistep`` (times ``gamma`` at each epoch of
            ``milestones``); ``cosine`` (half cosine from 1 to 0 over the run);
            ``onecycle`` (linear 0 -> 1 over the first ``pct_start`` of the run, then
            linear to 0; the fast-AT / airbench shape); ``piecewise`` (linear between
            ``knots`` (epochs) with multipliers ``values``).
        warmup_epochs: linear warm-up from 0 (epochs; constant/multistep/cosine).
    """

    name: Literal["constant", "multistep", "cosine", "onecycle", "piecewise"] = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the run (multistep)
    gamma: float = 0.1  # multistep decay factor
    warmup_epochs: float = 0.0  # epochs
    pct_start: float = 0.25  # fraction of the run rising (onecycle)
    knots: tuple[float, ...] = ()  # epochs (piecewise)
    values: tuple[float, ...] = ()  # lr multipliers at the knots (piecewise)

    def __post_init__(self):
        if self.name == "piecewise" and (
            len(self.knots) < 2 or len(self.knots) != len(self.values)
        ):
            raise ValueError("piecewise needs >= 2 knots and as many values")
        if not 0 < self.pct_start < 1:
            raise ValueError(f"pct_start must be in (0, 1), got {self.pct_start}")


@dataclass(frozen=True)
class NetConfig:
    """Architecture: a MODELS name and its base width (None = the architecture's default)."""

    arch: str = "resnet10"
    width: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Everything the loop needs besides the method, the data and the output directory.

    Args:
        epochs: passes over the training split. batch_size: images per step.
        seed: seeds model init, data order, augmentation and method noise.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        precision: ``fp32`` or ``bf16``: ``torch.autocast`` to bfloat16 on the device's
            type around every training step's forward passes and loss, the inner attack
            that crafts the training examples included; weights, gradients and the
            optimiser stay fp32, and the per-epoch test accuracy (like every evaluation)
            runs in fp32. ``auto``: bf16 where the device computes bfloat16 natively
            (a CUDA device that supports it, a CPU with AVX512-BF16 or AMX), fp32
            elsewhere; the run records what it resolved to.
        channels_last: model and batches in NHWC memory format (the same arithmetic).
        compile: ``torch.compile`` the model's forward (calls made while a submodule
            holds hooks, as CAM readers do, run eagerly; a method that differentiates
            through a gradient is refused, naming this key).
        bn_mode: BatchNorm mode while crafting training attacks (``eval``: running
            statistics, as SIP-AT/PART; ``train``: batch statistics, as the SAT code).
        checkpoint_every: also write resume state every K optimiser steps (0 = only
            at epoch ends).
        eval_batch_size: batch size for the clean test accuracy after each epoch.
        test_split: split for that accuracy ("" = none).
        test_limit: use only the first N images of that split (0 = all; the full
            evaluation is a later stage, this is a progress signal).
        drop_last: drop the last partial training batch.
        stream: how the training split is streamed (a ``pipeline.cache.STREAMS``
            name): ``memory`` loads it whole into RAM / device memory, ``chunks`` reads
            whole chunks in random order through a shuffle buffer, ``auto`` (default)
            takes ``memory`` when the arrays fit.
    """

    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    bn_mode: Literal["eval", "train"] = "eval"
    checkpoint_every: int = 0  # optimiser steps
    eval_batch_size: int = 512
    test_split: str = "test"
    test_limit: int = 0  # images
    drop_last: bool = False
    stream: str = "auto"
    opt: OptConfig = field(default_factory=OptConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    net: NetConfig = field(default_factory=NetConfig)

    def __post_init__(self):
        bad = _non_finite(self)
        if bad:  # NaN/Inf would train silently into NaN weights
            path, value = bad
            raise ValueError(f"{path}: expected a finite number, got {value}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be {' or '.join(PRECISIONS)}, not {self.precision!r}"
            )
        if self.bn_mode not in ("eval", "train"):
            raise ValueError(f"bn_mode must be eval or train, not {self.bn_mode!r}")
        if self.stream not in STREAMS:
            raise ValueError(
                f"stream {self.stream!r} unknown; known: {', '.join(STREAMS.names())}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1 "
                f"(got {self.epochs}, {self.batch_size})"
            )


def _non_finite(obj: Any, path: str = "") -> tuple[str, float] | None:
    """The first dotted field of a (nested) config holding a NaN or infinite float."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            bad = _non_finite(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
            if bad:
                return bad
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad = _non_finite(v, f"{path}[{i}]")
            if bad:
                return bad
    elif isinstance(obj, float) and not math.isfinite(obj):
        return path, obj
    return None


def train_config_from(
    data: dict | None, overrides: dict[str, Any] | None = None, where: str = "train"
) -> TrainConfig:
    """A :class:`TrainConfig` from a mapping plus dotted overrides (``{"opt.lr": 0.05}``).

    Overrides whose value is None are ignored (unset CLI options).
    """
    merged: dict = _deep_copy(data or {})
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(merged, key, value, where)
    if "bf16" in merged:  # the old spelling: say what replaced it
        raise ConfigError(
            f"{where}.bf16: replaced by {where}.precision (fp32 | bf16); write "
            f"precision: bf16 instead of bf16: true"
        )
    return from_dict(TrainConfig, merged, where)


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def lr_multiplier(
    sched: SchedConfig, step: int, steps_per_epoch: int, epochs: int
) -> float:
    """The multiplier of the base lr at optimiser ``step`` (0-based)."""
    total = max(steps_per_epoch * epochs, 1)
    epoch = step / max(steps_per_epoch, 1)  # fractional epoch
    frac = min(step / total, 1.0)
    if sched.name == "onecycle":
        if frac < sched.pct_start:
            return frac / sched.pct_start
        return max(0.0, (1 - frac) / (1 - sched.pct_start))
    if sched.name == "piecewise":
        return _interp(epoch, sched.knots, sched.values)
    warm = (
        min(1.0, (step + 1) / (sched.warmup_epochs * steps_per_epoch))
        if sched.warmup_epochs > 0
        else 1.0
    )
    if sched.name == "constant":
        return warm
    if sched.name == "multistep":
        passed = sum(epoch >= m * epochs for m in sched.milestones)
        return warm * sched.gamma**passed
    return warm * 0.5 * (1 + math.cos(math.pi * frac))  # cosine


def _interp(t: float, knots: tuple[float, ...], values: tuple[float, ...]) -> float:
    if t <= knots[0]:
        return values[0]
    for (t0, v0), (t1, v1) in zip(zip(knots, values), zip(knots[1:], values[1:])):
        if t <= t1:
            return v0 + (v1 - v0) * (t - t0) / max(t1 - t0, 1e-12)
    return values[-1]
