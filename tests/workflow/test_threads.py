"""``salpipe --threads N``: one number sizes torch's intra- and inter-op pools and Dask's
local pool (each probe runs in a fresh process: torch sizes its inter-op pool only once);
the default is every core the process may use; bad values are click errors; and every
rule that runs salpipe hands it the rule's ``threads``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from pipeline.core.threads import THREAD_ENV_VARS, available_cores, set_threads

REPO = Path(__file__).resolve().parents[2]
RULES = sorted((REPO / "workflow" / "rules").glob("*.smk"))

# a command added to the real CLI group that reports what the command body sees
PROBE = """
import os, sys
import click
import cli

if os.environ.get("PROBE_ONE_CORE"):  # a narrower affinity mask, as SLURM or taskset give
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

@cli.main.command("probe")
def probe():
    import dask
    import torch
    click.echo(" ".join(str(v) for v in (
        torch.get_num_threads(), torch.get_num_interop_threads(),
        dask.config.get("num_workers"), os.environ.get("OMP_NUM_THREADS"))))

cli.main(sys.argv[1:])
"""


def run_probe(*args: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in (*THREAD_ENV_VARS, "SALPIPE_THREADS")}
    res = subprocess.run([sys.executable, "-c", PROBE, *args, "probe"], cwd=REPO,
                         env={**clean, "PYTHONPATH": str(REPO), **env},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.split()


def test_threads_1_reaches_torch_and_dask_inside_a_command():
    # an explicit count also replaces an OMP_NUM_THREADS already set
    assert run_probe("--device", "cpu", "--threads", "1", OMP_NUM_THREADS="7") == [
        "1", "1", "1", "1"]


def test_default_is_every_core_the_process_may_use():
    n = str(available_cores())
    assert run_probe() == [n, n, n, n]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity masks")
def test_default_follows_the_affinity_mask_and_keeps_the_env():
    assert run_probe(PROBE_ONE_CORE="1", OMP_NUM_THREADS="7") == ["1", "1", "1", "7"]


def test_salpipe_threads_env_is_the_default_an_option_beats_it():
    assert run_probe(SALPIPE_THREADS="1") == ["1", "1", "1", "1"]
    assert run_probe("--threads", "2", SALPIPE_THREADS="1")[:3] == ["2", "2", "2"]


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_thread_counts_are_click_errors(value):
    res = CliRunner().invoke(main, ["--threads", value, "list"])
    assert res.exit_code == 2, res.output
    assert "Invalid value for '--threads'" in res.output and value in res.output


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_set_threads_refuses_what_is_not_a_count(value):
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        set_threads(value)


def test_a_second_call_keeps_the_inter_op_pool_and_resizes_the_rest():
    code = ("from pipeline.core.threads import set_threads; import torch, dask;"
            "set_threads(1); set_threads(2);"
            "print(torch.get_num_threads(), torch.get_num_interop_threads(),"
            " dask.config.get('num_workers'))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["2", "1", "2"]


def test_a_commands_help_does_not_import_torch():
    code = ("import sys, cli\ntry:\n    cli.main(sys.argv[1:])\nfinally:\n"
            "    print('torch loaded:', 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code, "--threads", "1", "evaluate",
                          "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--presets" in res.stdout and "torch loaded: False" in res.stdout


def rule_blocks(text: str) -> dict[str, str]:
    """``{rule name: its text}`` of one .smk file (a rule ends at the next top-level
    statement)."""
    return {m.group(1): m.group(2) for m in re.finditer(
        r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M)}


def shell_command(block: str) -> str | None:
    """The concatenated string literals of the rule's ``shell:`` section, or None."""
    m = re.search(r"^    shell:\n((?:        .*\n|\n)*)", block, re.M)
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))) if m else None


def global_options(command: str) -> dict[str, str]:
    """The options given to the ``salpipe`` group, before its subcommand."""
    words = command.split()
    words = words[words.index("salpipe") + 1:]
    opts, i = {}, 0
    while i < len(words) and words[i].startswith("-"):
        if words[i] in ("-v", "--verbose"):
            opts[words[i]], i = "", i + 1
        else:
            opts[words[i]], i = words[i + 1], i + 2
    return opts


def salpipe_rules() -> dict[str, str]:
    rules = {}
    for path in RULES:
        for name, block in rule_blocks(path.read_text()).items():
            command = shell_command(block)
            if command and re.search(r"\bsalpipe\b", command):
                rules[name] = block
    return rules


def test_the_rule_files_hold_the_stage_rules():
    assert {"prepare_data", "train_teacher", "precompute_saliency", "train_student",
            "sad_calibrate", "evaluate", "report"} <= set(salpipe_rules())


@pytest.mark.parametrize("rule", sorted(salpipe_rules()))
def test_every_salpipe_rule_passes_its_threads(rule):
    block = salpipe_rules()[rule]
    assert re.search(r"^    threads: \S+", block, re.M), f"{rule} declares no threads"
    opts = global_options(shell_command(block))
    assert opts.get("--threads") in ("{threads}", "{threads:q}"), (rule, opts)
