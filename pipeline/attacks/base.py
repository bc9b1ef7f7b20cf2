"""Attack base class: eval-mode BatchNorm while attacking, mode restored afterwards.

Also the pieces every attack shares: per-example random streams (so an evaluation gives
the same numbers whatever its batch size), best-iterate tracking, the losses, and a
side channel for flags an attack raises (AutoAttack's warnings).
"""

from __future__ import annotations

import contextvars
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.modes import module_mode
from pipeline.core.seeds import derive_seed

BN_MODES = ("eval", "train")

# Per-call state (not attack state: attack objects are frozen and shared).
_STREAMS: contextvars.ContextVar = contextvars.ContextVar("attack_streams", default=None)
_FLAGS: contextvars.ContextVar = contextvars.ContextVar("attack_flags", default=None)
_SEED: contextvars.ContextVar = contextvars.ContextVar("attack_seed", default=0)


class Attack(ABC):
    """Base for attacks. Subclasses implement ``perturb(model, x, y)``.

    The model is an argument, never stored state, so one attack object serves many
    models. ``bn_mode`` says whether BatchNorm (and dropout) run in eval mode (the
    default, and the only sound choice for evaluation) or train mode while the attack
    runs; the model's previous mode is restored either way. Gradients are taken with
    respect to the input only; parameter ``.grad`` is left untouched.

    ``__call__(model, x, y, index=None, seed=0)``: when ``index`` (dataset indices,
    ``[N]``) is given, every random draw of the attack (:meth:`uniform`) comes from a
    per-example generator seeded by ``(seed, index[i])``, so example ``i`` gets the same
    noise whatever batch it sits in. Without ``index`` the global torch RNG is used.
    """

    bn_mode: str = "eval"

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        index: torch.Tensor | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, not {self.bn_mode!r}")
        streams = None
        if index is not None:
            if index.shape != (x.shape[0],):
                raise ValueError(f"index must have shape [{x.shape[0]}], got {tuple(index.shape)}")
            streams = [torch.Generator().manual_seed(derive_seed(seed, i))
                       for i in index.tolist()]
        token, seed_token = _STREAMS.set(streams), _SEED.set(int(seed))
        try:
            return self.perturb_with_mode(model, x, y)
        finally:
            _STREAMS.reset(token)
            _SEED.reset(seed_token)

    def perturb_with_mode(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``perturb`` with the BN mode set and restored, in the current call's streams.

        Attacks that wrap another attack (transfer) call this on the inner one, so the
        inner attack draws from the outer call's per-example streams.
        """
        with module_mode(model, self.bn_mode == "train"), torch.enable_grad():
            x_adv = self.perturb(model, x.detach(), y.detach())
        return x_adv.detach()

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attack proper, run with input gradients enabled and the BN mode set."""

    @staticmethod
    def call_seed() -> int:
        """The ``seed`` of the current call (for attacks that seed a library themselves)."""
        return _SEED.get()

    @staticmethod
    def uniform(x: torch.Tensor) -> torch.Tensor:
        """U[0, 1) noise shaped like ``x``; per-example streams when the call has ``index``."""
        streams = _STREAMS.get()
        if streams is None or len(streams) != x.shape[0]:
            return torch.rand(x.shape, device=x.device, dtype=x.dtype)
        u = torch.stack([torch.rand(x.shape[1:], generator=g) for g in streams])
        return u.to(x.device, x.dtype)


@contextmanager
def collect_flags() -> Iterator[list[str]]:
    """Collect the flags raised with :func:`raise_flag` during the block (in order)."""
    flags: list[str] = []
    token = _FLAGS.set(flags)
    try:
        yield flags
    finally:
        _FLAGS.reset(token)


def raise_flag(message: str) -> None:
    """Record a warning about the evaluation's validity (kept in the results' ``flags``)."""
    flags = _FLAGS.get()
    if flags is not None and message not in flags:
        flags.append(message)


class BestIterate:
    """Per-example best iterate: a misclassified one first, else the highest loss.

    ``mode``: ``misclassified`` (evaluation) or ``loss`` (highest loss only).
    """

    def __init__(self, x: torch.Tensor, mode: str = "misclassified"):
        self.x = x.clone()
        self.mode = mode
        self.loss: torch.Tensor | None = None
        self.fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def update(self, x_adv: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
               loss: torch.Tensor) -> None:
        """Offer a candidate iterate with its logits and per-example loss."""
        loss = loss.detach()
        if self.mode == "misclassified":
            fooled = logits.detach().argmax(1) != y
        else:
            fooled = self.fooled
        if self.loss is None:
            better = torch.ones_like(fooled)
        else:
            better = (fooled & ~self.fooled) | ((fooled == self.fooled) & (loss > self.loss))
        self.x = torch.where(better[:, None, None, None], x_adv.detach(), self.x)
        self.loss = loss if self.loss is None else torch.where(better, loss, self.loss)
        self.fooled = self.fooled | (fooled & better)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example C&W margin ``max_{j != y} z_j - z_y`` (larger = more adversarial)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return other.amax(1) - true


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross entropy."""
    return F.cross_entropy(logits, y, reduction="none")


LOSSES = {"ce": ce_loss, "cw": margin_loss}
