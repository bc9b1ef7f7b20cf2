"""Per-example outcomes in the results table: the codec, and that every accuracy row's
outcome is the set of examples its accuracy counts (clean, attacks, the worst case), so a paired test over images reads what the accuracy says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.core.outcomes import decode_outcome, encode_outcome
from pipeline.evaluate import evaluate_robust, read_results
from pipeline.evaluate.presets import AttackRun
from pipeline.stages.evaluate import run_evaluate


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_codec_round_trips_and_packs_eight_per_byte(n):
    bits = np.random.default_rng(n).random(n) < 0.4
    text = encode_outcome(torch.from_numpy(bits))
    assert len(text) == 2 * ((n + 7) // 8)
    assert (decode_outcome(text, n) == bits).all()
    # bit i of byte i // 8 is example i (little-endian), readable without salpipe
    one = np.zeros(n, bool)
    one[n - 1] = True
    assert int(encode_outcome(one)[-2:], 16) == 1 << ((n - 1) % 8)


@pytest.mark.parametrize("text, n, match", [
    ("", 4, "no per-example outcome"),
    ("zz", 4, "not hex"),
    ("ff", 9, "holds 8 bits, not the 9"),
    (float("nan"), 3, "no per-example outcome"),
])
def test_codec_refuses_what_it_cannot_read(text, n, match):
    with pytest.raises(ValueError, match=match):
        decode_outcome(text, n)
    with pytest.raises(ValueError, match="one value per example"):
        encode_outcome(np.zeros((2, 2), bool))


def _check_rows(rows):
    checked = 0
    for r in rows:
        if r["metric"] != "accuracy":
            assert r["outcome"] == ""
            continue
        ok = decode_outcome(r["outcome"], r["n"])
        assert ok.mean() == pytest.approx(r["accuracy"]), (r["attack"], r["eps"], r.get("view"))
        checked += 1
    return checked


def test_every_accuracy_row_carries_the_examples_it_counts(small_model):
    x = torch.rand(13, 3, 16, 16)
    with torch.no_grad():
        y = small_model(x).argmax(1)
    y[:3] = (y[:3] + 1) % 10
    runs = [AttackRun("pgd2", "pgd", 8 / 255, {"steps": 2}),
            AttackRun("noise", "uniform_noise", 8 / 255, {}),
            AttackRun("aai", "aai", 8 / 255, {"steps": 2})]
    rows = evaluate_robust(small_model, x, y, torch.arange(13), runs, batch_size=5)
    assert _check_rows(rows) == 5  # clean, pgd2, noise, aai, worst case (not of aai)
    by = {r["attack"]: decode_outcome(r["outcome"], 13) for r in rows
          if r["metric"] == "accuracy"}
    assert not by["clean"][:3].any()  # the three wrong labels
    assert (by["worst_case"] == (by["pgd2"] & by["noise"])).all()


def test_outcomes_reach_the_table_and_old_tables_read_as_empty(toy_store, toy_ckpt,
                                                                tmp_path):
    out = tmp_path / "r.parquet"
    run_evaluate(toy_ckpt, toy_store, "test", "quick", out, "cpu", n=6, batch_size=4)
    table = read_results(out)
    acc = table[table["metric"] == "accuracy"]
    assert len(acc) and all(decode_outcome(t, n).mean() == pytest.approx(a) for t, n, a
                            in zip(acc["outcome"], acc["n"], acc["accuracy"]))
    old = tmp_path / "old.parquet"
    table.drop(columns="outcome").to_parquet(old)
    assert (read_results(old)["outcome"] == "").all()
