"""``salpipe evaluate`` refuses every bad input with one clear error, before it evaluates
or writes anything (issue: every bad input a clear error, nothing lost)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipeline.config import ConfigError
from pipeline.evaluate import load_presets
from pipeline.stages.evaluate import run_evaluate


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if an evaluation starts (every check must come before)."""
    import pipeline.evaluate.table as table

    def boom(*a, **k):
        raise AssertionError("the evaluation ran although an input was bad")

    monkeypatch.setattr(table, "evaluate_views", boom)
    monkeypatch.setattr(table, "read_eval_split", boom)
    monkeypatch.setattr(table, "write_results", boom)


def _presets(path, attacks):
    path.write_text(yaml.safe_dump({"presets": {"ok": {"attacks": [
        {"attack": "pgd", "eps": "4/255", "params": {"steps": 2}}]}, "x": {"attacks": attacks}}}))
    return path


def _eval(toy_ckpt, toy_store, tmp_path, model_dir=None, store=None, **kw):
    args = {"split": "test", "preset": "quick", "out": tmp_path / "r.parquet",
            "device": "cpu", "n": 6, **kw}
    return run_evaluate(model_dir or toy_ckpt, store or toy_store, **args)


def test_unknown_preset_names_the_nearest_and_lists_them(toy_ckpt, toy_store, tmp_path,
                                                        no_work):
    with pytest.raises(ConfigError, match="unknown preset 'quik'") as e:
        _eval(toy_ckpt, toy_store, tmp_path, preset="quik")
    msg = str(e.value)
    assert "did you mean 'quick'?" in msg and "presets.yaml" in msg
    for name in ("quick", "sat", "sip", "full"):
        assert name in msg
    assert not (tmp_path / "r.parquet").exists()


@pytest.mark.parametrize("attacks, where, words", [
    ([{"attack": "pgd", "eps": "4/255"}, {"attack": "pgdd", "eps": "4/255"}],
     "presets.x.attacks[1]", ["unknown attack 'pgdd'", "did you mean 'pgd'?"]),
    ([{"attack": "pgd", "eps": "4/255", "params": {"stepz": 3}}],
     "presets.x.attacks[0].params.stepz", ["unknown key", "steps"]),
    ([{"attack": "pgd", "eps": "4/255", "params": {"steps": "many"}}],
     "presets.x.attacks[0].params.steps", ["expected an integer", "many"]),
    ([{"attack": "pgd", "eps": "4/2x55"}], "presets.x.attacks[0].eps", ["4/2x55"]),
    ([{"attack": "pgd", "eps": "4/255", "params": [1, 2]}], "presets.x.attacks[0].params",
     ["expected a mapping"]),
    ([{"attack": "pgd", "eps": "4/255", "labl": "p"}], "presets.x.attacks[0]", ["labl"]),
    ([{"attack": "pgd", "label": "PGD 5", "eps": "4/255"}], "presets.x.attacks[0].label",
     ["[a-z0-9_]+"]),
    ([{"attack": "transfer", "eps": "8/255", "params": {"attack_params": {"stepz": 2}}}],
     "presets.x.attacks[0]", ["stepz", "transfer's inner attack"]),
    ("pgd", "presets.x.attacks", ["expected a list"]),
])
def test_bad_preset_entries_name_the_file_preset_and_entry(tmp_path, attacks, where, words):
    p = _presets(tmp_path / "p.yaml", attacks)
    with pytest.raises(ConfigError) as e:
        load_presets(p)
    msg = str(e.value)
    assert str(p) in msg and where in msg, msg
    for w in words:
        assert w in msg, msg


def test_bad_presets_file_is_refused_before_any_work(toy_ckpt, toy_store, tmp_path, no_work):
    """A bad entry in any preset of the file is found (not only in the preset asked)."""
    p = _presets(tmp_path / "p.yaml", [{"attack": "pgdd", "eps": "4/255"}])
    with pytest.raises(ConfigError, match=r"p\.yaml: presets\.x\.attacks\[0\]"):
        _eval(toy_ckpt, toy_store, tmp_path, preset="ok", presets_file=p)
    p.write_text("presets: {x: [\n")
    with pytest.raises(ConfigError, match=r"p\.yaml is not valid YAML at line"):
        load_presets(p)
    p.write_text(yaml.safe_dump({"presets": {"x": {"include": ["quik"]}}}))
    with pytest.raises(ConfigError, match=r"presets\.x\.include: unknown preset 'quik'"):
        load_presets(p)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        _eval(toy_ckpt, toy_store, tmp_path, presets_file=tmp_path / "nope.yaml")
    assert not (tmp_path / "r.parquet").exists()


@pytest.mark.parametrize("n", [25, 1000])
def test_n_larger_than_the_split_is_an_error(toy_ckpt, toy_store, tmp_path, no_work, n):
    with pytest.raises(ConfigError, match=f"--n {n} is larger than split 'test'") as e:
        _eval(toy_ckpt, toy_store, tmp_path, n=n)
    assert "24 images" in str(e.value) and str(toy_store) in str(e.value)


