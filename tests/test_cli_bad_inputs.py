"""Every bad input a clear error, nothing lost: one parametrised case per bad input.

Each case runs one ``salpipe`` command on a small real workspace (a prepared ``shapes``
store, a teacher, a cached saliency source, a student, a SAD model, a results table and a
report, all made with the CLI itself) and asserts:

- the exit status: 2 for a bad option, name or config value, 1 for a job that failed
  on its inputs;
- that the message is one ``Error: ...`` naming the problem, with no traceback;
- that nothing in the workspace changed: every file beside the bad input is
  byte-identical afterwards, and no file appeared (refuse before writing).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from cli import main

TRAIN_YAML = "epochs: 1\nbatch_size: 32\ntest_limit: 32\nnet: {arch: small_cnn, width: 8}\n"
PRESETS_YAML = """presets:
  tiny:
    attacks:
      - {label: fgsm, attack: fgsm, eps: ["2/255"]}
"""


def _run(*args: str):
    return CliRunner().invoke(main, ["--device", "cpu", *args])


def _ok(*args: str) -> None:
    res = _run(*args)
    assert res.exit_code == 0, res.output


class _Evil:
    """A pickle that would run a command when loaded (it must be refused, never run)."""

    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    """The workspace every case runs against, made once by the CLI itself."""
    root = tmp_path_factory.mktemp("ws")
    w = {k: root / v for k, v in {
        "store": "shapes.zarr", "other": "other.zarr", "nan_store": "nan.zarr",
        "cfg": "train.yaml", "bad_yaml": "bad.yaml", "presets": "presets.yaml",
        "bad_presets": "bad_presets.yaml", "teacher": "teacher", "other_teacher": "t_other",
        "student": "student", "sad": "sad", "results": "results.parquet",
        "report": "report", "file": "plain.txt", "empty_results": "empty.parquet",
        "trunc": "trunc", "evil": "evil", "badsha": "badsha", "notckpt": "notckpt",
        "unfinished": "unfinished", "evil_resume": "evil_resume", "trunc_resume":
        "trunc_resume", "gallery": "gallery.png", "h5": "export.h5",
    }.items()}
    w["cfg"].write_text(TRAIN_YAML)
    w["bad_yaml"].write_text("epochs: 1\nopt: {lr: 0.1\nbatch_size: 32\n")
    w["presets"].write_text(PRESETS_YAML)
    w["bad_presets"].write_text(PRESETS_YAML.replace("attack: fgsm", "attack: fgsmm"))
    w["file"].write_text("not a store\n")
    shapes = ["--dataset", "shapes", "-p", "n_train=64", "-p", "n_test=32",
              "-p", "resolution=16"]
    _ok("prepare-data", *shapes, "--store", str(w["store"]))
    _ok("prepare-data", *shapes, "-p", "seed=1", "--store", str(w["other"]))
    train = ["--config", str(w["cfg"])]
    _ok("train-teacher", "--store", str(w["store"]), *train, "--mode", "std",
        "--out", str(w["teacher"]))
    _ok("train-teacher", "--store", str(w["other"]), *train, "--mode", "std",
        "--out", str(w["other_teacher"]))
    _ok("precompute-saliency", "--store", str(w["store"]), "--teacher", str(w["teacher"]),
        "--method", "grad", "--source", "teacher.grad", "--batch-size", "32")
    _ok("train", "--store", str(w["store"]), *train, "--method", "standard",
        "--out", str(w["student"]))
    _ok("sad-calibrate", "--model", str(w["student"]), "--store", str(w["store"]),
        "--batches", "1", "--batch-size", "16", "-s", "attack_params.steps=1",
        "--out", str(w["sad"]))
    _ok("evaluate", "--model", str(w["student"]), "--store", str(w["store"]),
        "--presets", str(w["presets"]), "--preset", "tiny", "--out", str(w["results"]))
    _ok("report", "--results", str(w["results"]), "--out", str(w["report"]))
    _ok("show-saliency", "--store", str(w["store"]), "--source", "teacher.grad", "--n", "2",
        "--out", str(w["gallery"]))
    # a store whose cached map holds NaN (as a bad precompute or a disk error would)
    shutil.copytree(w["store"], w["nan_store"])
    arr = zarr.open_group(str(w["nan_store"]), mode="r+")["train/saliency/teacher.grad/map"]
    block = np.asarray(arr[:4])
    block[1, 0, 3, 3] = np.nan
    arr[:4] = block
    # broken checkpoints beside good ones
    for name in ("trunc", "evil", "badsha", "notckpt"):
        shutil.copytree(w["teacher"], w[name])
    pt = w["trunc"] / "model.pt"
    data = pt.read_bytes()[:200]
    pt.write_bytes(data)
    side = json.loads((w["trunc"] / "model.json").read_text())
    side["sha256"] = hashlib.sha256(data).hexdigest()  # truncated, with a matching sha256
    (w["trunc"] / "model.json").write_text(json.dumps(side))
    (w["evil"] / "model.pt").write_bytes(pickle.dumps(_Evil()))
    side = json.loads((w["evil"] / "model.json").read_text())
    side["sha256"] = hashlib.sha256((w["evil"] / "model.pt").read_bytes()).hexdigest()
    (w["evil"] / "model.json").write_text(json.dumps(side))
    (w["badsha"] / "model.pt").write_bytes((w["badsha"] / "model.pt").read_bytes() + b"x")
    (w["notckpt"] / "model.pt").write_text("hello\n")
    side = json.loads((w["notckpt"] / "model.json").read_text())
    side["sha256"] = hashlib.sha256(b"hello\n").hexdigest()
    (w["notckpt"] / "model.json").write_text(json.dumps(side))
    # unfinished runs: another configuration, a truncated and an unsafe resume.pt
    for name in ("unfinished", "evil_resume", "trunc_resume"):
        shutil.copytree(w["student"], w[name])
        (w[name] / "model.json").unlink()
        (w[name] / "model.pt").unlink()
    for name in ("evil_resume", "trunc_resume"):
        (w[name] / "resume.pt").write_bytes(
            pickle.dumps(_Evil()) if name == "evil_resume" else b"\x80\x02trunc")
    (w["unfinished"] / "resume.pt").write_bytes(b"resume state of a standard run")
    import pandas as pd

    pd.read_parquet(w["results"]).iloc[:0].to_parquet(w["empty_results"])
    w["root"] = root
    return w


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


S, T = "{store}", "{teacher}"
TRAIN = ["train", "--store", S, "--config", "{cfg}"]
TEACH = ["train-teacher", "--store", S, "--config", "{cfg}", "--mode", "std"]
EVAL = ["evaluate", "--store", S, "--presets", "{presets}", "--preset", "tiny"]
PRE = ["precompute-saliency", "--store", S]
SAD = ["sad-calibrate", "--store", S, "--batches", "1"]

# (id, argv with {placeholders}, exit status, words the message must contain)
CASES = [
    # global options
    ("device_unknown", ["--device", "tpu", "list"], 2, ["tpu"]),
    # prepare-data
    ("prep_unknown_dataset", ["prepare-data", "--dataset", "shapez", "--store", "{root}/x.zarr"],
     2, ["shapez", "shapes"]),
    ("prep_unknown_param", ["prepare-data", "--dataset", "shapes", "-p", "n_trian=8",
                            "--store", "{root}/x.zarr"], 2, ["n_trian", "n_train"]),
    ("prep_bad_yaml_value", ["prepare-data", "--dataset", "shapes", "-p", "n_train=[8",
                             "--store", "{root}/x.zarr"], 2, ["-p", "n_train=[8"]),
    ("prep_wrong_type", ["prepare-data", "--dataset", "shapes", "-p", "n_train=many",
                         "--store", "{root}/x.zarr"], 2, ["n_train", "integer"]),
    ("prep_missing_root", ["prepare-data", "--dataset", "cifar10", "--root", "{root}/none",
                           "--store", "{root}/x.zarr"], 2, ["none"]),
    ("prep_other_params", ["prepare-data", "--dataset", "shapes", "-p", "n_train=32",
                           "--store", S], 1, ["--overwrite"]),
    # train and train-teacher: stores, names, config values
    ("train_missing_store", ["train", "--store", "{root}/none.zarr", "--method", "standard",
                             "--out", "{root}/r"], 1, ["none.zarr"]),
    ("train_store_is_file", ["train", "--store", "{file}", "--method", "standard",
                             "--out", "{root}/r"], 1, ["plain.txt"]),
    ("train_unknown_method", [*TRAIN, "--method", "pgd_att", "--out", "{root}/r"], 2,
     ["pgd_att", "pgd_at"]),
    ("train_unknown_arch", [*TRAIN, "--method", "standard", "--arch", "resnet1000",
                            "--out", "{root}/r"], 2, ["resnet1000"]),
    ("train_config_missing", ["train", "--store", S, "--config", "{root}/none.yaml",
                              "--method", "standard", "--out", "{root}/r"], 2, ["none.yaml"]),
    ("train_config_bad_yaml", ["train", "--store", S, "--config", "{bad_yaml}",
                               "--method", "standard", "--out", "{root}/r"], 2,
     ["bad.yaml", "line"]),
    ("train_lr_nan", [*TRAIN, "--method", "standard", "-s", "opt.lr=.nan",
                      "--out", "{root}/r"], 2, ["opt.lr"]),
    ("train_lr_inf", [*TRAIN, "--method", "standard", "-s", "opt.lr=.inf",
                      "--out", "{root}/r"], 2, ["opt.lr"]),
    ("train_lr_negative", [*TRAIN, "--method", "standard", "--lr", "-0.1",
                           "--out", "{root}/r"], 2, ["lr"]),
    ("train_set_typo", [*TRAIN, "--method", "standard", "-s", "opt.lrr=0.1",
                        "--out", "{root}/r"], 2, ["opt.lrr", "lr"]),
    ("train_set_not_pair", [*TRAIN, "--method", "standard", "-s", "opt.lr",
                            "--out", "{root}/r"], 2, ["-s", "key=value"]),
    ("train_eps_inf", [*TRAIN, "--method", "pgd_at", "-p", "eps=.inf", "--out", "{root}/r"],
     2, ["eps"]),
    ("train_eps_nan", [*TRAIN, "--method", "pgd_at", "-p", "eps=.nan", "--out", "{root}/r"],
     2, ["eps"]),
    ("train_eps_div0", [*TRAIN, "--method", "pgd_at", "-p", "eps=8/0", "--out", "{root}/r"],
     2, ["eps", "8/0"]),
    ("train_eps_negative", [*TRAIN, "--method", "pgd_at", "-p", "eps=-8/255",
                            "--out", "{root}/r"], 2, ["eps"]),
    ("train_eps_text", [*TRAIN, "--method", "pgd_at", "-p", "eps=eight",
                        "--out", "{root}/r"], 2, ["eps", "eight"]),
    ("train_eps_bad_yaml", [*TRAIN, "--method", "pgd_at", "-p", "eps=[8",
                            "--out", "{root}/r"], 2, ["-p", "eps=[8"]),
    ("train_param_typo", [*TRAIN, "--method", "pgd_at", "-p", "stpes=3",
                          "--out", "{root}/r"], 2, ["stpes", "steps"]),
    ("train_needs_saliency", [*TRAIN, "--method", "sat", "--out", "{root}/r"], 2,
     ["--saliency"]),
    ("train_missing_source", [*TRAIN, "--method", "sat", "--saliency", "teacher.gbp",
                              "--out", "{root}/r"], 1, ["teacher.gbp", "teacher.grad"]),
    ("train_bad_source_name", [*TRAIN, "--method", "sat", "--saliency", "Teacher",
                               "--out", "{root}/r"], 1, ["Teacher"]),
    ("train_nan_saliency", ["train", "--store", "{nan_store}", "--config", "{cfg}",
                            "--method", "sat", "--saliency", "teacher.grad",
                            "--out", "{root}/r"], 1, ["teacher.grad", "NaN"]),
    ("train_other_config_unfinished", [*TRAIN, "--method", "pgd_at", "-p", "steps=1",
                                       "--out", "{unfinished}"], 1, ["unfinished"]),
    ("train_other_config_finished", [*TRAIN, "--method", "pgd_at", "-p", "steps=1",
                                     "--out", "{student}"], 1, ["student"]),
    ("train_unsafe_resume", [*TRAIN, "--method", "standard", "--out", "{evil_resume}"], 1,
     ["resume.pt"]),
    ("train_truncated_resume", [*TRAIN, "--method", "standard", "--out", "{trunc_resume}"],
     1, ["resume.pt"]),
    ("teacher_bad_mode", [*TEACH[:-1], "fancy", "--out", "{root}/r"], 2, ["fancy"]),
    ("teacher_missing_store", ["train-teacher", "--store", "{root}/none.zarr", "--mode",
                               "std", "--out", "{root}/r"], 1, ["none.zarr"]),
    ("teacher_sparsity_out_of_range", [*TEACH[:-1], "sparse", "--sparsity", "1.5",
                                       "--out", "{root}/r"], 2, ["sparsity"]),
    # precompute-saliency: teachers, methods, sources
    ("pre_missing_store", ["precompute-saliency", "--store", "{root}/none.zarr", "--teacher",
                           T, "--method", "grad"], 1, ["none.zarr"]),
    ("pre_unknown_method", [*PRE, "--teacher", T, "--method", "gradd"], 2, ["gradd", "grad"]),
    ("pre_bad_param", [*PRE, "--teacher", T, "--method", "smoothgrad", "-p", "sigma=.nan"], 2,
     ["sigma"]),
    ("pre_missing_teacher", [*PRE, "--teacher", "{root}/none", "--method", "grad"], 1,
     ["none"]),
    ("pre_truncated_teacher", [*PRE, "--teacher", "{trunc}", "--method", "gbp"], 1,
     ["trunc", "model.pt"]),
    ("pre_unsafe_teacher", [*PRE, "--teacher", "{evil}", "--method", "gbp"], 1,
     ["refused to load"]),
    ("pre_sha_mismatch", [*PRE, "--teacher", "{badsha}", "--method", "gbp"], 1,
     ["badsha", "sha256"]),
    ("pre_teacher_other_dataset", [*PRE, "--teacher", "{other_teacher}", "--method", "gbp"],
     1, ["fingerprint"]),
    ("pre_other_provenance", [*PRE, "--teacher", T, "--method", "grad", "--source",
                              "teacher.grad", "--target", "label"], 1, ["--overwrite"]),
    ("pre_bad_source_name", [*PRE, "--teacher", T, "--method", "grad", "--source", "A-B"],
     1, ["A-B"]),
    ("pre_unknown_annotation", [*PRE, "--source", "annotation.polygon"], 1,
     ["annotation.mask"]),
    ("pre_missing_split", [*PRE, "--split", "val", "--teacher", T, "--method", "gbp"], 1,
     ["val"]),
    # cache info / verify / export, show-saliency
    ("info_missing", ["cache", "info", "{root}/none.zarr"], 1, ["none.zarr"]),
    ("info_plain_file", ["cache", "info", "{file}"], 1, ["plain.txt"]),
    ("verify_missing_source", ["cache", "verify", S, "--source", "teacher.gbp"], 1,
     ["teacher.gbp", "train"]),
    ("verify_missing_split", ["cache", "verify", S, "--split", "val"], 1, ["val"]),
    ("export_missing_source", ["cache", "export", S, "--source", "teacher.gbp",
                               "--to", "{root}/x.h5"], 1, ["teacher.gbp"]),
    ("export_missing_store", ["cache", "export", "{root}/none.zarr", "--to", "{root}/x.h5"],
     1, ["none.zarr"]),
    ("show_missing_source", ["show-saliency", "--store", S, "--source", "teacher.gbp",
                             "--out", "{root}/g.png"], 1, ["teacher.gbp"]),
    ("show_missing_split", ["show-saliency", "--store", S, "--source", "teacher.grad",
                            "--split", "val", "--out", "{root}/g.png"], 1, ["val"]),
    # evaluate
    ("eval_missing_model", [*EVAL, "--model", "{root}/none", "--out", "{root}/r.parquet"], 1,
     ["none"]),
    ("eval_unknown_preset", ["evaluate", "--store", S, "--model", "{student}", "--preset",
                             "quik", "--out", "{root}/r.parquet"], 2, ["quik", "quick"]),
    ("eval_unknown_attack", ["evaluate", "--store", S, "--model", "{student}", "--presets",
                             "{bad_presets}", "--preset", "tiny", "--out", "{root}/r.parquet"],
     2, ["bad_presets.yaml", "fgsmm"]),
    ("eval_presets_bad_yaml", ["evaluate", "--store", S, "--model", "{student}", "--presets",
                               "{bad_yaml}", "--preset", "tiny", "--out", "{root}/r.parquet"],
     2, ["bad.yaml", "line"]),
    ("eval_n_too_large", [*EVAL, "--model", "{student}", "--n", "100000",
                          "--out", "{root}/r.parquet"], 2, ["100000", "32"]),
    ("eval_store_is_file", ["evaluate", "--store", "{file}", "--model", "{student}",
                            "--out", "{root}/r.parquet"], 1, ["plain.txt"]),
    ("eval_other_dataset", ["evaluate", "--store", "{other}", "--model", "{student}",
                            "--presets", "{presets}", "--preset", "tiny",
                            "--out", "{root}/r.parquet"], 1, ["fingerprint"]),
    ("eval_truncated", [*EVAL, "--model", "{trunc}", "--out", "{root}/r.parquet"], 1,
     ["trunc", "model.pt"]),
    ("eval_unsafe", [*EVAL, "--model", "{evil}", "--out", "{root}/r.parquet"], 1,
     ["refused to load"]),
    ("eval_sha_mismatch", [*EVAL, "--model", "{badsha}", "--out", "{root}/r.parquet"], 1,
     ["sha256"]),
    ("eval_not_a_checkpoint", [*EVAL, "--model", "{notckpt}", "--out", "{root}/r.parquet"],
     1, ["notckpt", "model.pt"]),
    ("eval_out_not_results", [*EVAL, "--model", "{student}", "--out", "{file}"], 1,
     ["plain.txt"]),
    ("eval_view_on_plain_model", [*EVAL, "--model", "{student}", "--view", "adaptive",
                                  "--out", "{root}/r.parquet"], 1, ["view"]),
    # report
    ("report_missing_results", ["report", "--results", "{root}/none.parquet",
                                "--out", "{root}/rep"], 1, ["none.parquet"]),
    ("report_empty_results", ["report", "--results", "{empty_results}",
                              "--out", "{root}/rep"], 1, ["empty.parquet"]),
    ("report_results_not_parquet", ["report", "--results", "{file}", "--out", "{root}/rep"],
     1, ["plain.txt"]),
    ("report_out_holds_a_run", ["report", "--results", "{results}", "--out", "{student}"], 1,
     ["student"]),
    ("report_missing_gallery", ["report", "--results", "{results}", "--gallery",
                                "{root}/none.png", "--out", "{root}/rep"], 1, ["none.png"]),
    # sad-calibrate
    ("sad_missing_model", [*SAD, "--model", "{root}/none", "--out", "{root}/s"], 1, ["none"]),
    ("sad_ratio_out_of_range", [*SAD, "--model", "{student}", "--ratio", "20",
                                "--out", "{root}/s"], 2, ["ratio"]),
    ("sad_set_typo", [*SAD, "--model", "{student}", "-s", "ratoi=0.5", "--out", "{root}/s"],
     2, ["ratoi", "ratio"]),
    ("sad_unknown_saliency", [*SAD, "--model", "{student}", "--saliency", "nope",
                              "--out", "{root}/s"], 2, ["nope"]),
    ("sad_unknown_attack", [*SAD, "--model", "{student}", "--attack", "pgdd",
                            "--out", "{root}/s"], 2, ["pgdd"]),
    ("sad_neither", [*SAD, "--model", "{student}", "--no-bn-update", "--no-saliency",
                     "--out", "{root}/s"], 2, ["neither"]),
    ("sad_from_sad_model", [*SAD, "--model", "{sad}", "--out", "{root}/s"], 1,
     ["already a wrapped"]),
    ("sad_out_other_calibration", [*SAD, "--model", "{student}", "--ratio", "0.5",
                                   "--out", "{sad}"], 1, ["--overwrite"]),
    ("sad_store_other_dataset", ["sad-calibrate", "--store", "{other}", "--model",
                                 "{student}", "--out", "{root}/s"], 1, ["fingerprint"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_error_and_loses_nothing(case, ws):
    _, argv, status, words = case
    names = {k: str(v) for k, v in ws.items()}
    before = _snapshot(ws["root"])
    res = _run(*[a.format(**names) for a in argv])
    out = res.output
    assert res.exit_code == status, out
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(
        res.exception)
    assert "Traceback" not in out
    assert "Error: " in out, out
    for word in words:
        assert word in out, f"{word!r} not in: {out}"
    assert _snapshot(ws["root"]) == before, "the workspace changed"
    assert not Path("PWNED_BY_PICKLE").exists() and not (ws["root"] / "PWNED_BY_PICKLE"
                                                        ).exists()


def test_the_suite_covers_every_command():
    commands = {c[1][0] if not c[1][0].startswith("--") else c[1][2] for c in CASES}
    commands |= {" ".join(c[1][:2]) for c in CASES if c[1][0] == "cache"}
    assert len(CASES) >= 60
    for name in ("prepare-data", "train", "train-teacher", "precompute-saliency",
                 "cache info", "cache verify", "cache export", "show-saliency", "evaluate",
                 "report", "sad-calibrate"):
        assert name in commands, name
