"""salpipe's command line: thin click commands that parse options and call ``run_<stage>``.

Heavy imports (torch, zarr) happen inside command bodies so ``salpipe --help`` is instant.
Every command's expected errors (bad config, missing files, mismatched checkpoints or
caches) reach the user as ``Error: ...`` through one place, :class:`SalpipeGroup`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger("salpipe")

# The errors a stage raises for bad input (config errors, data errors, mismatched
# checkpoints and caches are ValueErrors; missing names KeyErrors; missing or existing
# files OSErrors; an asked-for device that is absent a RuntimeError).
USER_ERRORS = (ValueError, KeyError, OSError, RuntimeError)


class UsageProblem(click.ClickException):
    """A bad option, name or config value: ``Error: ...`` with exit status 2 (click's
    code for usage errors); a job that failed on its inputs exits 1."""

    exit_code = 2


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and type(err).__str__ is KeyError.__str__ and err.args:
        return str(err.args[0])  # KeyError's own str() would quote the message
    return str(err) or type(err).__name__


def _is_usage(err: BaseException) -> bool:
    from pipeline.config import ConfigError
    from pipeline.core.registry import UnknownNameError

    return isinstance(err, (ConfigError, UnknownNameError))


class SalpipeGroup(click.Group):
    """The one error boundary of the CLI: a stage's bad-input error becomes
    ``Error: <message>`` (exit 2 for a bad option, name or config value, 1 for a job
    that failed on its inputs); with ``-v`` the traceback is logged too."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: usage errors, --help, ctx.exit(), Ctrl-C
        except USER_ERRORS as e:
            log.debug("traceback of the error below", exc_info=True)
            cls = UsageProblem if _is_usage(e) else click.ClickException
            raise cls(_message(e)) from e


def _check_device(ctx, param, value: str) -> str:
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r}: expected auto, cpu, cuda or cuda:N")
    return value


@click.group(cls=SalpipeGroup)
@click.option("--device", default="auto", show_default=True, callback=_check_device,
              help="auto (CUDA when present, else CPU), cpu, or cuda[:N].")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              envvar="SALPIPE_THREADS",
              help="Threads of torch (intra- and inter-op) and of Dask's local pool "
                   "[default: $SALPIPE_THREADS, else every core this process may use].")
@click.option("-v", "--verbose", is_flag=True,
              help="Debug log output, and the traceback of an error (default: info).")
@click.pass_context
def main(ctx: click.Context, device: str, threads: int | None, verbose: bool) -> None:
    """salpipe: saliency-guided adversarial robustness, stage by stage."""
    import sys

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # first, before any torch work: torch sizes its inter-op pool only once. A command's
    # --help runs nothing, so it skips the torch import and stays instant (click has
    # taken the command's words off ctx by now: the process's own are looked at).
    if not set(ctx.help_option_names) & set(sys.argv[1:]):
        from pipeline.core.threads import set_threads

        threads = set_threads(threads)
    ctx.obj = {"device": device, "threads": threads}


def _pairs(pairs: tuple[str, ...], flag: str = "-p") -> dict:
    """``KEY=VALUE`` pairs -> dict (values parsed as YAML scalars: ``n=5`` -> 5)."""
    from pipeline.config import parse_pairs

    return parse_pairs(pairs, flag)


@main.command("list")
def list_registries() -> None:
    """Print every registry (data sets, models, training methods, saliency methods, attacks).

    Reads nothing, writes only to stdout: one heading per registry, one name per line.
    """
    from pipeline.stages.listing import all_registries

    for title, registry in all_registries():
        click.echo(f"{title}:")
        for name in registry.names():
            click.echo(f"  {name}")