@pytest.mark.parametrize("n", [0, -3])
def test_n_below_one_is_an_error(toy_ckpt, toy_store, tmp_path, no_work, n):
    with pytest.raises(ConfigError, match=f"--n {n}: expected a whole number"):
        _eval(toy_ckpt, toy_store, tmp_path, n=n)


def test_n_equal_to_the_split_runs_all(toy_ckpt, toy_store, tmp_path):
    out = tmp_path / "r.parquet"
    p = _presets(tmp_path / "p.yaml", [])
    _eval(toy_ckpt, toy_store, tmp_path, n=24, preset="ok", presets_file=p)
    assert (pd.read_parquet(out)["n"] == 24).all()


def test_model_of_another_data_set_is_refused_before_any_work(toy_ckpt, toy_store, tmp_path,
                                                             no_work, monkeypatch):
    import pipeline.stages.evaluate as stage

    side = toy_ckpt / "model.json"
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "dataset": "cifar10",
                                "dataset_fingerprint": "a" * 64}))
    monkeypatch.setattr(stage, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(ValueError, match="trained on data set 'cifar10'") as e:
        _eval(toy_ckpt, toy_store, tmp_path)
    msg = str(e.value)
    assert str(toy_ckpt) in msg and str(toy_store) in msg and "aaaaaaaaaaaa" in msg
    assert not (tmp_path / "r.parquet").exists()


def test_source_model_of_another_data_set_is_refused(toy_ckpt, toy_store, tmp_path,
                                                     no_work):
    from toy_files import make_checkpoint

    src = make_checkpoint(tmp_path / "src")
    meta = json.loads((src / "model.json").read_text())
    (src / "model.json").write_text(json.dumps({**meta, "dataset_fingerprint": "b" * 64}))
    with pytest.raises(ValueError, match=r"--source-model .*src was trained"):
        _eval(toy_ckpt, toy_store, tmp_path, source_model=src)
    with pytest.raises(FileNotFoundError, match=r"model run directory .*nosrc not found"):
        _eval(toy_ckpt, toy_store, tmp_path, source_model=tmp_path / "nosrc")


def test_bad_store_is_refused(toy_ckpt, toy_store, tmp_path, no_work):
    plain = tmp_path / "plain.zarr"
    plain.write_text("not a store")
    with pytest.raises(ValueError, match=r"plain.zarr is a file, not a data set store"):
        _eval(toy_ckpt, plain, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no data set store at .*none.zarr"):
        _eval(toy_ckpt, tmp_path / "none.zarr", tmp_path)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match=r"folder is a folder but not a Zarr store"):
        _eval(toy_ckpt, tmp_path / "folder", tmp_path)
    with pytest.raises(ValueError, match="has no split 'train'; its splits: test"):
        _eval(toy_ckpt, toy_store, tmp_path, split="train")


def test_missing_model_is_refused(toy_ckpt, toy_store, tmp_path, no_work):
    with pytest.raises(FileNotFoundError, match=r"model run directory .*no_run not found"):
        _eval(toy_ckpt, toy_store, tmp_path, model_dir=tmp_path / "no_run")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty_run: model.pt not found in it"):
        _eval(toy_ckpt, toy_store, tmp_path, model_dir=tmp_path / "empty_run")


@pytest.mark.parametrize("kind", ["garbage", "other_parquet", "folder"])
def test_out_that_is_not_a_results_table_is_refused_untouched(toy_ckpt, toy_store, tmp_path,
                                                              no_work, kind):
    out = tmp_path / "r.parquet"
    if kind == "garbage":
        out.write_bytes(b"precious notes, not parquet")
    elif kind == "other_parquet":
        pd.DataFrame({"a": [1, 2]}).to_parquet(out)
    else:
        out.mkdir()
        (out / "keep.txt").write_text("keep")
    before = out.read_bytes() if out.is_file() else (out / "keep.txt").read_bytes()
    with pytest.raises(ValueError, match=str(out)) as e:
        _eval(toy_ckpt, toy_store, tmp_path, out=out)
    assert "left as it is" in str(e.value)
    after = out.read_bytes() if out.is_file() else (out / "keep.txt").read_bytes()
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["r.parquet", "runs", "toy.zarr"])  # no temp file either


def test_cli_prints_each_bad_input_as_one_error_line(toy_ckpt, toy_store, tmp_path):
    from cli import main

    out = tmp_path / "r.parquet"
    out.write_bytes(b"not parquet")
    base = ["--device", "cpu", "evaluate", "--model", str(toy_ckpt), "--store",
            str(toy_store), "--n", "6"]
    # exit 2 for a bad option, name or config value; 1 for a job failing on its inputs
    cases = [(["--preset", "quik", "--out", str(tmp_path / "x.parquet")], 2, "did you mean"),
             (["--n", "99", "--out", str(tmp_path / "x.parquet")], 2, "--n 99 is larger"),
             (["--out", str(out)], 1, "not a Parquet results table")]
    for extra, status, words in cases:
        res = CliRunner().invoke(main, base + extra)
        assert res.exit_code == status, res.output
        assert res.output.startswith("Error: ") and words in res.output, res.output
        assert "Traceback" not in res.output
    assert out.read_bytes() == b"not parquet" and not (tmp_path / "x.parquet").exists()
