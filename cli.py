"""salpipe's command line: thin click commands that parse options and call ``run_<stage>``.

Heavy imports (torch, zarr) happen inside command bodies so ``salpipe --help`` is instant.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click


@click.group()
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when present, else CPU), cpu, or cuda[:N].")
@click.option("-v", "--verbose", count=True, help="More log output (-v info is default, -vv debug).")
@click.pass_context
def main(ctx: click.Context, device: str, verbose: int) -> None:
    """salpipe: saliency-guided adversarial robustness, stage by stage."""
    logging.basicConfig(
        level=logging.DEBUG if verbose > 0 else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = {"device": device}


@main.command("list")
def list_registries() -> None:
    """Print every registry (data sets, models, training methods, saliency methods, attacks).

    Reads nothing, writes only to stdout: one heading per registry, one name per line.
    """
    from pipeline.registries import all_registries

    for title, registry in all_registries():
        click.echo(f"{title}:")
        for name in registry.names():
            click.echo(f"  {name}")


# --- data commands (begin) ---
# --- data commands (end) ---

# --- train commands (begin) ---
def _train_cfg(config: Path | None, overrides: dict, sets: tuple[str, ...]):
    """TrainConfig from ``--config`` YAML, ``--set key.path=value`` and explicit options."""
    import yaml

    from pipeline.train.config import train_config_from
    from pipeline.train.stage import params_from_pairs

    data = {}
    if config is not None:
        data = yaml.safe_load(config.read_text()) or {}
    return train_config_from(data, {**params_from_pairs(sets), **overrides},
                             where=f"{config or 'train'}")


def _train_options(f):
    """Options shared by ``train`` and ``train-teacher``."""
    for opt in reversed([
        click.option("--store", type=click.Path(path_type=Path), required=True,
                     help="Prepared zarr store (reads train/ and the test split)."),
        click.option("--out", type=click.Path(path_type=Path), required=True,
                     help="Run directory: writes model.pt, model.json, metrics.jsonl, "
                          "config.yaml (and resume.pt while running)."),
        click.option("--arch", default=None, help="MODELS name (overrides net.arch)."),
        click.option("--width", type=int, default=None, help="Base width of the model."),
        click.option("--config", "config", type=click.Path(path_type=Path, exists=True),
                     default=None, help="Training config YAML (TrainConfig keys)."),
        click.option("--epochs", type=int, default=None),
        click.option("--batch-size", type=int, default=None),
        click.option("--lr", type=float, default=None, help="Peak learning rate."),
        click.option("--seed", type=int, default=None),
        click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Training config override, e.g. -s sched.name=onecycle."),
        click.option("-p", "params", multiple=True, metavar="KEY=VALUE",
                     help="Training-method parameter, e.g. -p eps=8/255 -p steps=5."),
    ]):
        f = opt(f)
    return f


def _train_run(fn, *args, **kw):
    from pipeline.config import ConfigError

    try:
        return fn(*args, **kw)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e


@main.command("train")
@_train_options
@click.option("--method", required=True, help="TRAINING name (see `salpipe list`).")
@click.pass_context
def train_cmd(ctx, store, out, arch, width, config, epochs, batch_size, lr, seed, sets,
              params, method) -> None:
    """Train a model with any registered training method.

    Reads STORE's train split (and the test split for per-epoch clean accuracy); writes
    the run directory OUT. Resumes a killed run; a finished identical run is skipped.
    """
    from pipeline.train.stage import params_from_pairs, run_train

    over = {"net.arch": arch, "net.width": width, "epochs": epochs,
            "batch_size": batch_size, "opt.lr": lr, "seed": seed}
    cfg = _train_run(_train_cfg, config, over, sets)
    res = _train_run(run_train, store, method, _train_run(params_from_pairs, params), cfg,
                     out, device=ctx.obj["device"])
    click.echo(f"{'skipped (already finished)' if res['skipped'] else 'trained'}: {out}")


@main.command("train-teacher")
@_train_options
@click.option("--mode", type=click.Choice(["std", "adv", "sparse"]), required=True,
              help="std: standard; adv: pgd_at; sparse: standard, 95% magnitude-pruned, "
                   "fine-tuned with the mask held (dense run in OUT/dense).")
@click.option("--sparsity", type=float, default=None, help="sparse: fraction pruned.")
@click.option("--finetune-epochs", type=int, default=None, help="sparse: fine-tune epochs.")
@click.pass_context
def train_teacher_cmd(ctx, store, out, arch, width, config, epochs, batch_size, lr, seed,
                      sets, params, mode, sparsity, finetune_epochs) -> None:
    """Train a stage-one teacher (std, adv or sparse) on STORE into OUT.

    Reads STORE's train and test splits; writes OUT/model.pt, model.json (sidecar),
    metrics.jsonl and config.yaml (sparse: also OUT/dense/).
    """
    from pipeline.train.stage import params_from_pairs, run_train_teacher

    over = {"net.width": width, "epochs": epochs, "batch_size": batch_size,
            "opt.lr": lr, "seed": seed}
    cfg = _train_run(_train_cfg, config, over, sets)
    prune = {k: v for k, v in (("sparsity", sparsity), ("finetune_epochs", finetune_epochs))
             if v is not None}
    res = _train_run(run_train_teacher, store, arch or cfg.net.arch, mode, out, cfg,
                     device=ctx.obj["device"], params=_train_run(params_from_pairs, params),
                     prune=prune)
    click.echo(f"{'skipped (already finished)' if res['skipped'] else 'trained'}: {out}")
# --- train commands (end) ---

# --- saliency-cache commands (begin) ---
# --- saliency-cache commands (end) ---

# --- evaluate-report commands (begin) ---
# --- evaluate-report commands (end) ---

# --- sad commands (begin) ---
# --- sad commands (end) ---

if __name__ == "__main__":
    main()
