"""The training step's execution options: ``precision`` (bf16 autocast), ``channels_last``
and ``compile``: what each puts in effect, their refusals, and that bf16 trains models
whose clean and PGD accuracy stay within a stated tolerance of fp32."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from tiny_store import write_tiny_store

from pipeline.config import ConfigError
from pipeline.models import build_model
from pipeline.train.config import train_config_from
from pipeline.train.loop import (
    CompiledForward,
    CompileError,
    Trainer,
    cpu_has_native_bf16,
    explain_compile_errors,
    resume_key,
)
from pipeline.train.method import Batch, Loss, TrainingMethod

META = {"arch": "small_cnn", "num_classes": 4, "mean": [0.5] * 3, "std": [0.25] * 3}


# -- plumbing -------------------------------------------------------------------------
def test_defaults_are_fp32_eager_contiguous():
    cfg = train_config_from({})
    assert (cfg.precision, cfg.channels_last, cfg.compile) == ("fp32", False, False)


@pytest.mark.parametrize(
    "data, match",
    [
        ({"precision": "fp16"}, r"train\.precision: 'fp16' is not allowed.*fp32, bf16, auto"),
        ({"precision": True}, r"train\.precision: True is not allowed"),
        ({"channels_last": "yes"}, r"train\.channels_last: expected true or false"),
        ({"compile": 1}, r"train\.compile: expected true or false"),
        ({"bf16": True}, r"train\.bf16: replaced by train\.precision"),
        ({"precison": "bf16"}, r"train\.precison: unknown key \(did you mean 'precision'"),
    ],
)
def test_bad_values_are_refused_naming_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        train_config_from(data)


def test_bad_override_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"cfg\.yaml\.precision: 'bf32'"):
        train_config_from({}, {"precision": "bf32"}, where="cfg.yaml")


def test_execution_settings_are_not_identity_but_precision_is():
    """A run resumes with compile or channels_last switched (like another device); a
    run recorded with the old ``bf16`` flag is the run of the precision it meant."""
    old = {"train": {"epochs": 2, "bf16": False, "channels_last": False}}
    new = {"train": {"epochs": 2, "precision": "fp32", "channels_last": True,
                     "compile": True}}
    assert resume_key(old) == resume_key(new)
    bf = {"train": {"epochs": 2, "precision": "bf16"}}
    assert resume_key(bf) == resume_key({"train": {"epochs": 2, "bf16": True}})
    assert resume_key(bf) != resume_key(new)


class _OneBatch:
    num_batches = 1

    def __init__(self, x, y):
        self.x, self.y = x, y

    def batches(self, epoch, start=0):
        yield Batch(x=self.x.clone(), y=self.y, index=torch.arange(len(self.y)))


@dataclass(frozen=True)
class _Probe(TrainingMethod):
    """Records what the step runs under: autocast, memory formats, the attack's dtype."""

    seen: list

    def batch_loss(self, model, batch, ctx):
        from pipeline.attacks import ATTACKS

        x_adv = ATTACKS.get("pgd")(eps=8 / 255, steps=1, best="last")(model, batch.x,
                                                                      batch.y)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        logits = model(x_adv)
        self.seen.append({
            "autocast": torch.is_autocast_enabled("cpu"),
            "dtype": torch.get_autocast_dtype("cpu"),
            "logits": logits.dtype,
            "x_cl": batch.x.is_contiguous(memory_format=torch.channels_last),
            "w_cl": conv.weight.is_contiguous(memory_format=torch.channels_last),
        })
        return Loss(F.cross_entropy(logits, batch.y), logits)


