"""A precompute SIGKILLed while it creates a source (group written, provenance attrs not
yet) is recognised by the rerun as its own unfinished creation and recreated; a source
with provenance or data is never taken for one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
from salcache_helpers import make_store, store_bytes

from pipeline.cache.saliency_store import (
    PAUSE_ENV,
    PROVENANCE_KEYS,
    ProvenanceMismatchError,
    create_source,
    source_provenance,
    unfinished_creation,
)
from pipeline.stages.precompute_saliency import PrecomputeConfig, run_precompute

REPO = Path(__file__).resolve().parents[2]
SOURCE = "teach_a.grad"


def _salpipe() -> list[str]:
    exe = Path(sys.executable).with_name("salpipe")
    if exe.is_file():
        return [str(exe)]
    return [sys.executable, "-c", "import sys, cli; sys.exit(cli.main())"]


def _args(store, teacher) -> list[str]:
    return ["--device", "cpu", "precompute-saliency", "--store", store, "--teacher",
            str(teacher), "--method", "grad", "--batch-size", "8", "--workers", "1"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _group_attrs(store: str) -> dict | None:
    meta = Path(store, "train/saliency", SOURCE, "zarr.json")
    return json.loads(meta.read_text()).get("attributes", {}) if meta.is_file() else None


def _kill_at(store, teacher, point: str) -> None:
    """Run the CLI until it reports the pause ``point``, then SIGKILL it there."""
    proc = subprocess.Popen([*_salpipe(), *_args(store, teacher)], cwd=REPO,
                            env=_env(**{PAUSE_ENV: point}), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    timer = threading.Timer(180, proc.kill)  # never hang the suite
    timer.start()
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.strip() == f"{PAUSE_ENV} {point}":
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        timer.cancel()
    assert proc.returncode == -signal.SIGKILL
    assert any(PAUSE_ENV in s for s in seen), "".join(seen[-20:])


@pytest.mark.parametrize("point", ["source_group", "source_created"])
def test_kill_inside_create_source_then_rerun_is_byte_identical(tmp_path, teacher, point):
    ref = make_store(str(tmp_path / "ref.zarr"), chunk=16)
    run_precompute(ref, PrecomputeConfig(teacher=teacher, method="grad", batch_size=8))
    store = make_store(str(tmp_path / "killed.zarr"), chunk=16)
    _kill_at(store, teacher, point)
    attrs = _group_attrs(store)
    assert attrs is not None and not any(k in attrs for k in PROVENANCE_KEYS)  # the window
    arrays = {p.parent.name for p in Path(store, "train/saliency", SOURCE).glob("*/zarr.json")}
    assert arrays == (set() if point == "source_group" else {"map", "sign", "mask"})

    rerun = subprocess.run([*_salpipe(), *_args(store, teacher)], cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "computed 6 of 6 chunks" in rerun.stdout
    assert "left unfinished by a killed run" in rerun.stderr
    assert store_bytes(Path(store)) == store_bytes(Path(ref))
    a, b = (source_provenance(s, "train", SOURCE) for s in (store, ref))
    for key in (*PROVENANCE_KEYS, "chunks_done", "chunk_digests", "complete"):
        assert a[key] == b[key], key


def _bare_source(store: str) -> zarr.Group:
    """A source group as a kill before the attrs leaves it (arrays, no provenance)."""
    g = zarr.open_group(store, mode="r+")
    return create_source(g, "train", SOURCE, shape=tuple(g["train/images"].shape),
                         chunk=g["train/images"].chunks[0], with_bbox=False, attrs={})


def test_unfinished_creation_only_without_provenance_and_data(store):
    grp = _bare_source(store)
    assert unfinished_creation(grp)
    grp["map"][0:1] = np.ones((1, 3, 16, 16), np.float16)  # a chunk written: data
    assert not unfinished_creation(grp)
    grp = _bare_source(store)
    assert unfinished_creation(grp)
    grp.update_attributes({"chunks_done": [0]})
    assert not unfinished_creation(grp)
    grp.update_attributes({"chunks_done": [], "method": "grad"})
    assert not unfinished_creation(grp)


def test_source_with_data_but_no_provenance_is_never_deleted(store, teacher):
    grp = _bare_source(store)
    grp["map"][0:32] = np.ones((32, 3, 16, 16), np.float16)
    before = store_bytes(Path(store))
    with pytest.raises(ProvenanceMismatchError,
                       match=r"train/saliency/teach_a\.grad without provenance.*--overwrite"):
        run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad"))
    assert store_bytes(Path(store)) == before
    res = run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad"),
                         overwrite=True)
    assert res["status"] == "computed" and sorted(res["computed"]) == [0, 1, 2]


def test_source_with_provenance_is_kept_and_resumed(store, teacher):
    run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad"))
    g = zarr.open_group(store, mode="r+")
    grp = g[f"train/saliency/{SOURCE}"]
    grp.update_attributes({"chunks_done": [0, 2], "complete": False})
    res = run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad"))
    assert res["computed"] == [1]


def test_source_that_lost_an_array_is_an_error(store, teacher):
    run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad"))
    g = zarr.open_group(store, mode="r+")
    del g[f"train/saliency/{SOURCE}/sign"]
    with pytest.raises(ValueError, match=r"teach_a\.grad has lost its array\(s\) sign.*--overwrite"):
        run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad"))
