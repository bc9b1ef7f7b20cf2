"""benchmarks/gpu_check.sh parses its options and plans every step (``--dry-run``), and
every benchmark it runs takes ``--device``."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
BENCHMARKS = ["precompute", "epoch_cost", "stream", "train_speed", "precision"]
STEPS = ["pytest_gpu", *BENCHMARKS, "prepare_data", "train_student", "evaluate_pgd20"]


def _run(*args, **kw):
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, **kw.pop("env", {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


def test_help_names_the_options():
    res = _run("--help")
    assert res.returncode == 0, res.stderr
    for opt in ("--device", "--out", "--quick", "--dry-run", "--time-scale"):
        assert opt in res.stdout


@pytest.mark.parametrize("args, message", [
    (("--device", "tpu"), "--device must be cuda or cpu"),
    (("--bogus",), "unknown option --bogus"),
    (("--device", "cpu", "--time-scale", "x"), "--time-scale must be a positive integer"),
])
def test_bad_options_are_refused(args, message):
    res = _run(*args)
    assert res.returncode == 2 and message in res.stderr


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_dry_run_plans_every_step_into_one_json(tmp_path, device):
    out = tmp_path / "o" / "check.json"
    res = _run("--device", device, "--dry-run", "--out", str(out), "--data", str(tmp_path))
    assert res.returncode == 0, res.stderr
    got = json.loads(out.read_text())
    assert got["dry_run"] is True and got["device"] == device
    assert list(got["steps"]) == STEPS
    assert all(s["status"] == "planned" for s in got["steps"].values())
    assert sum(s["limit_s"] for s in got["steps"].values()) <= 8 * 60 + 60  # capped at 460
    for name in BENCHMARKS:
        assert f"--device {device}" in got["steps"][name]["command"]
    assert "-m gpu" in got["steps"]["pytest_gpu"]["command"]
    assert "--arch resnet34" in got["steps"]["train_student"]["command"]
    assert "--preset pgd20" in got["steps"]["evaluate_pgd20"]["command"]
    assert got["dataset"] == "shapes"  # no cifar10 under --data: the synthetic fallback


def test_out_defaults_to_the_out_folder(tmp_path):
    res = _run("--device", "cpu", "--dry-run", env={"OUT": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "gpu_check.json").read_text())["steps"]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_takes_device(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(REPO / "benchmarks" / f"{name}.py"), run_name="__main__")
    assert e.value.code == 0 and "--device" in capsys.readouterr().out