@pytest.mark.parametrize("precision, cl", [("fp32", False), ("bf16", False), ("bf16", True)])
def test_trainer_puts_the_options_in_effect(tmp_path, precision, cl):
    """bf16: the whole step (the inner attack included) under bfloat16 autocast; the
    per-epoch test accuracy in fp32; channels_last: model and batch in NHWC; all
    recorded in the sidecar."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 3, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g)
    model = build_model("small_cnn", 4, width=8)
    evals = []
    model.register_forward_pre_hook(
        lambda m, a: evals.append(torch.is_autocast_enabled("cpu")) if not m.training
        else None)
    seen: list = []
    cfg = train_config_from({"epochs": 1, "device": "cpu", "precision": precision,
                             "channels_last": cl})
    test = (torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8), torch.zeros(6).long())
    Trainer(model, _Probe(seen), _OneBatch(x, y), cfg, tmp_path / "r", META,
            torch.device("cpu"), test=test).fit()
    bf = precision == "bf16"
    assert seen == [{"autocast": bf, "dtype": torch.bfloat16,
                     "logits": torch.bfloat16 if bf else torch.float32,
                     "x_cl": cl, "w_cl": cl}]
    # eval-mode calls: the inner attack (under the step's autocast), then the test accuracy
    assert evals[-1] is False
    from pipeline.models.checkpoint import read_sidecar

    train = read_sidecar(tmp_path / "r")["train"]
    assert (train["precision"], train["channels_last"], train["compile"]) == (precision, cl,
                                                                             False)


# -- compile --------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Compiled graphs are cached per code object across models: each test compiles with
    its own backend from scratch."""
    import torch._dynamo

    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compiled_forward_matches_eager_and_sees_hooks():
    """Compiled calls equal eager ones; a call made while a submodule holds a hook (which
    a compiled graph would silently skip) runs eagerly; remove() restores the model."""
    model = build_model("small_cnn", 4, width=8).eval()
    x = torch.rand(3, 3, 16, 16)
    ref = model(x)
    keys = list(model.state_dict())
    compiled = CompiledForward(model, backend="eager")
    assert torch.allclose(model(x), ref, atol=1e-6)
    seen = []
    layer = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    h = layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(x)
    h.remove()
    assert len(seen) == 1
    assert list(model.state_dict()) == keys
    compiled.remove()
    assert "forward" not in model.__dict__


def test_double_backward_under_compile_is_refused_naming_the_key():
    model = build_model("small_cnn", 4, width=8)
    CompiledForward(model, backend="aot_eager")
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    with pytest.raises(CompileError, match=r"train\.compile.*'gradnorm'.*double backward"):
        with explain_compile_errors(True, "gradnorm"):
            (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
            g.pow(2).sum().backward()


def test_a_failing_compiler_is_reported_naming_the_key():
    def broken(gm, example_inputs):
        raise OSError("no C++ compiler")

    model = build_model("small_cnn", 4, width=8)
    CompiledForward(model, backend=broken)
    with pytest.raises(CompileError, match=r"train\.compile: torch\.compile failed.*"
                                           r"set compile: false"):
        model(torch.rand(2, 3, 16, 16))


def test_unsupported_dynamo_is_refused(monkeypatch):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(CompileError, match=r"train\.compile.*not supported"):
        CompiledForward(build_model("small_cnn", 4, width=8))


@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32"), (None, "fp32")])
def test_auto_precision_is_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch, native,
                                                          want):
    """``auto`` resolves before the run's identity is taken: the run records (and
    trains in) what it resolved to, bf16 only on a CPU with native bfloat16."""
    import pipeline.train.loop as loop
    from pipeline.stages.loading import load_model
    from pipeline.stages.train import run_train

    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
    assert loop.resolved_precision("auto", torch.device("cpu")) == want
    assert loop.resolved_precision("fp32", torch.device("cpu")) == "fp32"
    store = write_tiny_store(tmp_path / "t.zarr", n_train=32, n_test=8)
    cfg = train_config_from({"epochs": 1, "batch_size": 16, "device": "cpu",
                             "precision": "auto", "net": {"arch": "small_cnn", "width": 4}})
    run_train(store, "standard", {}, cfg, tmp_path / "r")
    _, side = load_model(tmp_path / "r")
    assert side["train"]["precision"] == want


@pytest.mark.slow
def test_compiled_training_run_with_inductor(tmp_path):
    """``compile: true`` through the stage with the real backend (tens of seconds of
    compilation on a CPU): trains, and the saved model loads and is plain."""
    from pipeline.stages.loading import load_model
    from pipeline.stages.train import run_train

    store = write_tiny_store(tmp_path / "t.zarr", n_train=64, n_test=16)
    cfg = train_config_from({"epochs": 1, "batch_size": 32, "device": "cpu",
                             "compile": True, "drop_last": True,
                             "net": {"arch": "small_cnn", "width": 8}})
    res = run_train(store, "pgd_at", {"steps": 1}, cfg, tmp_path / "c")
    assert res["metrics"]["loss"] > 0
    model, side = load_model(tmp_path / "c")
    assert side["train"]["compile"] is True and "forward" not in model.__dict__


