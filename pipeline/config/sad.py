"""Every setting of SAD (paper 001) in one frozen dataclass, :class:`SadConfig`.

The sweep's ``sad:`` entries (:class:`pipeline.config.sweep.SadModelSpec` adds the base
student), ``salpipe sad-calibrate`` (its options have no defaults of their own: an option
left out takes the default written here) and the calibration and inference code
(:mod:`pipeline.sad`) all read this one class, so a default lives in one place.

The checks here are structural; whether the saliency and attack names exist is checked
where their registries are, when :mod:`pipeline.sad` builds them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from pipeline.config import from_dict, set_dotted

Normalisation = Literal["maxabs", "minmax", "sign", "raw"]
GradMode = Literal["exact", "bpda"]
NORMALISATIONS: tuple[str, ...] = get_args(Normalisation)
GRAD_MODES: tuple[str, ...] = get_args(GradMode)
MAX_RATIO = 10.0


@dataclass(frozen=True)
class SadConfig:
    """SAD's settings: calibration (Alg. 1, "Model update") and inference ("Model
    inference"); all recorded in the SAD checkpoint's sidecar.

    Args:
        ratio: hybridization ratio r (paper 0.8; Table 4 sweeps 0.5-0.9); 0 adds nothing.
        attack: attack name (``ATTACKS``) crafting x_adv under the original model.
        attack_params: its parameters (e.g. ``eps``, ``steps``).
        saliency: saliency method (``SALIENCY``) of the predicted class.
        saliency_params: its hyperparameters.
        normalise: per-image map normalisation (``maxabs`` | ``minmax`` | ``sign`` | ``raw``).
        bn_update: recalibrate BN statistics (False: saliency-only ablation, Table 5).
        add_saliency: add the map at calibration and inference (False: BN-only ablation).
        grad_mode: gradient mode of the SAD model (``exact``: double backprop, only for
            saliency ``grad``; ``bpda``: saliency term constant). None (the default)
            resolves to ``exact`` for saliency ``grad``, else ``bpda``.
        batch_size: calibration batch size; batches: at most this many (None: all).
        seed: seeds the batch order and the attack's random starts (a sweep job's seed).
    """

    ratio: float = 0.8
    attack: str = "pgd"
    attack_params: dict[str, Any] = field(default_factory=dict)
    saliency: str = "grad"
    saliency_params: dict[str, Any] = field(default_factory=dict)
    normalise: Normalisation = "maxabs"
    bn_update: bool = True
    add_saliency: bool = True
    grad_mode: GradMode | None = None
    batch_size: int = 128
    batches: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.grad_mode is None:
            object.__setattr__(self, "grad_mode",
                               "exact" if self.saliency == "grad" else "bpda")
        if self.grad_mode not in GRAD_MODES:
            raise ValueError(f"SAD grad_mode must be one of {GRAD_MODES}, not "
                             f"{self.grad_mode!r}")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"SAD normalise must be one of {NORMALISATIONS}, not "
                             f"{self.normalise!r}")
        if not 0 <= float(self.ratio) <= MAX_RATIO:
            raise ValueError(f"SAD ratio must be in [0, {MAX_RATIO:g}], got {self.ratio}")
        if self.grad_mode == "exact" and self.saliency != "grad" and self.active:
            raise ValueError(
                f"SAD grad_mode 'exact' needs saliency 'grad' (the maps of "
                f"{self.saliency!r} are detached, so double backprop cannot see them); "
                "use grad_mode 'bpda'")
        if not (self.bn_update or self.add_saliency):
            raise ValueError("SAD with neither BN update nor saliency is the base model; "
                             "drop --no-bn-update or --no-saliency")
        if self.batch_size < 1 or (self.batches is not None and self.batches < 1):
            raise ValueError("SAD calibration needs batch_size >= 1 and batches >= 1, got "
                             f"batch_size {self.batch_size}, batches {self.batches}")

    @property
    def active(self) -> bool:
        """Whether a saliency term is added at all."""
        return self.add_saliency and float(self.ratio) != 0.0

    @property
    def variant(self) -> str:
        """``sad``, ``sad_bn_only`` (no saliency) or ``sad_saliency_only`` (no BN update)."""
        if not self.add_saliency:
            return "sad_bn_only"
        return "sad" if self.bn_update else "sad_saliency_only"

    def settings(self) -> dict[str, Any]:
        """Every :class:`SadConfig` field and its value (a subclass's extra fields left
        out)."""
        return {f.name: getattr(self, f.name) for f in fields(SadConfig)}

    def config(self) -> SadConfig:
        """The plain :class:`SadConfig` of these settings (drops a subclass's fields)."""
        return SadConfig(**self.settings())

    def overrides(self) -> dict[str, Any]:
        """The settings that differ from the defaults, so that
        ``SadConfig(**cfg.overrides()) == cfg.config()``; ``grad_mode`` only when it is
        not the one its saliency implies."""
        implied = "exact" if self.saliency == "grad" else "bpda"
        return {f.name: getattr(self, f.name) for f in fields(SadConfig)
                if getattr(self, f.name) != (implied if f.name == "grad_mode"
                                             else _default(f))}


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def sad_config(settings: dict[str, Any] | None = None, where: str = "sad") -> SadConfig:
    """A :class:`SadConfig` from ``settings`` whose keys may be dotted
    (``{"saliency_params.n": 5}``); keys left out take the defaults, unknown keys and
    wrong values are :class:`ConfigError` naming them."""
    data: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if isinstance(value, dict):
            for k, v in value.items():
                set_dotted(data, f"{key}.{k}", v, where)
        else:
            set_dotted(data, key, value, where)
    return from_dict(SadConfig, data, where)
