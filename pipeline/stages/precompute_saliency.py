"""``salpipe precompute-saliency``: fill one saliency source of a split, resumably.

The driver creates (or checks) the source group, then runs one Dask task per missing
chunk (:func:`pipeline.stages.saliency_chunks.compute_chunk`) on the threaded scheduler
or on a ``dask.distributed`` cluster. After each task finishes, the driver appends its
index to the ``chunks_done`` attr, so a run killed at any point resumes with the chunks
not yet recorded; recomputing a chunk writes the same bytes, so a resumed cache is
byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dask.local
import dask.threaded
import torch
from dask.callbacks import Callback
from tqdm import tqdm

import pipeline
from pipeline.cache import layout
from pipeline.cache.saliency_store import (
    ANNOTATION,
    PROVENANCE_KEYS,
    ProvenanceMismatchError,
    annotation_provenance,
    chunk_count,
    create_source,
    open_group,
    provenance_differences,
    split_array,
    unfinished_creation,
)
from pipeline.cache.store import StoreError, get_node, has_node
from pipeline.config import build_method, to_dict
from pipeline.config.sweep import DEFAULT_TARGET, SALIENCY_TARGETS
from pipeline.models.checkpoint import checkpoint_sha256, load_network
from pipeline.saliency import SALIENCY
from pipeline.stages.saliency_chunks import ChunkJob, compute_chunk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecomputeConfig:
    """What to compute. ``teacher``/``method`` are None for ``annotation.*`` sources.

    Args:
        split: data set split (``train``, ``test``, ``val``).
        teacher: run directory of the teacher checkpoint.
        method: saliency registry name (``gbp``, ``grad``, ...).
        params: the method's hyperparameters (validated by its dataclass).
        target: ``label`` (true class) or ``pred`` (the teacher's prediction).
        source: source name; default ``<teacher dir name>.<method>``.
        batch_size: images per attribution batch (chunks are split into batches).
        workers: threads of the local scheduler (None: Dask's default).
    """

    split: str = "train"
    teacher: Path | None = None
    method: str | None = None
    params: dict = field(default_factory=dict)
    target: str = DEFAULT_TARGET
    source: str | None = None
    batch_size: int = 128
    workers: int | None = None


def teacher_dir(teacher: Path | str) -> Path:
    """The run directory of a teacher given as its directory or its ``model.pt``."""
    path = Path(teacher).resolve()
    return path.parent if path.is_file() else path


def source_name(cfg: PrecomputeConfig) -> str:
    """The source name: ``cfg.source`` or ``<teacher dir name>.<method>``."""
    if cfg.source:
        return layout.check_source(cfg.source)
    if cfg.teacher is None or cfg.method is None:
        raise ValueError("give --source annotation.<mask|bbox>, or --teacher and --method")
    return layout.check_source(f"{teacher_dir(cfg.teacher).name}.{cfg.method}")


def _provenance(cfg: PrecomputeConfig, source: str, group, store: str) -> dict:
    """The provenance attrs this run would write (validates method, params, target)."""

    fingerprint = group.attrs.get("fingerprint")
    origin, _, kind = source.partition(".")
    if origin == ANNOTATION:
        if cfg.teacher is not None or cfg.method is not None:
            raise ValueError(
                f"source {source!r} is built from annotations; drop --teacher/--method")
        if kind not in ("mask", "bbox"):
            raise ValueError(
                f"annotation sources are annotation.mask and annotation.bbox, not {source!r}")
        ann = f"{cfg.split}/annotations/{kind}"
        if not has_node(group, ann):
            raise ValueError(
                f"store {store} (data set {group.attrs.get('dataset')!r}) has no {ann}; "
                f"source {source!r} needs a data set with {'masks' if kind == 'mask' else 'boxes'}"
            )
        return annotation_provenance(group, kind)
    if cfg.teacher is None or cfg.method is None:
        raise ValueError(f"source {source!r} needs --teacher and --method")

    method = build_method(SALIENCY, cfg.method, cfg.params, f"saliency {cfg.method}")
    if cfg.target not in SALIENCY_TARGETS:
        raise ValueError(f"target must be 'label' or 'pred', not {cfg.target!r}")
    teacher = Path(cfg.teacher)
    # the whole checkpoint is read once here (sidecar, sha256, weights), so a truncated,
    # unsafe or mismatched teacher is refused before the source is created
    _, meta = load_network(teacher, expect_dataset_fingerprint=fingerprint)
    sha = meta.get("sha256") or checkpoint_sha256(teacher)
    return {"method": cfg.method, "params": to_dict(method), "target": cfg.target,
            "teacher": teacher_dir(teacher).name, "teacher_sha256": sha,
            "dataset_fingerprint": fingerprint,
            "schema_version": layout.SCHEMA_VERSION}


def _prepare_source(group, cfg, source, prov, store, overwrite):
    """The source group, after creating it, checking its provenance or clearing it.

    A group left by a run killed inside :func:`create_source` (no provenance attrs, no
    finished or written chunk: :func:`unfinished_creation`) is this command's own
    unfinished work and is recreated; a group with provenance or data never is.
    """
    path = layout.saliency_group(cfg.split, source)
    if overwrite and _exists_or_damaged(group, path):
        log.info("--overwrite: deleting %s", path)
        # drop the attrs first: a run killed during the delete leaves a group that
        # no later run takes for a finished source
        try:
            get_node(group, path).attrs.put({})
        except StoreError:
            pass  # damaged metadata: deleted below all the same
        del group[path]
    if has_node(group, path):
        grp = get_node(group, path)
        if unfinished_creation(grp):
            log.warning("%s: left unfinished by a killed run (no provenance, no chunk "
                        "written); creating it again", path)
            del group[path]
        else:
            _check_existing(grp, path, prov, store, _has_bbox(cfg, source))
            return grp
    images = split_array(group, cfg.split, "images")
    attrs = {**prov, "salpipe_version": pipeline.__version__, "batch_size": cfg.batch_size,
             "teacher_dir": None if cfg.teacher is None else str(teacher_dir(cfg.teacher)),
             "created": datetime.now(UTC).isoformat(timespec="seconds")}
    return create_source(group, cfg.split, source, shape=tuple(images.shape),
                         chunk=images.chunks[0], with_bbox=_has_bbox(cfg, source), attrs=attrs)


def _exists_or_damaged(group, path: str) -> bool:
    try:
        return has_node(group, path)
    except StoreError:
        return True


def _check_existing(grp, path: str, prov: dict, store: str, with_bbox: bool) -> None:
    """Refuse to resume a source of other provenance, or one that lost its arrays."""
    attrs = dict(grp.attrs)
    diffs = provenance_differences(attrs, prov)
    if diffs and not any(k in attrs for k in PROVENANCE_KEYS):
        raise ProvenanceMismatchError(
            f"store {store} already has {path} without provenance attrs but with "
            "written or finished chunks (an interrupted --overwrite, or not written by salpipe "
            "precompute-saliency); rerun with --overwrite to recompute it, or use "
            "another --source name")
    if diffs:
        raise ProvenanceMismatchError(
            f"store {store} already has {path} made with other provenance: "
            + "; ".join(diffs) + ". Use another --source name, or --overwrite to recompute."
        )
    lost = [k for k in ("map", "sign", "mask", "bbox")[:4 if with_bbox else 3]
            if not has_node(grp, k)]
    if lost:
        raise ValueError(
            f"store {store}: {path} has lost its array(s) {', '.join(lost)}; rerun with "
            "--overwrite to recompute the source")


def _has_bbox(cfg: PrecomputeConfig, source: str) -> bool:
    if source == f"{ANNOTATION}.bbox":
        return True
    if source.startswith(f"{ANNOTATION}."):
        return False

    return hasattr(build_method(SALIENCY, cfg.method, cfg.params, "saliency"), "boxes")


def run_precompute(
    store: str | Path, cfg: PrecomputeConfig, *, device: str = "cpu",
    scheduler: str | None = None, overwrite: bool = False,
) -> dict:
    """Compute the saliency source ``cfg`` describes into ``store``, resuming if possible.

    Args:
        store: the data set store (path or fsspec URL).
        cfg: what to compute.
        device: torch device for the teacher on every worker.
        scheduler: None (threads), ``"synchronous"`` or a ``dask.distributed`` address.
        overwrite: delete an existing source of this name first.

    Returns:
        ``{"source", "status": "computed"|"nothing to do", "computed": [chunk indices],
        "chunks", "seconds"}``.

    Raises:
        ProvenanceMismatchError: the source exists with other provenance (no --overwrite).
        NonFiniteSaliencyError: NaN/inf maps (names the images; finished chunks are kept).
    """
    store = str(store)
    t0 = time.perf_counter()
    group = open_group(store, "r+")
    source = source_name(cfg)
    prov = _provenance(cfg, source, group, store)
    grp = _prepare_source(group, cfg, source, prov, store, overwrite)
    n, b = grp["map"].shape[0], grp["map"].chunks[0]
    total = chunk_count(n, b)
    done = set(grp.attrs.get("chunks_done", []))
    todo = [i for i in range(total) if i not in done]
    summary = {"source": f"{cfg.split}/{source}", "chunks": total, "computed": todo}
    if not todo and grp.attrs.get("complete"):
        log.info("%s: complete, same provenance: nothing to do", summary["source"])
        return {**summary, "status": "nothing to do", "seconds": time.perf_counter() - t0}
    batch = int(grp.attrs.get("batch_size") or cfg.batch_size)
    if batch != cfg.batch_size:
        log.warning("resuming with the recorded batch size %d (asked %d) for identical "
                    "results", batch, cfg.batch_size)
    kind = {k: prov[k] for k in ("method", "params", "target", "teacher_sha256")}
    teacher = None if cfg.teacher is None else str(teacher_dir(cfg.teacher))
    threads = _torch_threads(scheduler, cfg.workers, str(device))
    jobs = [ChunkJob(url=store, split=cfg.split, source=source, index=i, teacher=teacher,
                     batch_size=batch, device=str(device), torch_threads=threads, **kind)
            for i in todo]
    log.info("%s: %d of %d chunks to compute (%d images per chunk)",
             summary["source"], len(todo), total, b)
    digests = dict(grp.attrs.get("chunk_digests", {}))

    def record(index: int, digest: str) -> None:
        done.add(index)
        digests[str(index)] = digest
        ordered = {k: digests[k] for k in sorted(digests, key=int)}
        grp.update_attributes({"chunks_done": sorted(done), "chunk_digests": ordered})

    before = torch.get_num_threads()
    try:
        run_chunks(jobs, record, scheduler=scheduler, workers=cfg.workers)
    finally:
        torch.set_num_threads(before)  # the workers' setting is global in torch
    grp.update_attributes({"complete": True})
    seconds = time.perf_counter() - t0
    log.info("%s: wrote %d chunks in %.1f s", summary["source"], len(todo), seconds)
    return {**summary, "status": "computed", "seconds": seconds}


def _torch_threads(scheduler: str | None, workers: int | None, device: str) -> int | None:
    """Intra-op threads per Dask worker thread on CPU: the thread budget shared out, so that
    workers x torch threads does not oversubscribe them (OpenMP teams fighting over
    cores ran ten times slower here). Distributed workers keep their own setting."""
    if device != "cpu" or scheduler not in (None, "threads"):
        return None
    cores = torch.get_num_threads()  # the process's budget (salpipe --threads)
    return max(1, cores // (workers or cores))


def run_chunks(jobs: list[ChunkJob], record: Callable[[int, str], None], *,
               scheduler: str | None = None, workers: int | None = None) -> None:
    """Run :func:`compute_chunk` for every job through Dask; ``record`` each result
    in the calling thread as soon as its task has finished."""
    if not jobs:
        return

    bar = tqdm(total=len(jobs), desc="chunks", unit="chunk", disable=None)
    try:
        if scheduler is None or scheduler in ("threads", "synchronous"):
            _run_local(jobs, record, bar, scheduler or "threads", workers)
        else:
            _run_distributed(jobs, record, bar, scheduler)
    finally:
        bar.close()


def _run_local(jobs, record, bar, scheduler, workers) -> None:

    tasks = {("chunk", job.index): (compute_chunk, job) for job in jobs}

    class Recorder(Callback):
        # dask's local scheduler calls posttask in the scheduling thread
        def _posttask(self, key, result, dsk, state, worker_id):
            record(*result)
            bar.update()

    kw = {"num_workers": workers} if workers and scheduler == "threads" else {}
    with Recorder():
        getter = dask.threaded.get if scheduler == "threads" else dask.local.get_sync
        getter(tasks, list(tasks), **kw)


def _run_distributed(jobs, record, bar, address) -> None:
    # local: dask.distributed takes about a second to import and only a run given a
    # --scheduler address needs it
    from distributed import Client, as_completed

    with Client(address) as client:
        futures = client.map(compute_chunk, jobs, key=[f"chunk-{j.source}-{j.index}"
                                                      for j in jobs], pure=False)
        for future in as_completed(futures):
            record(*future.result())
            bar.update()
