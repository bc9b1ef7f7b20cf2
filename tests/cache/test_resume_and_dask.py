"""A precompute killed by SIGKILL resumes byte-identically; Dask clusters agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from salcache_helpers import make_store, store_bytes

from pipeline.cache.saliency_store import (
    PROVENANCE_KEYS,
    read_saliency,
    source_provenance,
)
from pipeline.stages.precompute_saliency import PrecomputeConfig, run_precompute

REPO = Path(__file__).resolve().parents[2]
# Runs the real CLI in a child process; each chunk task sleeps after computing, so the
# parent can SIGKILL it while some but not all chunks are recorded.
CHILD = """
import sys, time
import pipeline.stages.saliency_chunks as cs
import pipeline.stages.precompute_saliency as pc
real = cs.compute_chunk
def slow(job):
    out = real(job)
    time.sleep(0.4)
    return out
pc.compute_chunk = slow
import cli
cli.main(sys.argv[1:])
"""


def _attrs(store: str, source: str) -> dict:
    meta = Path(store, "train/saliency", source, "zarr.json")
    try:
        return json.loads(meta.read_text()).get("attributes", {})
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _cli_args(store, teacher):
    return ["precompute-saliency", "--store", store, "--teacher", str(teacher),
            "--method", "grad", "--batch-size", "8", "--workers", "1"]


def test_sigkill_resume_is_byte_identical(tmp_path, teacher):
    ref = make_store(str(tmp_path / "ref.zarr"), chunk=16)
    run_precompute(ref, PrecomputeConfig(teacher=teacher, method="grad", batch_size=8))
    store = make_store(str(tmp_path / "killed.zarr"), chunk=16)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    seen = []
    for _ in range(2):  # kill twice at different points
        proc = subprocess.Popen([sys.executable, "-c", CHILD, *_cli_args(store, teacher)],
                                cwd=REPO, env=env, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                done = _attrs(store, "teach_a.grad").get("chunks_done", [])
                if len(done) > len(seen):
                    break
                time.sleep(0.01)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        attrs = _attrs(store, "teach_a.grad")
        assert not attrs["complete"] and len(attrs["chunks_done"]) > len(seen)
        seen = attrs["chunks_done"]
    res = run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad", batch_size=8))
    assert sorted(res["computed"]) == [i for i in range(6) if i not in seen]
    assert store_bytes(Path(store)) == store_bytes(Path(ref))
    a, b = (source_provenance(s, "train", "teach_a.grad") for s in (store, ref))
    for key in (*PROVENANCE_KEYS, "chunks_done", "chunk_digests", "complete"):
        assert a[key] == b[key], key


@pytest.mark.parametrize("processes", [False])
def test_two_worker_cluster_gives_the_same_cache(tmp_path, teacher, processes):
    from distributed import LocalCluster

    ref = make_store(str(tmp_path / "ref.zarr"))
    run_precompute(ref, PrecomputeConfig(teacher=teacher, method="grad", workers=1))
    url = make_store(str(tmp_path / "dask.zarr"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                      dashboard_address=None) as cluster:
        res = run_precompute(url, PrecomputeConfig(teacher=teacher, method="grad"),
                             scheduler=cluster.scheduler_address)
    assert sorted(res["computed"]) == [0, 1, 2]
    assert store_bytes(Path(url)) == store_bytes(Path(ref))
    for kind in ("map", "sign", "mask"):
        np.testing.assert_array_equal(read_saliency(url, "train", "teach_a.grad", kind),
                                      read_saliency(ref, "train", "teach_a.grad", kind))


def test_threads_and_synchronous_agree(tmp_path, teacher):
    urls = []
    for name, sched, workers in (("a", None, 2), ("b", "synchronous", None)):
        urls.append(make_store(str(tmp_path / f"{name}.zarr")))
        run_precompute(urls[-1], PrecomputeConfig(teacher=teacher, method="grad",
                                                  batch_size=16, workers=workers),
                       scheduler=sched)
    assert store_bytes(Path(urls[0])) == store_bytes(Path(urls[1]))