@main.command("prepare-data")
@click.option("--dataset", required=True, help="Data set name (see `salpipe list`).")
@click.option("--root", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Folder of the data set on disk (not needed for shapes).")
@click.option("--store", "out", required=True,
              help="Zarr store to write, e.g. data/cache/cifar10.zarr (path or fsspec URL).")
@click.option("--resolution", type=int, help="Output image side in pixels.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Adapter parameter (repeatable), e.g. -p limit=500 -p fit=crop.")
@click.option("--chunk", type=int, default=512, show_default=True, help="Images per chunk.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
def prepare_data(dataset, root, out, resolution, params, chunk, overwrite) -> None:
    """Decode a data set into its Zarr cache store.

    Reads the data set under --root (or generates `shapes`); writes --store with images,
    labels and, where the data set has them, annotations/mask and annotations/bbox per
    split, plus a content fingerprint. Does nothing if the store is already up to date.
    """
    from pipeline.config import build_method
    from pipeline.data import DATASETS
    from pipeline.stages.prepare_data import run_prepare_data

    kw = _pairs(params)
    kw.update({k: v for k, v in (("root", root and str(root)), ("resolution", resolution))
               if v is not None})
    cfg = build_method(DATASETS, dataset, kw, "dataset")
    summary = run_prepare_data(cfg, out, chunk=chunk, overwrite=overwrite)
    click.echo(f"{summary['store']}: {summary['split_sizes']} fingerprint "
               f"{summary['fingerprint'][:12]}{' (up to date)' if summary['skipped'] else ''}")

def _train_cfg(config: Path | None, overrides: dict, sets: tuple[str, ...]):
    """TrainConfig from ``--config`` YAML, ``--set key.path=value`` and explicit options."""
    from pipeline.config import load_yaml_file
    from pipeline.train.config import train_config_from

    data = {}
    if config is not None:
        data = load_yaml_file(config, "training config") or {}
    # an explicit option beats -s; an option left unset must not erase a -s value
    given = {k: v for k, v in overrides.items() if v is not None}
    return train_config_from(data, {**_pairs(sets, "-s"), **given},
                             where=f"{config or 'train'}")


def _train_options(f):
    """Options shared by ``train`` and ``train-teacher``."""
    for opt in reversed([
        click.option("--store", required=True,
                     help="Prepared zarr store, path or fsspec URL (reads train/ and the "
                          "test split)."),
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


@main.command("train")
@_train_options
@click.option("--method", required=True, help="TRAINING name (see `salpipe list`).")
@click.option("--saliency", "saliency", multiple=True, metavar="SOURCE",
              help="Cached saliency source for stage-two methods (repeatable), e.g. "
                   "resnet10_adv.gbp or annotation.mask.")
@click.option("--stream", type=click.Choice(["auto", "memory", "chunks"]), default=None,
              help="Training stream: memory (resident), chunks (chunk reads with a "
                   "shuffle buffer), auto (memory when it fits). Default: config's "
                   "stream.")
@click.pass_context
def train_cmd(ctx, store, out, arch, width, config, epochs, batch_size, lr, seed, sets,
              params, method, saliency, stream) -> None:
    """Train a model with any registered training method.

    Reads STORE's train split, its cached saliency sources named by --saliency, and the
    test split (per-epoch clean accuracy); writes the run directory OUT. Resumes a
    killed run; a finished identical run is skipped.
    """
    from pipeline.stages.train import run_train

    over = {"net.arch": arch, "net.width": width, "epochs": epochs,
            "batch_size": batch_size, "opt.lr": lr, "seed": seed, "stream": stream}
    cfg = _train_cfg(config, over, sets)
    res = run_train(store, method, _pairs(params), cfg, out, device=ctx.obj["device"],
                    saliency=saliency)
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
    from pipeline.stages.train import run_train_teacher

    over = {"net.width": width, "epochs": epochs, "batch_size": batch_size,
            "opt.lr": lr, "seed": seed}
    cfg = _train_cfg(config, over, sets)
    prune = {k: v for k, v in (("sparsity", sparsity), ("finetune_epochs", finetune_epochs))
             if v is not None}
    res = run_train_teacher(store, arch or cfg.net.arch, mode, out, cfg,
                            device=ctx.obj["device"], params=_pairs(params), prune=prune)
    click.echo(f"{'skipped (already finished)' if res['skipped'] else 'trained'}: {out}")

@main.command("precompute-saliency")
@click.option("--store", required=True, help="Data set store (path or fsspec URL); written into.")
@click.option("--split", default="train", show_default=True)
@click.option("--teacher", type=click.Path(path_type=Path), help="Teacher run directory.")
@click.option("--method", help="Saliency method (registry name, see `salpipe list`).")
@click.option("-p", "--param", "params", multiple=True, help="Method parameter key=value.")
@click.option("--target", type=click.Choice(["label", "pred"]), default=None,
              help="Saliency of the true class (label) or the teacher's prediction (pred) "
                   "[default: pred, as in the sweep files].")
@click.option("--source", help="Source name [default: <teacher dir name>.<method>]; "
              "annotation.mask / annotation.bbox for weak saliency from annotations.")
@click.option("--batch-size", default=128, show_default=True, help="Images per batch.")
@click.option("--workers", type=int, help="Threads of the local Dask scheduler.")
@click.option("--scheduler", help="dask.distributed scheduler address (default: local threads).")
@click.option("--overwrite", is_flag=True, help="Recompute an existing source.")
@click.pass_context
def precompute_saliency(ctx, store, split, teacher, method, params, target, source,
                        batch_size, workers, scheduler, overwrite) -> None:
    """Cache one saliency source of a split in the store (resumable, idempotent).

    Reads the split's images/labels (or annotations) and the teacher checkpoint; writes
    <split>/saliency/<source>/{map,sign,mask[,bbox]} into the store, chunk by chunk.
    """
    from pipeline.core.seeds import resolve_device
    from pipeline.stages.precompute_saliency import PrecomputeConfig, run_precompute

    given = {"target": target} if target is not None else {}
    cfg = PrecomputeConfig(split=split, teacher=teacher, method=method, source=source,
                           params=_pairs(params), batch_size=batch_size, workers=workers,
                           **given)
    res = run_precompute(store, cfg, device=str(resolve_device(ctx.obj["device"])),
                         scheduler=scheduler, overwrite=overwrite)
    if res["status"] == "nothing to do":
        click.echo(f"{res['source']}: complete with the same provenance, nothing to do")
    else:
        click.echo(f"{res['source']}: computed {len(res['computed'])} of {res['chunks']} "
                   f"chunks in {res['seconds']:.1f} s")


@main.group("cache")
def cache() -> None:
    """Inspect, verify and export the saliency cache of a data set store."""


@cache.command("info")
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def cache_info_cmd(store, as_json) -> None:
    """Print sources, sizes on disk, completeness, provenance, pointing-game scores.

    Reads the store; writes only to stdout.
    """
    import json

    from pipeline.stages.cache_info import cache_info, format_info

    info = cache_info(store)
    click.echo(json.dumps(info, indent=2) if as_json else format_info(info))


@cache.command("verify")
@click.argument("store")
@click.option("--split", help="Only this split.")
@click.option("--source", help="Only this saliency source.")
@click.option("--sample", default=1, show_default=True, help="Chunks per source to recompute.")
@click.option("--teacher", type=click.Path(path_type=Path),
              help="Teacher run directory, if it moved since precompute.")
@click.pass_context
def cache_verify_cmd(ctx, store, split, source, sample, teacher) -> None:
    """Check every chunk (present, intact) and recompute sampled chunks; exit 1 on failure.

    Reads the store and the recorded teachers; writes nothing.
    """
    from pipeline.core.seeds import resolve_device
    from pipeline.stages.cache_verify import run_verify

    report = run_verify(store, split, source, sample=sample, teacher=teacher,
                        device=str(resolve_device(ctx.obj["device"])))
    for line in report.checked:
        click.echo(f"ok: {line}")
    for line in report.problems:
        click.echo(f"FAIL: {line}", err=True)
    if not report.ok:
        ctx.exit(1)
    click.echo("cache verified")


@cache.command("export")
@click.argument("store")
@click.option("--to", "out", required=True, type=click.Path(path_type=Path),
              help="HDF5 file to write.")
@click.option("--split", help="Only this split.")
@click.option("--source", help="Only this saliency source (images and labels kept).")
def cache_export_cmd(store, out, split, source) -> None:
    """Copy the store's arrays and attrs (JSON-encoded) into one HDF5 file, atomically.

    Reads the store; writes --to.
    """
    from pipeline.stages.cache_export import run_export

    res = run_export(store, out, split=split, source=source)
    click.echo(f"wrote {res['out']}: {len(res['arrays'])} arrays, {res['bytes']} bytes")


@main.command("check-sweep")
@click.argument("sweep")
@click.option("--out", type=click.Path(path_type=Path),
              help="Also write the comparison as JSON (read by `salpipe report`).")
@click.option("--quiet", is_flag=True, help="Print only the summary and the errors.")
def check_sweep_cmd(sweep, out, quiet) -> None:
    """Check that every comparison a sweep's report makes is fair.

    SWEEP is a sweep name (config/sweeps/NAME.yaml) or a path to a sweep file. Lists
    every pair of students the report puts side by side and the settings they share;
    exits 1 if a pair differs in a setting neither student declares as a deviation.
    Reads the sweep and training config files; writes only --out.
    """
    from pipeline.stages.check_sweep import compare, write_comparison
    from pipeline.stages.sweep import load_dag_of

    result = compare(load_dag_of(sweep))
    text = result.text()
    if quiet:
        text = "\n".join(ln for ln in text.splitlines()
                         if "ERROR" in ln or ln.startswith("sweep "))
    click.echo(text)
    if out is not None:
        write_comparison(result, out)
    if result.errors:
        raise click.exceptions.Exit(1)


@main.command("show-saliency")
@click.option("--store", required=True, help="Data set store (path or fsspec URL).")
@click.option("--source", required=True, help="Saliency source, e.g. resnet10_adv.gbp.")
@click.option("--split", default="train", show_default=True)
@click.option("--n", default=16, show_default=True, help="Number of images (rows).")
@click.option("--start", default=0, show_default=True, help="Index of the first image.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="PNG to write.")
def show_saliency(store, source, split, n, start, out) -> None:
    """Draw image, map, sign and mask side by side for n cached images.

    Reads the store; writes the PNG --out.
    """
    from pipeline.stages.show_saliency import run_show_saliency

    res = run_show_saliency(store, source, out, split=split, n=n, start=start)
    click.echo(f"wrote {res['out']} ({len(res['images'])} images)")


def _source_models(ctx, param, values: tuple[str, ...]) -> dict[str, Path]:
    """``--source-model NAME=DIR`` (repeatable; a bare ``DIR`` is ``default``) -> dict."""
    import re

    out: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = "default", value
        elif not re.fullmatch(r"[a-z0-9_]+", name):
            raise click.BadParameter(
                f"{value!r}: expected NAME=DIR with NAME of [a-z0-9_]+ (a transfer entry's "
                "source_name), or a bare DIR (the source default; a DIR holding '=' is "
                "written default=DIR)", param=param)
        if not path:
            raise click.BadParameter(f"{value!r}: the run directory after {name}= is "
                                     "missing", param=param)
        if name in out:
            raise click.BadParameter(f"{value!r}: the source {name!r} is given twice "
                                     f"(also {out[name]}); give each name once", param=param)
        out[name] = Path(path)
    return out


@main.command("evaluate")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Checkpoint run directory (model.pt + model.json).")
@click.option("--store", required=True, help="Data set Zarr store (path or fsspec URL).")
@click.option("--preset", default="quick", show_default=True,
              help="Attack preset of the presets file (quick, sat, sat_cpu, pgd20, sip, "
                   "sip_cpu, sad, defence, defence_cpu, defence_survivors, defence_quick, "
                   "int, int_cpu, full).")
@click.option("--split", default="test", show_default=True)
@click.option("--n", type=int, default=None, help="Evaluate the first N images (default all).")
@click.option("--batch-size", default=256, show_default=True, help="Attack batch size; results do not depend on it.")
@click.option("--seed", default=0, show_default=True, help="Evaluation seed (random starts, noise).")
@click.option("--source-model", "source_models", multiple=True, metavar="NAME=DIR",
              callback=_source_models,
              help="A source model of transfer attacks: its name (a preset transfer "
                   "entry's params.source_name) and run directory; repeatable. A bare DIR "
                   "is the source named default.")
@click.option("--presets", "presets_file", type=click.Path(path_type=Path), default=None,
              help="Presets YAML (default: pipeline/resources/presets.yaml, shipped "
                   "with the package).")
@click.option("--force", is_flag=True,
              help="Re-run an evaluation already in --out (afresh: a killed run's "
                   "journal is ignored).")
@click.option("--view", "views", multiple=True,
              type=click.Choice(["adaptive", "adaptive_bpda", "smooth", "nonadaptive"]),
              help="Wrapped defences (SAD) only: what the attacks see - the whole defence "
                   "(exact, BPDA or smooth-surrogate gradients) or the inner network. "
                   "Repeatable; default all.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Results Parquet table; rows are appended.")
@click.pass_context
def evaluate(ctx, model_dir, store, preset, split, n, batch_size, seed, source_models,
             presets_file, force, views, out):
    """Evaluate a checkpoint with an attack preset; append rows to a results table.

    Reads the checkpoint, the split of the store and the presets; writes --out atomically
    (one row per attack x eps x metric: accuracy, Kendall's tau, flags). A second run
    with the same model, split, preset, n and seed does nothing unless --force. A killed
    evaluation, rerun, resumes at its first unfinished attack run (the journal beside
    --out, removed once the table is written).
    """
    from pipeline.stages.evaluate import run_evaluate

    summary = run_evaluate(model_dir, store, split, preset, out, ctx.obj["device"], n=n,
                           batch_size=batch_size, seed=seed, source_model=source_models,
                           presets_file=presets_file, force=force,
                           views=list(views) or None)
    click.echo("already evaluated: nothing to do" if summary["skipped"]
               else f"wrote {summary['rows']} rows to {out}")


@main.command("report")
@click.option("--results", required=True, multiple=True, type=click.Path(path_type=Path),
              help="Results Parquet table(s) from salpipe evaluate (repeatable).")
@click.option("--runs", multiple=True, type=click.Path(path_type=Path),
              help="Training run directories (their metrics.jsonl give the cost per epoch).")
@click.option("--gallery", multiple=True, type=click.Path(path_type=Path),
              help="Saliency gallery PNG(s) to include.")
@click.option("--gallery-store", default=None,
              help="Store whose cached saliency sources get a gallery each.")
@click.option("--gallery-source", multiple=True,
              help="Saliency source to draw from --gallery-store (repeatable).")
@click.option("--gallery-split", default="test", show_default=True)
@click.option("--comparisons", type=click.Path(path_type=Path),
              help="comparisons.json of `salpipe check-sweep --out`: training settings "
                   "and declared deviations beside the rows.")
@click.option("--benchmarks", type=click.Path(path_type=Path),
              help="Folder of Snakemake benchmark files (<rule>/<job>.tsv): a cost table "
                   "per rule. Missing or empty: no table.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Report folder.")
@click.argument("more_results", nargs=-1, type=click.Path(path_type=Path))
def report(results, runs, gallery, gallery_store, gallery_source, gallery_split, comparisons,
           benchmarks, out, more_results):
    """Write report.md, report.html and PNG figures from results tables.

    Reads the results tables, the published tables (package data), optional run
    directories, gallery PNGs, cached saliency sources and Snakemake benchmark files;
    writes the folder --out (replaced atomically).
    """
    from pipeline.stages.report import run_report

    # `--results R1 R2 ...`: click options take one value, the rest arrive as arguments
    summary = run_report([*results, *more_results], out, runs=list(runs),
                         galleries=list(gallery),
                         gallery_store=gallery_store, gallery_sources=list(gallery_source),
                         gallery_split=gallery_split, comparisons=comparisons,
                         benchmarks=benchmarks)
    click.echo(f"report written to {summary['out']} ({len(summary['tables'])} tables, "
               f"{summary['flags']} flags)")

@main.command("publish")
@click.option("--sweep-dir", required=True, type=click.Path(path_type=Path),
              help="The sweep's folder, data/<sweep> (results/, benchmarks/, report/).")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Report folder to publish (default: <sweep-dir>/report).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Folder to commit, e.g. docs/results/<sweep>.")
def publish(sweep_dir, report_dir, out):
    """Copy a sweep's evidence into a folder to commit: the report, results.csv,
    benchmarks.csv and comparisons.json; never models. Files in --out that no publish
    wrote (a README) are left alone."""
    from pipeline.stages.publish import run_publish

    summary = run_publish(sweep_dir, out, report_dir)
    click.echo(f"published {len(summary['files'])} files to {summary['out']} "
               f"({summary['rows']} result rows, {summary['jobs']} jobs)")


def _sad_default(key: str) -> str:
    """`` [default: V]`` from SadConfig, the one place SAD's defaults live."""
    from pipeline.config.sad import SadConfig  # light: no torch

    return f" [default: {getattr(SadConfig(), key)}]"


@main.command("sad-calibrate")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory of the original model (standard, PGD-AT, TRADES).")
@click.option("--store", required=True, help="Data set store (path or fsspec URL).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output run directory (a checkpoint with a 'sad' wrapper block).")
@click.option("--ratio", type=float, default=None,
              help=f"Hybridization ratio r (paper Table 4 sweeps 0.5-0.9){_sad_default('ratio')}.")
@click.option("--attack", default=None,
              help=f"Attack crafting x_adv under the original model (ATTACKS name)"
                   f"{_sad_default('attack')}.")
@click.option("-p", "--attack-param", "attack_params", multiple=True, metavar="KEY=VALUE",
              help="Attack parameter, e.g. -p eps=8/255 -p steps=10.")
@click.option("--saliency", default=None,
              help=f"Saliency method of the predicted class (SALIENCY name)"
                   f"{_sad_default('saliency')}.")
@click.option("--saliency-param", "saliency_params", multiple=True, metavar="KEY=VALUE",
              help="Saliency method parameter.")
@click.option("--normalise", type=click.Choice(["maxabs", "minmax", "sign", "raw"]),
              default=None, help=f"Per-image map normalisation{_sad_default('normalise')}.")
@click.option("--bn-update/--no-bn-update", default=None,
              help="--no-bn-update: saliency-only ablation, keep the BN statistics "
                   "(paper Table 5).")
@click.option("--add-saliency/--no-saliency", default=None,
              help="--no-saliency: BN-recalibration-only ablation, no map added "
                   "(calibration, inference).")
@click.option("--grad-mode", type=click.Choice(["exact", "bpda"]), default=None,
              help="Gradient mode of the saved model [default: exact for grad, else bpda].")
@click.option("--batches", type=int, default=None, help="Use at most N batches [default: all].")
@click.option("--batch-size", type=int, default=None,
              help=f"Calibration batch size{_sad_default('batch_size')}.")
@click.option("--seed", type=int, default=None,
              help=f"Batch order and attack random starts{_sad_default('seed')}.")
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any SAD setting (SadConfig key), e.g. -s ratio=0.5 or dotted into a "
                   "mapping, -s saliency_params.n=5; an explicit option beats it.")
@click.option("--split", default="train", show_default=True, help="Calibration split.")
@click.option("--overwrite", is_flag=True, help="Replace an OUT of another configuration.")
@click.pass_context
def sad_calibrate(ctx, model_dir, store, out, ratio, attack, attack_params, saliency,
                  saliency_params, normalise, bn_update, add_saliency, grad_mode, batches,
                  batch_size, seed, sets, split, overwrite) -> None:
    """SAD (paper 001, Alg. 1): recalibrate BN statistics on saliency-processed PGD data.

    Reads the checkpoint --model and the --split of --store; writes the checkpoint --out
    (recalibrated weights + sidecar 'wrapper: sad'), loaded as the whole SAD model by
    load_model / salpipe evaluate. Only BN running statistics change. Idempotent.
    Settings left out take the SadConfig defaults (pipeline/config/sad.py).
    """
    from pipeline.config import parse_pairs
    from pipeline.config.sad import sad_config
    from pipeline.stages.sad_calibrate import run_sad_calibrate

    settings = parse_pairs(sets, "-s")  # dotted keys reach into mappings
    for key, pairs, flag in (("attack_params", attack_params, "-p"),
                             ("saliency_params", saliency_params, "--saliency-param")):
        settings.update({f"{key}.{k}": v for k, v in parse_pairs(pairs, flag).items()})
    settings.update({k: v for k, v in {
        "ratio": ratio, "attack": attack, "saliency": saliency, "normalise": normalise,
        "bn_update": bn_update, "add_saliency": add_saliency, "grad_mode": grad_mode,
        "batches": batches, "batch_size": batch_size, "seed": seed}.items()
        if v is not None})
    cfg = sad_config(settings, "sad-calibrate")
    res = run_sad_calibrate(model_dir, store, out, cfg, device=ctx.obj["device"],
                            split=split, overwrite=overwrite)
    click.echo(f"skipped (already calibrated): {out}" if res["skipped"] else
               f"wrote {res['method']} to {out} ({res['batches']} batches)")


if __name__ == "__main__":
    main()
