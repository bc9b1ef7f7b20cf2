"""``salpipe cache verify``: find missing, corrupt and wrong chunks of saliency sources.

Three checks per source, cheapest first:

1. every chunk file of every array exists (a lost file would read back as zeros);
2. every finished chunk decodes and its decoded arrays hash to the digest recorded when
   it was written (bit rot, truncated or overwritten files);
3. ``sample`` finished chunks are recomputed with the recorded teacher, method, params,
   target and seed, and compared with what is stored (a teacher file swapped under the
   same name, or a bug). Maps are compared with a float16-level tolerance so that a
   cache made on a GPU verifies on a CPU; sign and mask bits may differ only where the
   map is within that tolerance of the decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import fsspec
import numpy as np

from pipeline.cache import layout
from pipeline.cache.saliency_store import (
    ANNOTATION,
    KINDS,
    MissingSourceError,
    _local_path,
    check_split,
    chunk_count,
    chunk_digest,
    list_sources,
    open_group,
    read_chunk,
    splits_of,
)
from pipeline.cache.store import get_node, has_node
from pipeline.models.checkpoint import checkpoint_sha256
from pipeline.stages.saliency_chunks import ChunkJob, compute_arrays

log = logging.getLogger(__name__)
# Share of bits allowed to differ in a recomputed sign/mask plane (cross-device noise).
BIT_TOLERANCE = 1e-3


@dataclass
class VerifyReport:
    """Problems found (empty when the cache is sound) and what was checked."""

    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _missing_files(url: str, arr, index: int) -> bool:

    fs, root = fsspec.core.url_to_fs(_local_path(url))
    ndim = len(arr.shape)
    key = arr.metadata.encode_chunk_key((index,) + (0,) * (ndim - 1))
    return not fs.exists(f"{root.rstrip('/')}/{arr.path}/{key}")


def _check_stored(url: str, name: str, grp, report: VerifyReport) -> list[int]:
    """Checks 1 and 2; returns the finished chunks that passed them."""
    if not has_node(grp, "map"):
        report.problems.append(f"{name}: has no map array (recompute the source with "
                               "salpipe precompute-saliency --overwrite)")
        return []
    n, b = grp["map"].shape[0], grp["map"].chunks[0]
    done = set(grp.attrs.get("chunks_done", []))
    digests = grp.attrs.get("chunk_digests", {})
    if not grp.attrs.get("complete", False):
        report.problems.append(
            f"{name}: incomplete ({len(done)} of {chunk_count(n, b)} chunks done)")
    good = []
    for i in sorted(done):
        lost = [k for k in KINDS
                if has_node(grp, k) and _missing_files(url, get_node(grp, k), i)]
        if lost:
            report.problems.append(f"{name}: chunk {i} missing ({', '.join(lost)})")
            continue
        try:
            arrays = read_chunk(grp, i)
        except Exception as e:  # noqa: BLE001  (any codec error means corruption)
            cause = e.__cause__ or e  # the codec's own words
            report.problems.append(f"{name}: chunk {i} corrupt (cannot decode: {cause})")
            continue
        want = digests.get(str(i))
        if want is None:
            report.problems.append(f"{name}: chunk {i} has no recorded digest")
        elif chunk_digest(arrays) != want:
            report.problems.append(f"{name}: chunk {i} corrupt (content digest differs)")
        else:
            good.append(i)
    return good


def _compare(name: str, i: int, stored: dict, fresh: dict) -> list[str]:
    """Differences between a stored and a recomputed chunk beyond cross-device noise."""
    a = stored["map"].astype(np.float32)
    f = fresh["map"].astype(np.float32)
    tol = 1e-3 * max(float(np.abs(f).max()), 1e-12) + 1e-6
    out = []
    if a.shape != f.shape or np.abs(a - f).max() > tol:
        out.append(f"{name}: chunk {i} map differs from a recomputation "
                   f"(max |diff| {np.abs(a - f).max():.3g} > {tol:.3g})")
    for kind in ("sign", "mask"):
        diff = np.unpackbits(stored[kind] ^ fresh[kind]).mean()
        if diff > BIT_TOLERANCE:
            out.append(f"{name}: chunk {i} {kind} differs from a recomputation "
                       f"({diff:.2%} of bits)")
    if "bbox" in fresh and not np.array_equal(stored.get("bbox"), fresh["bbox"]):
        out.append(f"{name}: chunk {i} bbox differs from a recomputation")
    return out


def _recompute(url, split, source, grp, chunks, device, report, teacher_dir) -> None:
    attrs = dict(grp.attrs)
    if chunks and not attrs.get("method"):
        report.problems.append(f"{split}/{source}: no method recorded (provenance attrs "
                               "missing), cannot recompute")
        return
    teacher = attrs.get("teacher")
    teacher_dir = str(teacher_dir) if teacher_dir else attrs.get("teacher_dir")
    if teacher != ANNOTATION and not teacher_dir:
        report.problems.append(f"{split}/{source}: no teacher_dir recorded, cannot recompute")
        return
    if teacher != ANNOTATION and chunks:

        try:
            sha = checkpoint_sha256(teacher_dir)
        except FileNotFoundError as e:
            report.problems.append(f"{split}/{source}: cannot recompute: {e}")
            return
        if sha != attrs.get("teacher_sha256"):
            report.problems.append(
                f"{split}/{source}: teacher {teacher_dir} now has sha256 {sha[:12]}..., the "
                f"source was made with {str(attrs.get('teacher_sha256'))[:12]}...; "
                "cannot be recomputed (pass --teacher with the original checkpoint)")
            return
    for i in chunks:
        job = ChunkJob(
            url=url, split=split, source=source, index=i, method=attrs["method"],
            params=attrs.get("params") or {}, target=attrs.get("target"),
            teacher=None if teacher == ANNOTATION else teacher_dir,
            teacher_sha256=attrs.get("teacher_sha256"),
            batch_size=int(attrs.get("batch_size") or 128), device=device,
        )
        try:
            fresh = compute_arrays(job)
        except (FileNotFoundError, ValueError) as e:
            report.problems.append(f"{split}/{source}: chunk {i} cannot be recomputed: {e}")
            continue
        report.problems.extend(_compare(f"{split}/{source}", i, read_chunk(grp, i), fresh))
        report.checked.append(f"{split}/{source}: chunk {i} recomputed")


def run_verify(
    store: str, split: str | None = None, source: str | None = None, *,
    sample: int = 1, seed: int = 0, device: str = "cpu", teacher: str | None = None,
) -> VerifyReport:
    """Verify every (or one) saliency source of every (or one) split of ``store``.

    Args:
        store: path or fsspec URL of the data set store.
        split, source: restrict the check (None: all). A ``source`` without ``split`` is
            checked in every split that holds it.
        sample: finished chunks per source to recompute (0: only the stored checks).
        seed: which chunks are sampled.
        device: torch device for recomputation.
        teacher: the teacher run directory, when it moved since precompute (its sha256
            must still match the recorded one).

    Returns:
        a :class:`VerifyReport`; ``report.ok`` is False when anything is wrong.

    Raises:
        KeyError: ``split`` is not in the store (names its splits).
        MissingSourceError: ``source`` is in none of the splits searched (names them and
            the sources each holds).
    """
    store = str(store)
    group = open_group(store, "r")
    if split:
        check_split(group, split)
    splits = [split] if split else splits_of(group)
    if source:
        layout.check_source(source)
        held = {sp: list_sources(group, sp) for sp in splits}
        splits = [sp for sp in splits if source in held[sp]]
        if not splits:
            have = "; ".join(f"{sp}: {', '.join(names) or 'none'}" for sp, names in held.items())
            raise MissingSourceError(
                f"saliency source {source!r} is not in store {store}: searched split(s) "
                f"{', '.join(held) or 'none'} (sources there: {have or 'none'}); check "
                "--source and --split, or compute it with salpipe precompute-saliency")
    report = VerifyReport()
    rng = np.random.default_rng(seed)
    for sp in splits:
        names = [source] if source else list_sources(group, sp)
        for name in names:
            try:
                grp = get_node(group, f"{sp}/saliency/{name}")
            except ValueError as e:  # damaged metadata: a finding, not the end of verify
                report.problems.append(f"{sp}/{name}: {e}")
                continue
            try:
                good = _check_stored(store, f"{sp}/{name}", grp, report)
            except ValueError as e:  # damaged array metadata
                report.problems.append(f"{sp}/{name}: {e}")
                continue
            report.checked.append(f"{sp}/{name}: {len(good)} chunks intact")
            picks = sorted(rng.choice(good, size=min(sample, len(good)), replace=False)
                           .tolist()) if good and sample > 0 else []
            _recompute(store, sp, name, grp, picks, device, report, teacher)
    if not report.checked and not report.problems:
        report.problems.append(f"store {store} has no saliency sources to verify")
    for p in report.problems:
        log.error("%s", p)
    return report
