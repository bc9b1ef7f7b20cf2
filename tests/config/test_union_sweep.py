"""A union sweep (``union: [a, b]``) runs every job of its parts once: the shipped `cpu`
is the four per-paper sweeps, each part's jobs reproduced with the same arguments, a
model the parts train alike trained once; parts that disagree are refused naming the
key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.stages.sweep import load_dag

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "config" / "sweeps"
PARTS = ["cpu_sat", "cpu_sip", "cpu_sad", "cpu_int"]


@pytest.fixture(scope="module")
def union():
    return load_dag({"sweep": "cpu"}, SWEEPS)


@pytest.mark.parametrize("name", PARTS)
def test_every_job_of_a_part_is_a_job_of_cpu_with_the_same_arguments(union, name):
    part = load_dag({"sweep": name}, SWEEPS)
    assert set(part.eval_cells()) <= set(union.eval_cells())
    for d, m, seed, preset in part.eval_cells():
        assert union.eval_args(d, None, m, preset) == part.eval_args(d, None, m, preset)
        assert union.transfer_sources(d, m, seed, preset) == \
            part.transfer_sources(d, m, seed, preset)
    for d, m, seed in part.cells() + part.transfer_jobs():
        if m in part.sweep.students:
            assert union.student_args(d, m, seed) == part.student_args(d, m, seed)
        else:
            assert union.sad_args(m, seed) == part.sad_args(m, seed)
    for d, t in part.teacher_cells():
        assert (d, t) in union.teacher_cells()
        assert union.teacher_args(d, t) == part.teacher_args(d, t)
    for d, s in part.source_cells():
        assert (d, s) in union.source_cells()
        assert union.source_args(s) == part.source_args(s)
    assert set(part.transfer_jobs()) <= set(union.transfer_jobs()) | set(union.cells())


def test_cpu_holds_nothing_its_parts_do_not_and_trains_shared_models_once(union):
    parts = [load_dag({"sweep": n}, SWEEPS) for n in PARTS]
    assert set(union.eval_cells()) == {c for p in parts for c in p.eval_cells()}
    trained = {c for p in parts for c in p.cells()}
    assert set(union.cells()) == trained
    assert len(union.cells()) < sum(len(p.cells()) for p in parts)  # standard: once
    assert union.sweep.parts == tuple(PARTS)


def _write(folder: Path, name: str, edit=None) -> None:
    data = yaml.safe_load((SWEEPS / "smoke.yaml").read_text())
    data["name"] = name
    if edit:
        edit(data)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["students"]["pgd_at"].update(params={"eps": "4/255"},
                                              deviations={"eps": "x"}),
     "students.pgd_at.params differs between a and b"),
    (lambda d: d["threat"].update(steps=7), "threat differs between a and b"),
    (lambda d: d["evaluate"].update(n=3), "quick evaluation of pgd_at on shapes (images) differs between a and b (32 vs 3)"),
])
def test_parts_that_disagree_are_refused_naming_the_key(tmp_path, edit, message):
    _write(tmp_path, "a")
    _write(tmp_path, "b", edit)
    (tmp_path / "u.yaml").write_text("name: u\nunion: [a, b]\n")
    with pytest.raises(ConfigError) as e:
        load_dag({"sweep": "u"}, tmp_path)
    assert message in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("union: [a, nope]\n", "no sweep file"),
    ("union: [a, a]\n", "names itself or a sweep twice"),
    ("union: a\n", "give a list of sweep names"),
    ("union: [a]\nseeds: [0]\n", "seeds: a union sweep holds only"),
])
def test_bad_union_files_are_refused(tmp_path, text, message):
    _write(tmp_path, "a")
    (tmp_path / "u.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_dag({"sweep": "u"}, tmp_path)
    assert message in str(e.value)


def test_a_union_of_agreeing_parts_joins_their_seeds(tmp_path):
    _write(tmp_path, "a", lambda d: d.update(seeds=[0]))
    _write(tmp_path, "b", lambda d: d.update(seeds=[2]))
    (tmp_path / "u.yaml").write_text("union: [a, b]\n")
    u = load_dag({"sweep": "u"}, tmp_path)
    assert u.sweep.seeds_for("standard") == (0, 2)
    assert {s for _, m, s in u.cells() if m == "standard"} == {0, 2}


def test_parts_with_different_transfer_seeds_are_refused(tmp_path):
    _write(tmp_path, "a", lambda d: d.update(transfer_seed=5))
    _write(tmp_path, "b", lambda d: d.update(transfer_seed=6))
    (tmp_path / "u.yaml").write_text("union: [a, b]\n")
    with pytest.raises(ConfigError, match="transfer_seed differs between a and b"):
        load_dag({"sweep": "u"}, tmp_path)
