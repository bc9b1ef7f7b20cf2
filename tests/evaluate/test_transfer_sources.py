"""Transfer attacks from several named source models (``--source-model NAME=DIR``):
each transfer entry crafts on the source its ``params.source_name`` names, the results
record every source, and a bad or missing source is said clearly."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner
from toy_files import make_checkpoint

from cli import main
from pipeline.config import ConfigError
from pipeline.evaluate import read_results
from pipeline.models.checkpoint import read_sidecar
from pipeline.stages.evaluate import run_evaluate

# random_start off: the inner PGD is deterministic, so a row depends only on its source
INNER = {"attack": "pgd", "attack_params": {"steps": 2, "random_start": False}}


@pytest.fixture
def presets(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"presets": {"two": {"attacks": [
        {"label": "transfer_a", "attack": "transfer", "eps": "8/255",
         "params": {**INNER, "source_name": "a"}},
        {"label": "transfer_b", "attack": "transfer", "eps": "8/255",
         "params": {**INNER, "source_name": "b"}},
    ]}, "plain": {"attacks": [
        {"attack": "transfer", "eps": "8/255", "params": INNER}]}}}))
    return path


@pytest.fixture
def sources(tmp_path):
    return {"a": make_checkpoint(tmp_path / "src_a", seed=1),
            "b": make_checkpoint(tmp_path / "src_b", seed=2)}


def sha(path) -> str:
    return read_sidecar(path)["sha256"]


def transfer_rows(df, key: str):
    rows = df[(df["attack_name"] == "transfer") & (df["source_model"] == key)]
    return {r.attack: r for r in rows.itertuples()}


def test_two_named_sources_give_two_rows_each_recording_its_source(
        toy_ckpt, toy_store, tmp_path, presets):
    # source a: the target's own weights (a white-box attack), b: another model
    sources = {"a": make_checkpoint(tmp_path / "src_a", seed=0),
               "b": make_checkpoint(tmp_path / "src_b", seed=2)}
    out = tmp_path / "r.parquet"
    run_evaluate(toy_ckpt, toy_store, "test", "two", out, "cpu", n=24,
                 presets_file=presets, source_model=sources)
    df = read_results(out)
    key = f"a={sha(sources['a'])},b={sha(sources['b'])}"
    assert set(df["source_model"]) == {key}
    rows = transfer_rows(df, key)
    assert sorted(rows) == ["transfer_a", "transfer_b"]
    for label, name in (("transfer_a", "a"), ("transfer_b", "b")):
        assert json.loads(rows[label].attack_params)["source_name"] == name
    assert not any("skipped" in f for f in json.loads(df["flags"].iloc[0]))
    assert rows["transfer_a"].value < rows["transfer_b"].value  # white-box beats transfer
    # swapping the directories swaps the rows: each entry crafted on its own source
    swapped = {"a": sources["b"], "b": sources["a"]}
    run_evaluate(toy_ckpt, toy_store, "test", "two", out, "cpu", n=24,
                 presets_file=presets, source_model=swapped)
    df = read_results(out)
    other = transfer_rows(df, f"a={sha(sources['b'])},b={sha(sources['a'])}")
    assert other["transfer_a"].value == rows["transfer_b"].value
    assert other["transfer_b"].value == rows["transfer_a"].value


def test_an_entry_whose_source_is_missing_is_skipped_with_a_flag_naming_it(
        toy_ckpt, toy_store, tmp_path, presets, sources):
    out = tmp_path / "r.parquet"
    run_evaluate(toy_ckpt, toy_store, "test", "two", out, "cpu", n=6,
                 presets_file=presets, source_model={"a": sources["a"]})
    df = read_results(out)
    assert set(df["source_model"]) == {f"a={sha(sources['a'])}"}
    assert "transfer_a" in set(df["attack"]) and "transfer_b" not in set(df["attack"])
    flags = json.loads(df["flags"].iloc[0])
    assert "skipped 1 transfer run(s) of source 'b': no --source-model b=DIR" in flags


def test_a_bare_source_is_the_default_one(toy_ckpt, toy_store, tmp_path, presets, sources):
    out = tmp_path / "r.parquet"
    run_evaluate(toy_ckpt, toy_store, "test", "plain", out, "cpu", n=6,
                 presets_file=presets, source_model=sources["a"])
    df = read_results(out)
    assert set(df["source_model"]) == {f"default={sha(sources['a'])}"}
    assert "transfer" in set(df["attack"])


def test_a_name_no_entry_crafts_on_is_refused(toy_ckpt, toy_store, tmp_path, presets,
                                              sources):
    with pytest.raises(ConfigError, match=r"--source-model c=.*preset 'two'.*: a, b"):
        run_evaluate(toy_ckpt, toy_store, "test", "two", tmp_path / "r.parquet", "cpu",
                     n=6, presets_file=presets, source_model={"a": sources["a"],
                                                              "c": sources["b"]})
    assert not (tmp_path / "r.parquet").exists()


def test_a_named_source_of_another_data_set_is_refused_naming_it(
        toy_ckpt, toy_store, tmp_path, presets, sources):
    side = sources["b"] / "model.json"
    side.write_text(json.dumps({**json.loads(side.read_text()),
                                "dataset_fingerprint": "b" * 64}))
    with pytest.raises(ValueError, match=r"--source-model b=.*src_b was trained"):
        run_evaluate(toy_ckpt, toy_store, "test", "two", tmp_path / "r.parquet", "cpu",
                     n=6, presets_file=presets, source_model=sources)
    with pytest.raises(FileNotFoundError, match=r"nosrc not found \(--source-model a=DIR"):
        run_evaluate(toy_ckpt, toy_store, "test", "two", tmp_path / "r.parquet", "cpu",
                     n=6, presets_file=presets, source_model={"a": tmp_path / "nosrc"})


def _cli(toy_ckpt, toy_store, tmp_path, presets, *words):
    args = ["--device", "cpu", "evaluate", "--model", str(toy_ckpt), "--store",
            str(toy_store), "--preset", "two", "--presets", str(presets), "--n", "6",
            "--out", str(tmp_path / "r.parquet"), *words]
    return CliRunner().invoke(main, args)


def test_cli_takes_named_sources(toy_ckpt, toy_store, tmp_path, presets, sources):
    res = _cli(toy_ckpt, toy_store, tmp_path, presets, "--source-model",
               f"a={sources['a']}", "--source-model", f"b={sources['b']}")
    assert res.exit_code == 0, res.output
    df = read_results(tmp_path / "r.parquet")
    assert set(df["source_model"]) == {f"a={sha(sources['a'])},b={sha(sources['b'])}"}
    assert {"transfer_a", "transfer_b"} <= set(df["attack"])


@pytest.mark.parametrize("values, words", [
    (["a="], ["'a='", "run directory after a= is missing"]),
    (["={a}"], ["expected NAME=DIR", "[a-z0-9_]+"]),
    (["Bad-Name={a}"], ["expected NAME=DIR", "default=DIR"]),
    (["a={a}", "a={b}"], ["source 'a' is given twice"]),
    (["{a}", "default={b}"], ["source 'default' is given twice"]),
    (["c={a}"], ["--source-model c=", "no transfer entry of preset 'two'", "a, b"]),
])
def test_cli_refuses_a_bad_source_with_one_error_line(toy_ckpt, toy_store, tmp_path,
                                                      presets, sources, values, words):
    argv = [w for v in values for w in ("--source-model", v.format(**sources))]
    res = _cli(toy_ckpt, toy_store, tmp_path, presets, *argv)
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, res.output
    for w in words:
        assert w in errors[0], res.output
    assert not (tmp_path / "r.parquet").exists()
