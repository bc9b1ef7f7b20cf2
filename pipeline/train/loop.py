"""The one training loop: optimiser, schedule, logging, checkpoints and exact resume.

Methods only supply ``batch_loss``; everything else is here. After every epoch (and
every ``checkpoint_every`` steps) the loop writes ``DIR/resume.pt`` atomically: model,
optimiser, global step, position within the epoch, every RNG state and the partial
epoch statistics. The stream's order and augmentation are pure functions of
(seed, epoch, batch), so a run killed anywhere resumes from its last resume state and,
on CPU with a fixed seed, ends with bit-identical weights. (A method whose
``on_epoch_start`` builds state from the current model would see a mid-epoch model on
resume; none of the registered ones keeps such state.)

Execution options (``precision``, ``channels_last``, ``compile`` of the config) change how
the step runs, not what it computes: :func:`step_autocast` wraps each step (the method's
inner attack included) in bfloat16 autocast; :class:`CompiledForward` runs the model's
forward through ``torch.compile``. Neither touches the optimiser, which stays fp32.

A loss that is NaN or infinite stops training right there with a
:class:`TrainingDivergedError` naming the epoch and step; nothing is written after the
last good state (weights are also checked finite before every save), so the run folder
keeps its last good ``resume.pt`` / ``model.pt`` and never a non-finite model.

Train accuracy in ``metrics.jsonl`` is that of the logits ``batch_loss`` returns with its
loss (:class:`pipeline.train.method.Loss`: those of its last forward pass, for
adversarial methods on the adversarial examples), which costs nothing; the clean test
accuracy is measured separately after each epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import to_dict
from pipeline.core.modes import eval_mode
from pipeline.models.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    atomic_write_bytes,
    finite_weights,
    load_torch_file,
    save_checkpoint,
)
from pipeline.train.config import TrainConfig, lr_multiplier
from pipeline.train.method import Loss, StepContext, TrainingMethod

log = logging.getLogger(__name__)

RESUME_FILE = "resume.pt"
METRICS_FILE = "metrics.jsonl"
# settings of where and in which memory layout the same arithmetic runs: not part of a
# run's identity (a run may resume on another device, or with compile switched on)
EXECUTION_KEYS = ("device", "checkpoint_every", "channels_last", "compile")
RESUME_KEYS = ("key", "model", "optimizer", "epoch", "batch", "step", "rng", "acc", "masks")


class TrainingDivergedError(ValueError):
    """The loss (or the weights) became NaN or infinite; training stopped there."""


def _delete_hint(path: Path) -> str:
    return f"delete {path} to restart the run from scratch"


def read_resume(path: str | Path, key: dict | None = None, mmap: bool = False) -> dict:
    """The resume state ``path`` (``DIR/resume.pt``), checked to be one, and (when
    ``key`` is given) to be of the run ``key`` describes.

    Raises:
        UnsafeCheckpointError: the safe loader refused the pickle (never executed).
        CheckpointError: truncated, corrupt, or not a salpipe resume state; each message
            names the file and says to delete it to restart.
        ValueError: written by a run with another configuration (``key`` differs).
    """
    path = Path(path)
    state = load_torch_file(path, "resume state", _delete_hint(path), mmap=mmap)
    if not isinstance(state, dict) or "key" not in state:
        what = "has no run key" if isinstance(state, dict) else (
            f"holds a {type(state).__name__}")
        raise CheckpointError(
            f"resume state {path} {what}: it is not a salpipe resume state; "
            f"{_delete_hint(path)}"
        )
    try:
        saved = json.loads(state["key"])
    except (TypeError, json.JSONDecodeError):
        raise CheckpointError(
            f"resume state {path} has an unreadable run key; {_delete_hint(path)}"
        ) from None
    if key is not None:
        now = json.loads(json.dumps(key, sort_keys=True, default=str))
        where = _diff(_identity(saved), now)
        if where:
            raise ValueError(
                f"{path} was written by a run with another configuration ({where} "
                f"differs); use the same config, another --out, or delete {path}"
            )
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"resume state {path} lacks {', '.join(missing)}: it is not a complete "
            f"salpipe resume state; {_delete_hint(path)}"
        )
    return {**state, "key": saved}


def read_metrics_file(path: str | Path) -> list[dict]:
    """The rows of ``metrics.jsonl``; a torn last line (killed mid-append: its epoch is
    redone) is dropped, any other unreadable line is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    rows = []
    for i, ln in enumerate(lines):
        try:
            row = json.loads(ln)
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise ValueError("not a metrics row")
        except ValueError:
            if i == len(lines) - 1:
                log.warning("%s: dropping a torn last line (redone on resume)", path)
                break
            raise ValueError(
                f"{path} line {i + 1} is not a metrics row ({ln[:60]!r}); it is corrupt: "
                "delete the line (or the run folder) and rerun"
            ) from None
        rows.append(row)
    return rows



