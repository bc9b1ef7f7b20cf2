"""A SAD model's transfer sources: ``base`` (its undefended base student) crafts the
examples that are applied to the whole defence (``views: whole``, as the defence
preset's entries); a source that is not given is skipped with a flag naming it."""

from __future__ import annotations

import json

import yaml

from pipeline.models.checkpoint import read_sidecar
from pipeline.sad import SadConfig
from pipeline.stages.sad_calibrate import run_sad_calibrate


def test_a_sad_model_transfers_from_its_base(tmp_path, store, checkpoint):
    from pipeline.evaluate.table import read_results
    from pipeline.stages.evaluate import run_evaluate

    presets = tmp_path / "presets.yaml"
    inner = {"attack": "pgd", "attack_params": {"steps": 2}}
    presets.write_text(yaml.safe_dump({"presets": {"t": {"attacks": [
        {"label": f"transfer_{name}", "attack": "transfer", "eps": "8/255",
         "views": "whole", "params": {**inner, "source_name": name}}
        for name in ("base", "other_seed")]}}}))
    sad_dir = tmp_path / "sad"
    run_sad_calibrate(checkpoint, store, sad_dir, SadConfig(
        attack_params={"steps": 1}, batch_size=16, batches=1), device="cpu")
    out = tmp_path / "results.parquet"
    run_evaluate(sad_dir, store, "test", "t", out, "cpu", n=8, batch_size=8,
                 presets_file=presets, source_model={"base": checkpoint})
    df = read_results(out)
    assert set(df["source_model"]) == {f"base={read_sidecar(checkpoint)['sha256']}"}
    rows = df[df["attack"] == "transfer_base"]
    assert len(rows) and rows["value"].notna().all()
    assert "transfer_other_seed" not in set(df["attack"])
    clean = df[df["attack"] == "clean"]
    for flags in clean["flags"]:
        assert ("skipped 1 transfer run(s) of source 'other_seed': no --source-model "
                "other_seed=DIR") in json.loads(flags)
