"""salpipe evaluate on a SAD checkpoint: the whole defence by default, one row group per
view plus the worst case over views, and a distinct identity per wrapper."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from pipeline.sad import SadConfig
from pipeline.stages.sad_calibrate import run_sad_calibrate


@pytest.fixture
def presets(tmp_path):
    path = tmp_path / "presets.yaml"
    path.write_text(yaml.safe_dump({"presets": {"tiny": {"attacks": [
        {"label": "pgd2", "attack": "pgd", "eps": "8/255", "params": {"steps": 2}}]}}}))
    return path


def test_evaluate_sad_checkpoint_with_views(tmp_path, store, checkpoint, presets):
    from pipeline.evaluate.table import read_results
    from pipeline.stages.evaluate import run_evaluate

    sad_dir = tmp_path / "sad"
    run_sad_calibrate(checkpoint, store, sad_dir, SadConfig(
        attack_params={"steps": 1}, batch_size=16, batches=1), device="cpu")
    out = tmp_path / "results.parquet"
    kw = {"split": "test", "preset": "tiny", "out": out, "device": "cpu", "n": 8,
          "batch_size": 8, "presets_file": presets}
    run_evaluate(checkpoint, store, **kw)
    assert not run_evaluate(sad_dir, store, **kw)["skipped"]
    df = read_results(out)
    assert set(df["view"]) == {"", "adaptive", "adaptive_bpda", "smooth", "nonadaptive", "all"}
    sad_rows = df[df["view"] != ""]
    assert set(sad_rows["method"]) == {"sad"} and sad_rows["model_sha256"].nunique() == 1
    assert run_evaluate(sad_dir, store, **kw)["skipped"]
    assert run_evaluate(sad_dir, store, **kw, views=["nonadaptive"])["skipped"]
    n_rows = len(read_results(out))
    assert not run_evaluate(sad_dir, store, **kw, force=True)["skipped"]
    assert len(read_results(out)) == n_rows  # replaced, not duplicated
    # saliency-only shares the base weights but is another model (another identity)
    sal_dir = tmp_path / "sal_only"
    run_sad_calibrate(checkpoint, store, sal_dir, SadConfig(bn_update=False),
                      device="cpu")
    from cli import main

    res = CliRunner().invoke(main, [
        "--device", "cpu", "evaluate", "--model", str(sal_dir), "--store", str(store),
        "--preset", "tiny", "--presets", str(presets), "--n", "8", "--out", str(out),
        "--view", "nonadaptive"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    df = read_results(out)
    assert list(df[df["method"] == "sad_saliency_only"]["view"].unique()) == ["nonadaptive"]
    with pytest.raises(ValueError, match="wrapped"):
        run_evaluate(checkpoint, store, **{**kw, "force": True}, views=["adaptive"])
