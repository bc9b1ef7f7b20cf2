"""The package's layering: no import cycle between sub-packages, no upward import
(``../shared/tools/layers.py``), and registries that are complete whatever is imported
first."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = REPO.parent / "shared" / "tools" / "layers.py"

# sub-package -> (registry attribute, names it must hold once the package alone is imported)
REGISTRIES = {
    "pipeline.data": ("DATASETS", ["cifar10", "cub200", "flowers17", "shapes"]),
    "pipeline.models": ("MODELS", ["resnet10", "resnet34", "small_cnn"]),
    "pipeline.saliency": ("SALIENCY", ["gbp", "grad", "gradcampp_box", "sip_topk"]),
    "pipeline.attacks": ("ATTACKS", ["autoattack", "pgd", "transfer"]),
    "pipeline.train": ("TRAINING", ["fat", "int", "int2", "part", "pgd_at", "pgd_sat",
                                     "sat", "sip_at", "standard", "trades", "trades_sat"]),
    "pipeline.cache": ("STREAMS", ["auto", "chunks", "memory"]),
    "pipeline.sad": ("WRAPPERS", ["sad"]),
}


@pytest.mark.skipif(not LAYERS.is_file(), reason="../shared/tools/layers.py not beside the repo")
def test_no_cycle_and_no_upward_import():
    res = subprocess.run([sys.executable, str(LAYERS), str(REPO)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 problem(s)" in res.stdout


def _names_after_importing(module: str, attr: str, first: str | None = None) -> list[str]:
    pre = f"import {first}; " if first else ""
    code = f"{pre}import {module} as m; print(' '.join(m.{attr}.names()))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


@pytest.mark.parametrize("module", sorted(REGISTRIES))
def test_registry_is_complete_when_its_package_is_imported_alone(module):
    attr, expected = REGISTRIES[module]
    names = _names_after_importing(module, attr)
    assert set(expected) <= set(names), (module, names)


@pytest.mark.parametrize("first", ["pipeline.sad", "pipeline.train", "pipeline.config"])
def test_stream_modes_do_not_depend_on_import_order(first):
    # the stream modes once depended on what was imported first (`import pipeline.sad`
    # alone left only `memory`)
    assert _names_after_importing("pipeline.cache", "STREAMS", first) == [
        "auto", "chunks", "memory"]


def test_registries_listed_by_salpipe_list_match_each_package_alone():
    code = ("from pipeline.stages.listing import all_registries; "
            "print(';'.join(f'{t}:{\",\".join(r.names())}' for t, r in all_registries()))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr
    listed = dict(item.split(":") for item in res.stdout.strip().split(";"))
    for module, (attr, _) in REGISTRIES.items():
        alone = _names_after_importing(module, attr)
        assert any(v.split(",") == alone for v in listed.values()), module
