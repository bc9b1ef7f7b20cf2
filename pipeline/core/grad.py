"""Autograd helpers shared by the defences and their evaluation."""

from __future__ import annotations

import torch


class _StraightThrough(torch.autograd.Function):
    """Forward ``value``; backward: the incoming gradient goes to ``surrogate``."""

    @staticmethod
    def forward(ctx, value, surrogate):
        return value.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def straight_through(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, ``surrogate``'s gradient in the backward pass.

    The forward result is exactly ``value`` (not ``surrogate + (value - surrogate)``,
    which may round), so a prediction made through it equals the one it stands for.

    Shape:
        value, surrogate: the same shape; returns that shape.
    """
    if value.shape != surrogate.shape:
        raise ValueError(f"straight_through: shapes differ, {tuple(value.shape)} vs "
                         f"{tuple(surrogate.shape)}")
    return _StraightThrough.apply(value, surrogate)
