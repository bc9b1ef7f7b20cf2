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
# --- train commands (end) ---

# --- saliency-cache commands (begin) ---
# --- saliency-cache commands (end) ---

# --- evaluate-report commands (begin) ---
# --- evaluate-report commands (end) ---

# --- sad commands (begin) ---
# --- sad commands (end) ---

if __name__ == "__main__":
    main()
