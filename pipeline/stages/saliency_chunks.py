"""One chunk of a saliency source: compute it, check it, write it (a Dask task).

A task reads one chunk of ``images`` (or annotations), computes the source's arrays for
exactly those images and writes them to the same chunk index of the source's arrays.
Tasks touch disjoint chunks, so any number of threads or workers may run them at once;
only the driver (``precompute.py``) writes the group attrs that record finished chunks.

A chunk's result depends only on the job (images, teacher, method, params, target,
chunk index), never on which worker or thread ran it: methods with a ``seed`` parameter
(SmoothGrad, IG) draw from a generator seeded by ``(their seed, chunk index, batch)``.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.cache.bits import pack_bits, unpack_bits
from pipeline.cache.saliency_store import (  # NonFiniteSaliencyError: readers raise it too
    NonFiniteSaliencyError,
    chunk_digest,
    open_group,
)
from pipeline.cache.store import get_node, has_node, read_array
from pipeline.config import build_method
from pipeline.core.seeds import derive_seed
from pipeline.saliency import SALIENCY, resolve_target
from pipeline.saliency.annotations import (
    weak_saliency_from_boxes,
    weak_saliency_from_masks,
)
from pipeline.saliency.transforms import salience_mask
from pipeline.stages.loading import load_model

FLOAT16_MAX = float(np.finfo(np.float16).max)

# (thread id, teacher dir, sha256, device) -> model; models are loaded once per worker
# thread, and never shared between threads (hook-based methods are not thread-safe).
_MODELS: dict[tuple, object] = {}
_MODELS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ChunkJob:
    """Everything one task needs; picklable, so it travels to distributed workers.

    ``method`` is a registry name for teacher sources, ``mask``/``bbox`` for
    ``annotation.*`` sources (then ``teacher`` is None). ``torch_threads``: intra-op
    threads of the worker thread (None: leave torch's setting); results do not depend
    on it, only the speed does.
    """

    url: str
    split: str
    source: str
    index: int
    method: str
    params: dict = field(default_factory=dict)
    target: str | None = None
    teacher: str | None = None
    teacher_sha256: str | None = None
    batch_size: int = 128
    device: str = "cpu"
    torch_threads: int | None = None


def _model(job: ChunkJob):

    key = (threading.get_ident(), job.teacher, job.teacher_sha256, job.device)
    with _MODELS_LOCK:
        hit = _MODELS.get(key)
    if hit is None:
        hit, meta = load_model(job.teacher, device=job.device)
        if job.teacher_sha256 and meta.get("sha256") not in (None, job.teacher_sha256):
            raise ValueError(
                f"teacher {job.teacher} has sha256 {meta.get('sha256', '')[:12]}..., but "
                f"the source was made with {job.teacher_sha256[:12]}... (another checkpoint)"
            )
        with _MODELS_LOCK:
            _MODELS[key] = hit
    return hit


def _batch_method(method, index: int, batch: int):
    """The method for batch ``batch`` of chunk ``index``: a method with a ``seed``
    (SmoothGrad, IG) gets its own seed per batch, derived from its recorded seed, so
    noise differs between batches yet never depends on the worker or the order."""
    if "seed" not in {f.name for f in dataclasses.fields(method)}:
        return method
    return dataclasses.replace(method, seed=derive_seed(method.seed, index, batch))


def teacher_maps(job: ChunkJob, images: np.ndarray, labels: np.ndarray):
    """Saliency of the job's teacher/method for a chunk.

    Returns:
        ``(map float32 [n,C,H,W], boxes [n,4] or None, the method's salience_mask)``.
    """

    if job.torch_threads:
        torch.set_num_threads(job.torch_threads)
    method = build_method(SALIENCY, job.method, job.params, "saliency")
    model = _model(job)
    device = torch.device(job.device)
    maps, boxes = [], []
    for j, start in enumerate(range(0, images.shape[0], job.batch_size)):
        x = torch.from_numpy(images[start:start + job.batch_size]).to(device).float() / 255
        y = torch.from_numpy(labels[start:start + job.batch_size].astype(np.int64)).to(device)
        target = resolve_target(model, x, y, job.target)
        m = _batch_method(method, job.index, j)
        if hasattr(m, "attribute_and_boxes"):  # one Grad-CAM++ pass gives both
            attr, bx = m.attribute_and_boxes(model, x, target)
            maps.append(attr.cpu())
            boxes.append(torch.as_tensor(bx).cpu())
        else:
            maps.append(m.attribute(model, x, target).cpu())
    boxes = torch.cat(boxes).numpy() if boxes else None
    return torch.cat(maps).numpy(), boxes, getattr(method, "salience_mask", None)


def annotation_maps(job: ChunkJob, group, sl: slice, shape: tuple[int, int, int]):
    """Weak saliency (paper 000 Eq. 10) of a chunk from the store's annotations."""

    c, h, w = shape
    ann = f"{job.split}/annotations"
    dataset = group.attrs.get("dataset", "this data set")
    if job.method == "mask":
        packed = read_array(get_node(group, f"{ann}/mask"), sl)
        has = (read_array(get_node(group, f"{ann}/has_mask"), sl)
               if has_node(group, f"{ann}/has_mask") else None)
        masks = torch.from_numpy(unpack_bits(packed, (h, w)))
        has_t = None if has is None else torch.from_numpy(np.asarray(has, dtype=bool))
        weak = weak_saliency_from_masks(masks, c, has_t, dataset=dataset)
        return weak.numpy(), None, (weak[:, 0] > 0).numpy()
    boxes = read_array(get_node(group, f"{ann}/bbox"), sl).astype(np.int64)
    weak = weak_saliency_from_boxes(torch.from_numpy(boxes), (c, h, w), dataset=dataset)
    return weak.numpy(), boxes, (weak[:, 0] > 0).numpy()


def _name(bad: np.ndarray, start: int, most: int = 50) -> str:
    idx = (np.flatnonzero(bad) + start).tolist()
    more = f" ... ({len(idx)} images in all)" if len(idx) > most else ""
    return f"image indices {idx[:most]}{more}"


def derive_arrays(attr: np.ndarray, boxes: np.ndarray | None, start: int,
                  mask=None) -> dict[str, np.ndarray]:
    """The stored arrays of a chunk from its float32 maps; NaN/inf are errors.

    ``sign`` and ``mask`` come from the float16 map as stored, so readers can rebuild
    them from ``map``: ``sign = map > 0``; ``mask`` is the given bool array (an
    annotation source's object region) or ``mask(map)`` for a callable (the method's
    ``salience_mask``: ``sip_topk``'s top-k set), by default the top-half-mass set of
    the channel-summed |map| (docs/contracts.md).

    Raises:
        NonFiniteSaliencyError: naming the images (``start`` + row) with NaN/inf maps.
    """

    bad = ~np.isfinite(attr).reshape(attr.shape[0], -1).all(1)
    if bad.any():
        raise NonFiniteSaliencyError(f"NaN or inf saliency for {_name(bad, start)}")
    big = np.abs(attr).reshape(attr.shape[0], -1).max(1) > FLOAT16_MAX
    if big.any():
        raise NonFiniteSaliencyError(f"saliency beyond the float16 range for {_name(big, start)}")
    smap = attr.astype(np.float16)
    positive = smap > 0
    if mask is None or callable(mask):
        # float64 sums of float16 values are exact, so the mask does not depend on
        # summation order (batch size, SIMD path)
        mask = (mask or salience_mask)(torch.from_numpy(smap.astype(np.float64)))
        mask = mask.cpu().numpy().astype(bool)
    out = {"map": smap, "sign": pack_bits(positive), "mask": pack_bits(mask)}
    if boxes is not None:
        out["bbox"] = np.asarray(boxes).astype(np.int16)
    return out


def compute_arrays(job: ChunkJob, group=None) -> dict[str, np.ndarray]:
    """The arrays of chunk ``job.index`` (not written); used by the task and by verify."""
    group = open_group(job.url, "r") if group is None else group
    images = get_node(group, f"{job.split}/images")
    b = images.chunks[0]
    sl = slice(job.index * b, min((job.index + 1) * b, images.shape[0]))
    if job.teacher is None:
        attr, boxes, mask = annotation_maps(job, group, sl, images.shape[1:])
    else:
        labels = read_array(get_node(group, f"{job.split}/labels"), sl)
        attr, boxes, mask = teacher_maps(job, read_array(images, sl), labels)
    return derive_arrays(attr, boxes, sl.start, mask)


def compute_chunk(job: ChunkJob) -> tuple[int, str]:
    """Dask task: compute and write chunk ``job.index``; returns ``(index, digest)``."""
    group = open_group(job.url, "r+")
    arrays = compute_arrays(job, group)
    src = group[f"{job.split}/saliency/{job.source}"]
    b = src["map"].chunks[0]
    sl = slice(job.index * b, job.index * b + arrays["map"].shape[0])
    for kind, data in arrays.items():
        src[kind][sl] = data
    return job.index, chunk_digest(arrays)
