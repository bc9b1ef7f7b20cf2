"""Exact parsing of perturbation budgets written as ``"8/255"``.

Budgets are never ``eval``-ed: they are parsed with :class:`fractions.Fraction`.
"""

from __future__ import annotations

from fractions import Fraction


def parse_budget(value: str | float | Fraction, *, field: str = "eps") -> float:
    """Parse ``"8/255"``, ``"0.03"``, ``0`` or a number into a float in [0, 1].

    Raises:
        ValueError: naming ``field`` when the value is not a number or fraction, or is
            outside [0, 1].
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a budget such as '8/255', got {value!r}")
    try:
        if isinstance(value, str):
            # "8/255", "2.5/255", "0.03": each side of the slash is an exact decimal
            num, _, den = value.strip().partition("/")
            frac = Fraction(num) / Fraction(den) if den else Fraction(num)
        else:
            frac = Fraction(value)  # inf: OverflowError, nan: ValueError
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        raise ValueError(f"{field}: expected a finite budget such as '8/255', got "
                         f"{value!r}") from None
    if not 0 <= frac <= 1:
        raise ValueError(f"{field}: budget {value!r} is outside [0, 1] (pixels are in [0, 1])")
    return float(frac)


def format_budget(eps: float) -> str:
    """``8/255`` for multiples of 1/255, else the decimal; used in tables and paths."""
    k = round(eps * 255)
    if abs(k / 255 - eps) < 1e-9:
        return f"{k}/255"
    return f"{eps:g}"
