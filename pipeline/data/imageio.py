"""Decoding and geometry for file-based data sets: images, masks and boxes, resized as one.

``fit="resize"`` squashes the image to ``R x R``; ``fit="crop"`` scales the short side to
``R`` and keeps the central square. Boxes come in as continuous pixel coordinates
``(x0, y0, x1, y1)`` with exclusive ends (an inclusive corner box ``(a, b, c, d)`` is
``(a, b, c + 1, d + 1)``); they leave as inclusive integer corners in the output image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.data.base import DataError

Fit = Literal["resize", "crop"]

# A box may overshoot its image by 2 px plus 2 % of the side before it is an error (it
# is then clipped): real annotations do overshoot a little (CUB image 960 by 2 px).
BOX_TOLERANCE_PX, BOX_TOLERANCE_FRAC = 2.0, 0.02


def open_image(path: Path, what: str = "image") -> Image.Image:
    """Open and fully decode ``path``; a missing or corrupt file is a :class:`DataError`.

    ``what`` ("image", "mask") names the kind of file in the message.
    """
    try:
        img = Image.open(path)
        img.load()  # decode now, so truncated files fail here, naming the file
    except FileNotFoundError:
        raise DataError(f"{what} file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot decode {what} {path}: {e}") from None
    return img


def _geometry(size: tuple[int, int], res: int, fit: Fit) -> tuple[float, float, int, int, tuple]:
    """(scale_x, scale_y, resized_w, resized_h, crop box) for an image of ``size`` (w, h)."""
    w, h = size
    if fit == "resize":
        return res / w, res / h, res, res, (0, 0, res, res)
    s = res / min(w, h)
    rw, rh = max(res, round(w * s)), max(res, round(h * s))
    ox, oy = (rw - res) // 2, (rh - res) // 2
    return rw / w, rh / h, rw, rh, (ox, oy, ox + res, oy + res)


def decode_image(path: Path, res: int, fit: Fit) -> tuple[np.ndarray, tuple[int, int]]:
    """``uint8 [3,res,res]`` RGB image and the original ``(w, h)``."""
    img = open_image(path)
    size = img.size
    if img.mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if img.mode == "P" else img.convert("RGB")
    _, _, rw, rh, crop = _geometry(size, res, fit)
    if (rw, rh) != size:
        img = img.resize((rw, rh), Image.BILINEAR)
    if crop != (0, 0, rw, rh):
        img = img.crop(crop)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1), size


def threshold_mask(arr: np.ndarray) -> np.ndarray:
    """Binary mask rule for grey/alpha masks: value > 127."""
    return arr > 127


def decode_mask(
    path: Path,
    image_path: Path,
    size: tuple[int, int],
    res: int,
    fit: Fit,
    rule: Callable[[np.ndarray], np.ndarray] = threshold_mask,
) -> np.ndarray:
    """``bool [res,res]`` mask from ``path``; it must have the image's size ``(w, h)``.

    The rule sees the raw values: the alpha channel of an RGBA/LA mask, the palette
    indices of a ``P`` mask, otherwise the grey level.
    """
    img = open_image(path, "mask")
    if img.size != size:
        raise DataError(
            f"mask {path} is {img.size[0]}x{img.size[1]} but its image {image_path} is "
            f"{size[0]}x{size[1]} (width x height)"
        )
    if img.mode in ("RGBA", "LA"):
        arr = np.asarray(img.getchannel("A"))
    elif img.mode in ("P", "L", "1", "I", "I;16"):
        arr = np.asarray(img)
    else:
        arr = np.asarray(img.convert("L"))
    plane = Image.fromarray(rule(arr).astype(np.uint8) * 255)
    _, _, rw, rh, crop = _geometry(size, res, fit)
    if (rw, rh) != size:
        plane = plane.resize((rw, rh), Image.NEAREST)
    if crop != (0, 0, rw, rh):
        plane = plane.crop(crop)
    return np.asarray(plane) > 0


def transform_box(
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    res: int,
    fit: Fit,
    where: str,
) -> np.ndarray:
    """Map a continuous box on an image of ``size`` to inclusive corners at ``res``.

    Args:
        box: ``(x0, y0, x1, y1)`` with exclusive ends, original pixels.
        size: original ``(w, h)``.
        where: names the annotation (file and line) in errors.

    Returns:
        ``int16 [4]`` ``(x0, y0, x1, y1)`` inclusive, clipped to ``[0, res - 1]``.
    """
    x0, y0, x1, y1 = box
    w, h = size
    tx = BOX_TOLERANCE_PX + BOX_TOLERANCE_FRAC * w
    ty = BOX_TOLERANCE_PX + BOX_TOLERANCE_FRAC * h
    if not (-tx <= x0 < x1 <= w + tx and -ty <= y0 < y1 <= h + ty):
        raise DataError(
            f"box {tuple(round(v, 2) for v in box)} (x0, y0, x1, y1) lies outside its "
            f"{w}x{h} image or is empty: {where}"
        )
    sx, sy, _, _, (ox, oy, _, _) = _geometry(size, res, fit)
    out = [
        math.floor(x0 * sx + 1e-6) - ox,
        math.floor(y0 * sy + 1e-6) - oy,
        math.ceil(x1 * sx - 1e-6) - 1 - ox,
        math.ceil(y1 * sy - 1e-6) - 1 - oy,
    ]
    out = np.clip(np.array(out), 0, res - 1)
    out[2], out[3] = max(out[0], out[2]), max(out[1], out[3])
    return out.astype(np.int16)