def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or Adam over all parameters, per ``cfg.opt``."""
    o = cfg.opt
    if o.name == "adam":
        return torch.optim.Adam(
            model.parameters(),
            lr=o.lr,
            betas=tuple(o.betas),
            weight_decay=o.weight_decay,
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=o.lr,
        momentum=o.momentum,
        nesterov=o.nesterov and o.momentum > 0,
        weight_decay=o.weight_decay,
    )


@torch.no_grad()
def clean_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
) -> float:
    """Top-1 accuracy of ``model`` (eval mode, restored after) on uint8 ``images``, in
    fp32 whatever the training precision (an evaluation)."""
    dev = next(model.parameters()).device
    correct = 0
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(dev).float().div_(255)
            pred = model(x).argmax(1)
            correct += int((pred == labels[i : i + batch_size].to(dev)).sum())
    return correct / max(len(images), 1)


def resume_key(meta: dict) -> dict:
    """What makes two runs the same run, from sidecar-shaped ``meta`` (the
    :data:`EXECUTION_KEYS` and measured numbers excluded)."""
    return _identity({
        "train": meta.get("train") or {},
        "method": meta.get("method"),
        "params": meta.get("params"),
        "arch": meta.get("arch"),
        "dataset_fingerprint": meta.get("dataset_fingerprint"),
        "saliency_sources": sorted(meta.get("saliency_sources") or {}),
        "prune": meta.get("prune"),
    })


def _identity(key: dict) -> dict:
    """``key`` without its execution settings; a ``bf16`` flag (the key before
    ``precision`` replaced it) read as the precision it meant."""
    train = {k: v for k, v in (key.get("train") or {}).items() if k not in EXECUTION_KEYS}
    if "bf16" in train:
        train["precision"] = "bf16" if train.pop("bf16") else "fp32"
    return {**key, "train": train}


# -- execution options ----------------------------------------------------------------
class CompileError(RuntimeError):
    """``compile: true`` cannot run here, or not with this method (names the key)."""


def step_autocast(precision: str, device: torch.device):
    """The autocast around one training step: bfloat16 on ``device``'s type for
    ``bf16`` (matmuls and convolutions in bf16, reductions and the loss as autocast
    keeps them), nothing for ``fp32``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX; Linux flags),
    None when it cannot tell. Without it CPU autocast emulates bf16: about 0.5x fp32 with
    AVX-512, 0.1x with AVX2 (benchmarks/precision.py under ``ONEDNN_MAX_CPU_ISA``)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f
                          if ln.startswith("flags")), None)
    except OSError:
        return None
    return None if flags is None else bool({"avx512_bf16", "amx_bf16"} & set(flags))