@pytest.mark.gpu
def test_cuda_run_in_bf16_channels_last_compiled(tmp_path):
    """The three options together on a GPU (Triton compiles the forward): the inner
    attack and the step run, the saved model is plain and loads on the CPU."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from pipeline.stages.loading import load_model
    from pipeline.stages.train import run_train

    store = write_tiny_store(tmp_path / "t.zarr", n_train=64, n_test=16)
    cfg = train_config_from({"epochs": 1, "batch_size": 32, "device": "cuda",
                             "precision": "bf16", "channels_last": True, "compile": True,
                             "net": {"arch": "resnet10", "width": 16}})
    res = run_train(store, "pgd_at", {"steps": 2}, cfg, tmp_path / "g")
    assert res["metrics"]["loss"] > 0
    model, side = load_model(tmp_path / "g")
    assert side["train"]["precision"] == "bf16" and "forward" not in model.__dict__


# -- accuracy under bf16 --------------------------------------------------------------
# Statistic: clean accuracy, and PGD-10 accuracy averaged over eps = 8, 16, ..., 56/255
# (a discretised mean robust radius), on 256 test images, all evaluated in fp32.
# Tolerance: 5 points for each. Why: the runs differ only by rounding, which nudges the
# training trajectory. Accuracy at one mid-range eps is chaotic on runs this short: the
# same-seed bf16 - fp32 gap there was up to 9 points, and fp32 with another seed moved
# it by up to 25. The curve average is steadier: measured on this set-up (seeds 0-2,
# standard and PGD-AT, bf16 and bf16 + channels_last) the same-seed gaps were within
# 2.5 points, against up to 12 (standard) and 7 (PGD-AT) between fp32 seeds; clean
# accuracy was 1.0 for all. 5 points is twice the largest gap seen; a bf16 that broke
# training, or weakened PGD-AT's inner attack, costs more (the curve average of the
# standard model is ~0.41, of the PGD-AT one ~0.6).
TOL = 0.05
EVAL_EPS = [k / 255 for k in range(8, 57, 8)]
PARAMS = {"standard": {}, "pgd_at": {"steps": 3, "eps": "8/255", "step_size": "2.5/255"}}
BASE = {"epochs": 4, "batch_size": 64, "device": "cpu", "seed": 0, "test_limit": 16,
        "opt": {"lr": 0.02}, "sched": {"name": "onecycle"},
        "aug": {"crop_padding": 2, "flip": True}, "net": {"arch": "resnet10", "width": 16}}
_RESULTS: dict = {}


def _accuracies(tmp_path_factory, method: str, variant: dict) -> tuple[float, float]:
    """(clean accuracy, PGD-10 accuracy averaged over EVAL_EPS), in fp32, on the test
    split of one trained run."""
    key = (method, tuple(sorted(variant.items())))
    if key in _RESULTS:
        return _RESULTS[key]
    from pipeline.attacks import ATTACKS
    from pipeline.cache.store import open_store
    from pipeline.cache.stream import read_split_arrays
    from pipeline.stages.loading import load_model
    from pipeline.stages.train import run_train

    root = tmp_path_factory.getbasetemp() / "precision"
    store = root / "tiny.zarr"
    if not store.exists():
        write_tiny_store(store, n_train=512, n_test=256)
    out = root / f"{method}-{'-'.join(f'{k}{v}' for k, v in sorted(variant.items()))}"
    torch.manual_seed(0)
    run_train(store, method, PARAMS[method], train_config_from({**BASE, **variant}), out)
    model, _ = load_model(out)
    x, y = read_split_arrays(open_store(store, mode="r"), "test")
    x, y = torch.as_tensor(x).float() / 255, torch.as_tensor(y).long()
    model.eval()
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    robust = 0.0
    for eps in EVAL_EPS:
        x_adv = ATTACKS.get("pgd")(eps=eps, steps=10)(model, x, y)
        with torch.no_grad():
            robust += float((model(x_adv).argmax(1) == y).float().mean()) / len(EVAL_EPS)
    _RESULTS[key] = (clean, robust)
    return clean, robust


@pytest.mark.slow
@pytest.mark.skipif(cpu_has_native_bf16() is False,
                    reason="this CPU emulates bfloat16 (2-10x slower than fp32)")
@pytest.mark.parametrize("method", ["standard", "pgd_at"])
@pytest.mark.parametrize("variant", [{"precision": "bf16"},
                                     {"precision": "bf16", "channels_last": True}],
                         ids=["bf16", "bf16+channels_last"])
def test_bf16_accuracy_within_tolerance_of_fp32(tmp_path_factory, method, variant):
    clean32, robust32 = _accuracies(tmp_path_factory, method, {})
    clean, robust = _accuracies(tmp_path_factory, method, variant)
    print(f"{method} {variant}: clean {clean:.3f} (fp32 {clean32:.3f}), "
          f"PGD curve mean {robust:.3f} (fp32 {robust32:.3f})")
    assert abs(clean - clean32) <= TOL and abs(robust - robust32) <= TOL
    assert 0.2 < robust32 < 0.9  # mid-range: the comparison can show a difference
