"""The workflow follows the snakemake-workflows conventions: a minimum Snakemake version,
a benchmark file per job, cheap rules as localrules, GPU requests from the config
(`gpus`), package data declared as inputs, and a browsable `snakemake --report`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml
from test_dag import REPO, snakemake
from test_quoting import copy_repo, first_log_line, job_words, option
from test_threads import rule_blocks, shell_command

from pipeline.evaluate.presets import DEFAULT_PRESETS
from pipeline.report.tables import PAPER_TABLES

RULES = {name: block for path in sorted((REPO / "workflow" / "rules").glob("*.smk"))
         for name, block in rule_blocks(path.read_text()).items()}
GPU_RULES = {"train_teacher", "precompute_saliency", "train_student", "sad_calibrate",
             "evaluate"}
LOCAL_RULES = {"all", "check_sweep", "report", "saliency_gallery"}

# snakemake with the package data replaced by copies the test may touch (the DAG and
# the rules' inputs read the same module attributes)
RUNNER = """
import sys
from pathlib import Path
import pipeline.evaluate.presets as presets
import pipeline.report.tables as tables
presets.DEFAULT_PRESETS = Path(sys.argv[1])
tables.PAPER_TABLES = Path(sys.argv[2])
from snakemake.cli import main
sys.argv = ["snakemake", *sys.argv[3:]]
main()
"""


def section(block: str, name: str) -> str:
    """The text of one directive (``output:``, ``params:``, ...) of a rule."""
    m = re.search(rf"^    {name}:(.*\n(?:        .*\n)*)", block, re.M)
    return m.group(1) if m else ""


def dry_jobs(out: str) -> list[dict]:
    """Every job a dry run prints: ``rule`` and its ``key: value`` lines."""
    jobs = []
    for m in re.finditer(r"^(?:local)?rule (\w+):\n((?:    \w+: .*\n)*)", out, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", m.group(2), re.M))
        jobs.append({"rule": m.group(1), **fields})
    return jobs


def resources(job: dict) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in job.get("resources", "").split(", ") if kv)


def test_snakefile_sets_a_minimum_version_the_installed_snakemake_meets():
    from snakemake import __version__
    from snakemake.utils import min_version

    text = (REPO / "Snakefile").read_text()
    m = re.search(r'^min_version\("([\d.]+)"\)$', text, re.M)
    assert m and text.index(m.group(0)) < text.index("configfile:")
    assert int(m.group(1).split(".")[0]) >= 9
    min_version(m.group(1))  # raises if the installed one is older
    assert int(__version__.split(".")[0]) >= 9


def test_every_rule_writes_a_benchmark_under_bench_named_after_it():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r'^LOGS = f"\{W\}/logs"\n(#.*\n)*BENCH = f"\{W\}/benchmarks"$',
                     common, re.M)
    for rule, block in RULES.items():
        if rule == "all":
            continue
        bench = section(block, "benchmark").strip()
        assert bench.startswith(f'f"{{BENCH}}/{rule}/') and bench.endswith('.tsv"'), rule


def test_cheap_rules_are_localrules():
    text = (REPO / "workflow" / "rules" / "stages.smk").read_text()
    m = re.search(r"^localrules:\n((?:    \w+,?\n)+)", text, re.M)
    assert m, "no localrules directive"
    local = set(re.findall(r"\w+", m.group(1)))
    assert local == LOCAL_RULES
    assert local - {"all"} <= set(RULES)


def test_gpu_requests_come_from_one_constant_of_the_config():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r'^GPUS = config\["gpus"\]$', common, re.M)
    for rule, block in RULES.items():
        res = section(block, "resources")
        gpu = re.findall(r"gpu=(\S+?),?$", res, re.M)
        assert gpu == (["GPUS"] if rule in GPU_RULES else []), (rule, gpu)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["gpus"] == 0


def test_the_schema_takes_a_gpu_count_only():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert schema["properties"]["gpus"]["default"] == 0
    jsonschema.validate({**config, "gpus": 2}, schema)
    for bad in (-1, "one", 1.5):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**config, "gpus": bad}, schema)


def test_report_rule_gets_the_benchmarks_as_a_param_and_wraps_its_outputs():
    block = RULES["report"]
    assert "BENCH" not in section(block, "input")
    assert re.search(r"^        benchmarks=BENCH,", section(block, "params"), re.M)
    assert "--benchmarks {params.benchmarks:q}" in shell_command(block)
    out = section(block, "output")
    assert re.search(r'report\(directory\(REPORT\), htmlindex="report\.html", '
                     r'category="Report"', out)
    assert "report(GALLERY, category=" in section(RULES["saliency_gallery"], "output")


@pytest.mark.parametrize("gpus", [None, 1])
def test_dry_run_requests_gpus_from_the_config(gpus, tmp_path):
    args = ["-n", "-p", "--config", "sweep=smoke", f"workdir={tmp_path}"]
    res = snakemake(*args, *([f"gpus={gpus}"] if gpus is not None else []))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    jobs = dry_jobs(out)
    assert GPU_RULES - {"sad_calibrate"} <= {j["rule"] for j in jobs}  # smoke: no SAD
    for job in jobs:
        want = (gpus or 0) if job["rule"] in GPU_RULES else 0
        assert int(resources(job).get("gpu", 0)) == want, job
    if gpus is not None:
        return
    bench = f"{tmp_path}/smoke/benchmarks"
    for job in jobs:  # one benchmark file per job, under the rule's folder
        if job["rule"] != "all":
            assert job["benchmark"].startswith(f"{bench}/{job['rule']}/"), job
    # the package data are inputs of the rules that read them, except the presets file:
    # an evaluation reruns when its own preset's digest (a param) changes
    for job in jobs:
        if job["rule"] == "evaluate":
            assert str(DEFAULT_PRESETS) not in job["input"].split(", "), job
        if job["rule"] == "report":
            tables = sorted(str(p) for p in PAPER_TABLES.glob("*.csv"))
            assert tables and set(tables) <= set(job["input"].split(", ")), job
    (words,) = job_words(out, "report")
    assert option(words, "--benchmarks") == bench
    for words in job_words(out, "evaluate"):
        assert option(words, "--presets") == str(DEFAULT_PRESETS)


def run_with_data(presets: Path, tables: Path, *args: str, cwd: Path) -> str:
    exe = Path(sys.executable)
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([str(exe), "-c", RUNNER, str(presets), str(tables), *args],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    return out


def pending_rules(out: str) -> set[str]:
    return {j["rule"] for j in dry_jobs(out)}


def edit(path: Path, line: str) -> None:
    """Change ``path``'s content (Snakemake compares checksums, not only mtimes) with a
    line its reader ignores, and make it newer than every output of the run."""
    path.write_text(path.read_text() + line)
    later = time.time() + 60
    os.utime(path, (later, later))


@pytest.mark.slow
def test_smoke_run_benchmarks_every_job_and_gives_a_browsable_report(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    presets = tmp_path / "presets.yaml"
    presets.write_text(DEFAULT_PRESETS.read_text())
    tables = tmp_path / "paper_tables"
    tables.mkdir()
    for f in PAPER_TABLES.glob("*.csv"):
        (tables / f.name).write_text(f.read_text())
    config = ["--config", "sweep=smoke", "device=cpu"]
    run_with_data(presets, tables, "--cores", "2", *config, cwd=repo)
    smoke = repo / "data" / "smoke"

    # a benchmark TSV per job, Snakemake's columns
    bench = smoke / "benchmarks"
    for rule in RULES.keys() - {"all", "sad_calibrate"}:
        files = list((bench / rule).rglob("*.tsv"))
        assert files, rule
        header = files[0].read_text().splitlines()[0].split("\t")
        assert {"s", "max_rss", "cpu_time"} <= set(header), (rule, header)
    words = first_log_line(smoke / "logs" / "report.log")
    assert option(words, "--benchmarks") == "data/smoke/benchmarks"
    assert option(words, "--threads") == "1"

    # snakemake --report: the report's page with its figures and Markdown beside it,
    # and the saliency galleries
    run_with_data(presets, tables, "--report", "report.zip", *config, cwd=repo)
    members = zipfile.ZipFile(repo / "report.zip").namelist()
    page = [m for m in members if m.endswith("/report.html") and "/data/" in m]
    assert len(page) == 1, members
    folder = page[0].rsplit("/", 1)[0]
    beside = {m.rsplit("/", 1)[1] for m in members if m.startswith(f"{folder}/")}
    assert {"report.html", "report.md"} <= beside and any(
        n.endswith(".png") for n in beside), beside
    assert any(m.endswith("/cnn_std.grad.png") and not m.startswith(f"{folder}/")
               for m in members), members

    # editing the package data reruns what reads it, and only that
    dry = ["-n", *config]
    assert "Nothing to be done" in run_with_data(presets, tables, *dry, cwd=repo)
    # the presets file: a comment, or an edit of a preset the sweep does not run, reruns
    # nothing (no table is deleted); an edit of the sweep's preset (`quick`) reruns its
    # evaluations
    edit(presets, "# edited\n")
    assert "Nothing to be done" in run_with_data(presets, tables, *dry, cwd=repo)
    text = presets.read_text()
    other = "params: {steps: 40}}"  # the sat preset's pgd40 entry
    assert text.count(other) == 1
    presets.write_text(text.replace(other, "params: {steps: 41}}"))
    assert "Nothing to be done" in run_with_data(presets, tables, *dry, cwd=repo)
    edit(next(tables.glob("*.csv")), "\n")  # a blank line: pandas skips it
    assert pending_rules(run_with_data(presets, tables, *dry, cwd=repo)) == {
        "report", "all"}
    text = presets.read_text()
    quick = text[text.index("  quick:"):text.index("  sat:")]
    # its transfer entry (its PGD-5 entry is shared with `full`, which includes it and sat)
    assert quick.count("attack_params: {steps: 5}}") == 1
    presets.write_text(text.replace(quick, quick.replace("attack_params: {steps: 5}}",
                                                         "attack_params: {steps: 6}}")))
    assert pending_rules(run_with_data(presets, tables, *dry, cwd=repo)) == {
        "evaluate", "report", "all"}