def resolved_precision(precision: str, device: torch.device) -> str:
    """The precision a run trains in: ``auto`` is ``bf16`` where ``device`` computes
    bfloat16 natively (a CUDA device that supports it; a CPU with AVX512-BF16 or AMX)
    and ``fp32`` elsewhere, so a default config is never the 2-10x slower emulation;
    ``fp32`` and ``bf16`` stay as they are."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or m._backward_pre_hooks)


class CompiledForward:
    """``model.forward`` through ``torch.compile``, installed on the instance.

    A compiled graph does not see hooks registered on submodules after compilation
    (dynamo skips those guards), so a call made while any submodule holds a hook (CAM
    readers such as PART's and Int's) runs the eager forward; every other call runs
    the compiled one. The state dict is unchanged; :meth:`remove` restores the model.

    Args:
        model: the model to compile. backend: a ``torch.compile`` backend (inductor).
    """

    def __init__(self, model: nn.Module, backend: str = "inductor"):
        self.check_supported()
        self.model, self.eager = model, model.forward
        self.compiled = torch.compile(self.eager, backend=backend)
        self.inner = list(model.modules())[1:]
        model.forward = self

    def __call__(self, *args, **kw):
        if any(_has_hooks(m) for m in self.inner):
            return self.eager(*args, **kw)
        try:
            return self.compiled(*args, **kw)
        except Exception as e:
            if not type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise CompileError(
                f"train.compile: torch.compile failed ({type(e).__name__}: {first}); "
                "on CPU it needs a C++ compiler, on CUDA Triton; set compile: false"
            ) from e

    @staticmethod
    def check_supported() -> None:
        """Raise :class:`CompileError` when this Python / PyTorch cannot compile."""
        try:
            import torch._dynamo

            supported = torch._dynamo.is_dynamo_supported()
        except Exception:  # noqa: BLE001  (an unsupported Python raises here)
            supported = False
        if not supported:
            raise CompileError(
                "train.compile: torch.compile is not supported by this Python and "
                f"PyTorch ({torch.__version__}); set compile: false"
            )

    def remove(self) -> None:
        """Put the eager forward back."""
        if self.model.__dict__.get("forward") is self:
            del self.model.forward


@contextlib.contextmanager
def explain_compile_errors(compiled: bool, method: str) -> Iterator[None]:
    """Turn the double-backward refusal of a compiled graph into a message naming the
    method and the key (compiled graphs are differentiable once only)."""
    try:
        yield
    except RuntimeError as e:
        if compiled and "double backward" in str(e):
            raise CompileError(
                f"train.compile: method {method!r} differentiates through a gradient "
                "(double backward), which torch.compile does not support; set "
                "compile: false for it"
            ) from e
        raise


def _rng_state(gen: torch.Generator, device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "method": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["method"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _diff(a: Any, b: Any, path: str = "") -> str | None:
    """The first dotted key where two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if d:
                return d
        return None
    return (
        None
        if json.dumps(a, default=str) == json.dumps(b, default=str)
        else (path or "<root>")
    )


