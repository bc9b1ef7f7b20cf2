"""The attack presets, the published tables and the report templates are package data: a
wheel holds them, and a non-editable install, run from outside the repository, finds
them through the package API (importlib.resources)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESOURCES = REPO / "pipeline" / "resources"
TEMPLATES = REPO / "pipeline" / "report" / "templates"

# run from a folder outside the repository, with only the installed copy on PYTHONPATH
LOADS = """
import sys
from pathlib import Path
import cli, pipeline
from pipeline.evaluate.presets import DEFAULT_PRESETS, load_presets
from pipeline.report.claims import CLAIMS_FILE, load_claims
from pipeline.report.tables import PAPER_TABLES, load_paper_tables

site = Path(sys.argv[1]).resolve()
for name, path in (("pipeline", pipeline.__file__), ("cli", cli.__file__),
                   ("presets", DEFAULT_PRESETS), ("paper tables", PAPER_TABLES),
                   ("claims", CLAIMS_FILE)):
    assert Path(str(path)).resolve().is_relative_to(site), (name, path)
print("presets", len(load_presets()), "paper rows", len(load_paper_tables()),
      "claims", len(load_claims()))
"""


def shipped(folder: Path) -> list[str]:
    """Wheel member names of every file under ``folder`` of the repository."""
    return sorted(p.relative_to(REPO).as_posix() for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def build_wheel(tmp_path: Path) -> Path:
    # from a copy: an in-tree build would leave build/ (stale files end up in later
    # wheels) and rewrite the editable install's egg-info
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "cli.py"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "pipeline", src / "pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheel"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(out), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = out.glob("salpipe-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_ships_the_data_and_an_install_outside_the_repo_reads_it(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = "pipeline/resources/presets.yaml"
    assert "pipeline/resources/claims.yaml" in names
    tables = shipped(RESOURCES / "paper_tables")
    assert presets in names
    assert [t for t in tables if t.endswith(".csv")] and set(tables) <= names
    assert set(shipped(TEMPLATES) if TEMPLATES.is_dir() else []) <= names

    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                          "--target", str(site), str(wheel)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", LOADS, str(site)], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    words = res.stdout.split()
    assert words[0] == "presets" and int(words[1]) > 0, res.stdout
    assert words[2:4] == ["paper", "rows"] and int(words[4]) > 0, res.stdout
    assert words[5] == "claims" and int(words[6]) > 0, res.stdout

    res = subprocess.run([sys.executable, str(site / "bin" / "salpipe"), "evaluate",
                          "--help"], cwd=elsewhere, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "--presets" in res.stdout and "--preset" in res.stdout


def test_resources_folder_holds_data_only():
    # no code: the folder is read through importlib.resources, never imported
    assert (RESOURCES / "presets.yaml").is_file()
    assert list((RESOURCES / "paper_tables").glob("*.csv"))
    assert not list(RESOURCES.rglob("*.py"))


def test_the_package_api_finds_the_shipped_files():
    from pipeline.evaluate.presets import DEFAULT_PRESETS, load_presets
    from pipeline.report.tables import PAPER_TABLES, load_paper_tables

    assert Path(DEFAULT_PRESETS) == RESOURCES / "presets.yaml"
    assert Path(PAPER_TABLES) == RESOURCES / "paper_tables"
    assert "quick" in load_presets() and len(load_paper_tables()) > 0
    # the old locations are gone (one copy of each)
    assert not (REPO / "config" / "presets.yaml").exists()
    assert not (REPO / "data" / "paper_tables").exists()