class Trainer:
    """Runs ``method`` on ``stream`` for ``cfg.epochs`` epochs, writing into ``out``.

    Args:
        model: the model, on ``device``. method: a registered training method.
        stream: yields :class:`pipeline.train.method.Batch` (``batches(epoch, start)``).
        cfg: the training config. out: run directory (resume state, metrics, checkpoint).
        meta: sidecar fields for :func:`save_checkpoint` (arch, num_classes, mean, ...).
        device: training device. test: optional ``(uint8 images, labels)`` for the
            per-epoch clean accuracy. masks: optional parameter name -> 0/1 mask
            reapplied after every optimiser step (sparse fine-tuning).
    """

    def __init__(
        self,
        model: nn.Module,
        method: TrainingMethod,
        stream,
        cfg: TrainConfig,
        out: Path,
        meta: dict,
        device: torch.device,
        test: tuple[torch.Tensor, torch.Tensor] | None = None,
        masks: dict[str, torch.Tensor] | None = None,
    ):
        if cfg.precision == "auto":
            cfg = dataclasses.replace(cfg, precision=resolved_precision("auto", device))
        self.model, self.method, self.stream, self.cfg = model, method, stream, cfg
        self.out, self.meta, self.device, self.test = (
            Path(out),
            dict(meta),
            device,
            test,
        )
        self.masks = {k: m.to(device) for k, m in (masks or {}).items()}
        self.params = dict(model.named_parameters())
        unknown = set(self.masks) - set(self.params)
        if unknown:
            raise ValueError(f"masks for unknown parameters: {sorted(unknown)}")
        if cfg.compile:  # before the stage writes anything
            CompiledForward.check_supported()
        self.opt = build_optimizer(model, cfg)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.meta.setdefault("train", to_dict(cfg))
        self.meta.setdefault("params", to_dict(method))
        self.key = resume_key(self.meta)
        self.epoch, self.batch, self.step = 0, 0, 0
        self.saved: tuple[int, int, int] | None = None  # (epoch, batch, step) on disk
        self.acc = self._fresh_acc()

    @staticmethod
    def _fresh_acc() -> dict:
        return {"loss": 0.0, "correct": 0, "n": 0, "seconds": 0.0}

    # -- resume state -------------------------------------------------------------
    def save_resume(self) -> None:
        self._check_weights("saving the resume state")
        state = {
            "key": json.dumps(self.key, sort_keys=True, default=str),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "rng": _rng_state(self.gen, self.device),
            "acc": dict(self.acc),
            "masks": self.masks,
        }
        atomic_torch_save(state, self.out / RESUME_FILE)
        self.saved = (self.epoch, self.batch, self.step)

    def _diverged(self, what: str, at: str) -> TrainingDivergedError:
        cfg, path = self.cfg, self.out / RESUME_FILE
        if self.saved is None:
            kept = f"no resume state was written yet, so {self.out} holds no progress"
            then = "then rerun"
        else:
            e, b, st = self.saved
            kept = (f"{path} still holds the last good state (epoch {e + 1}, batch {b}, "
                    f"step {st})" if b else
                    f"{path} still holds the last good state (end of epoch {e}, step {st})")
            then = (f"then train into another --out, or {_delete_hint(path)} (the same "
                    "settings resume from it)")
        return TrainingDivergedError(
            f"training {self.out} diverged: {what} at epoch {self.epoch + 1}/{cfg.epochs}, "
            f"{at} with method {self.meta.get('method')!r}, opt.lr {cfg.opt.lr:g}; "
            f"stopped without writing it: {kept}. Lower opt.lr or change the method's "
            f"parameters, {then}"
        )

    def _check_weights(self, when: str) -> None:
        if not finite_weights(self.model):
            raise self._diverged(f"the weights are not finite ({when})",
                                 f"after step {self.step - 1}")

    def load_resume(self) -> bool:
        """Load ``DIR/resume.pt`` when present; refuse one made with another config,
        and one that is truncated, corrupt or unsafe (naming it: delete it to restart)."""
        path = self.out / RESUME_FILE
        if not path.is_file():
            return False
        state = read_resume(path, self.key)
        try:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.epoch, self.batch, self.step = (
                int(state["epoch"]),
                int(state["batch"]),
                int(state["step"]),
            )
            _set_rng_state(state["rng"], self.gen, self.device)
            self.acc = dict(state["acc"])
            self.masks = {k: m.to(self.device) for k, m in state["masks"].items()}
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(
                f"resume state {path} does not fit this run ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''}); "
                f"{_delete_hint(path)}"
            ) from None
        self.saved = (self.epoch, self.batch, self.step)
        log.info(
            "resuming %s at epoch %d, batch %d (step %d)",
            self.out,
            self.epoch,
            self.batch,
            self.step,
        )
        return True

    def _truncate_metrics(self) -> None:
        """Drop metric lines of epochs that will be redone (killed after appending)."""
        path = self.out / METRICS_FILE
        if path.is_file():
            keep = [r for r in read_metrics_file(path) if r["epoch"] < self.epoch]
            atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in keep).encode())

    # -- the loop -----------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train to ``cfg.epochs`` (resuming if state exists); returns all epoch metrics."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.load_resume()
        self._truncate_metrics()
        cfg = self.cfg
        log.info(
            "training %s with %s for %d epochs on %s (%s%s%s); attacks craft with BN "
            "in %s mode",
            self.meta.get("arch"),
            self.meta.get("method"),
            cfg.epochs,
            self.device,
            cfg.precision,
            ", channels_last" if cfg.channels_last else "",
            ", compiled" if cfg.compile else "",
            cfg.bn_mode,
        )
        if (cfg.precision == "bf16" and self.device.type == "cpu"
                and cpu_has_native_bf16() is False):
            log.warning("precision bf16 on a CPU without native bfloat16 (no AVX512-BF16 "
                        "or AMX): 2-10x slower than fp32 here; precision: fp32 trains faster")
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        compiled = CompiledForward(self.model) if cfg.compile else None
        self._apply_masks()
        try:
            while self.epoch < cfg.epochs:
                self._run_epoch()
        finally:
            if compiled is not None:
                compiled.remove()
        return self.read_metrics()

    def _run_epoch(self) -> None:
        cfg, model = self.cfg, self.model
        ctx = StepContext(
            epoch=self.epoch,
            epochs=cfg.epochs,
            step=self.step,
            device=self.device,
            num_classes=int(self.meta["num_classes"]),
            steps_per_epoch=int(self.stream.num_batches),
            bn_mode=cfg.bn_mode,
            generator=self.gen,
        )
        self.method.on_epoch_start(model, ctx)
        model.train()
        nb = self.stream.num_batches
        t0 = time.perf_counter()
        bar = tqdm(
            self.stream.batches(self.epoch, self.batch),
            total=nb,
            initial=self.batch,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=None,
        )
        try:
            for batch in bar:
                ctx.step = self.step
                for g in self.opt.param_groups:
                    g["lr"] = cfg.opt.lr * lr_multiplier(
                        cfg.sched, self.step, nb, cfg.epochs
                    )
                if cfg.channels_last:
                    batch.x = batch.x.contiguous(memory_format=torch.channels_last)
                with explain_compile_errors(cfg.compile, self.meta.get("method")):
                    with step_autocast(cfg.precision, self.device):
                        out = self.method.batch_loss(model, batch, ctx)
                    if not isinstance(out, Loss):
                        raise TypeError(
                            f"{type(self.method).__name__}.batch_loss must return "
                            f"Loss(loss, logits), not {type(out).__name__}")
                    loss, logits = out
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                self.opt.step()
                self._apply_masks()
                self._account(loss, logits, batch.y)
                self.step += 1
                self.batch += 1
                bar.set_postfix(loss=f"{self.acc['loss'] / max(self.acc['n'], 1):.3f}")
                if (
                    cfg.checkpoint_every
                    and self.step % cfg.checkpoint_every == 0
                    and self.batch < nb
                ):
                    self.acc["seconds"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save_resume()
        finally:
            bar.close()
        self.acc["seconds"] += time.perf_counter() - t0
        self._end_epoch()

    def _account(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor):
        # train accuracy of the logits batch_loss returns, those of its last forward pass
        # (for adversarial methods, the adversarial examples): free, unlike a separate
        # clean forward
        n = len(y)
        value = float(loss.detach())
        if not math.isfinite(value):
            # the step already ran on it: the in-memory model is lost, the files are not
            raise self._diverged(
                f"the loss is {value}",
                f"step {self.step} (batch {self.batch + 1}/{self.stream.num_batches})",
            )
        self.acc["loss"] += value * n
        self.acc["n"] += n
        if logits.shape[0] == n:
            self.acc["correct"] += int((logits.detach().argmax(1) == y).sum())

    def _apply_masks(self) -> None:
        with torch.no_grad():
            for name, mask in self.masks.items():
                self.params[name].mul_(mask)

    def _end_epoch(self) -> None:
        self._check_weights("end of the epoch")  # before anything of it is written
        acc, cfg = self.acc, self.cfg
        row = {
            "epoch": self.epoch,
            "loss": acc["loss"] / max(acc["n"], 1),
            "train_acc": acc["correct"] / max(acc["n"], 1),
            "test_acc": None,
            "epoch_seconds": acc["seconds"],
            "images_per_s": acc["n"] / max(acc["seconds"], 1e-9),
            "lr": self.opt.param_groups[0]["lr"],
            "step": self.step,
        }
        if self.test is not None:
            row["test_acc"] = clean_accuracy(self.model, *self.test, cfg.eval_batch_size)
        log.info(
            "epoch %d/%d: %s",
            self.epoch + 1,
            cfg.epochs,
            ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)),
        )
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.epoch, self.batch, self.acc = self.epoch + 1, 0, self._fresh_acc()
        meta = {
            **self.meta,
            "epoch": self.epoch,
            "metrics": row,
            "complete": self.epoch >= cfg.epochs,
        }
        save_checkpoint(self.out, self.model, meta)
        self.save_resume()

    def read_metrics(self) -> list[dict]:
        return read_metrics_file(self.out / METRICS_FILE)
