# The active sweep, the path scheme (the package never invents output paths), the
# target function and wildcard constraints. Functions only; the rules are in stages.smk.
from pipeline.evaluate.presets import DEFAULT_PRESETS
from pipeline.report.claims import CLAIMS_FILE
from pipeline.report.tables import PAPER_TABLES
from pipeline.stages.check_sweep import check
from pipeline.stages.sweep import load_dag, preset_digest, sweep_path

SWEEP = load_dag(config)
# Every comparison the report will make, checked before any job: a sweep whose students
# differ in an undeclared setting (threat model, budget, BN mode, ...) does not start.
check(SWEEP)
SWEEP_FILE = str(sweep_path(config.get("sweep", "tiny")))
P = SWEEP.sweep
W = f"{config['workdir']}/{P.name}"
COMPARISONS = f"{W}/comparisons.json"

STORE = f"{W}/cache/{{dataset}}.zarr"
PREPARED = f"{W}/flags/{{dataset}}/prepared"
SOURCE_DONE = f"{W}/flags/{{dataset}}/saliency/{{source}}.done"
TEACHER = f"{W}/runs/{{dataset}}/teachers/{{teacher}}"
STUDENT = f"{W}/runs/{{dataset}}/students/{{student}}/seed{{seed}}"
SAD = f"{W}/runs/{{dataset}}/sad/{{sad}}/seed{{seed}}"
RESULT = f"{W}/results/{{dataset}}/{{model}}/seed{{seed}}/{{preset}}.parquet"
GALLERY = f"{W}/galleries/{{dataset}}/{{source}}.png"
REPORT = f"{W}/report"
LOGS = f"{W}/logs"
# one Snakemake benchmark TSV per job, <rule>/<wildcards>.tsv (<rule>/<sweep>.tsv where
# the job has no wildcards), read by `salpipe report --benchmarks`: cost per rule
BENCH = f"{W}/benchmarks"

# The package data the jobs read (shipped in the wheel, found by importlib.resources):
# inputs of the rules that read them, so editing them reruns what depends on them
# (the presets file: a param of evaluate, beside the digest of the job's preset).
PRESETS = str(DEFAULT_PRESETS)
PAPER_TABLE_FILES = sorted(str(p) for p in PAPER_TABLES.glob("*.csv"))
CLAIMS = str(CLAIMS_FILE)

# GPUs each GPU-capable job requests (config `gpus`): 0 on CPU-only machines; 1 lets
# `--resources gpu=N` (or a cluster executor) run at most N of them at once.
GPUS = config["gpus"]


def sweep_targets():
    """Every teacher and saliency source of the sweep, every evaluation, the transfer
    sources the evaluations need (seeds outside the sweep's included), the report."""
    return [
        *(f"{TEACHER}/model.pt".format(dataset=d, teacher=t) for d, t in SWEEP.teacher_cells()),
        *(SOURCE_DONE.format(dataset=d, source=s) for d, s in SWEEP.source_cells()),
        *(result_of(d, m, s, p) for d, m, s, p in SWEEP.eval_cells()),
        *(f"{model_dir_of(d, m, s)}/model.pt" for d, m, s in SWEEP.transfer_jobs()),
        REPORT,
    ]


def result_of(dataset, model, seed, preset):
    """The results table of one evaluation, named by its preset."""
    return RESULT.format(dataset=dataset, model=model, seed=seed, preset=preset)


def model_dir_of(dataset, model, seed):
    if SWEEP.is_sad(model):
        return SAD.format(dataset=dataset, sad=model, seed=seed)
    return STUDENT.format(dataset=dataset, student=model, seed=seed)


def model_dir(w):
    return model_dir_of(w.dataset, w.model, w.seed)


def transfer_dirs(w):
    """``{name: run directory}`` of the evaluation's transfer sources."""
    sources = SWEEP.transfer_sources(w.dataset, w.model, int(w.seed), w.preset)
    return {name: model_dir_of(w.dataset, m, s) for name, (m, s) in sources.items()}


def transfer_inputs(w):
    """The transfer sources' checkpoints: an evaluation waits for their jobs."""
    return [f"{d}/model.pt" for d in transfer_dirs(w).values()]


def source_inputs(w):
    teacher = SWEEP.source_teacher(w.source)
    inputs = [PREPARED.format(dataset=w.dataset)]
    if teacher is not None:
        inputs.append(f"{TEACHER}/model.pt".format(dataset=w.dataset, teacher=teacher))
    return inputs


def teacher_option(w):
    teacher = SWEEP.source_teacher(w.source)
    if teacher is None:
        return []
    return ["--teacher", TEACHER.format(dataset=w.dataset, teacher=teacher)]


def student_source_flags(w):
    return [SOURCE_DONE.format(dataset=w.dataset, source=s) for s in SWEEP.student_sources(w.student)]


def sad_base_dir(w):
    return STUDENT.format(dataset=w.dataset, student=SWEEP.sad_base(w.sad), seed=w.seed)


def all_results(w):
    return [result_of(d, m, s, p) for d, m, s, p in SWEEP.eval_cells()]


def all_galleries(w):
    return [GALLERY.format(dataset=d, source=s) for d, s in SWEEP.source_cells()]


def report_runs(w):
    """Training cost per epoch comes from the trained runs (SAD calibrates, no epochs)."""
    return [
        word
        for d, m, s in SWEEP.cells()
        if not SWEEP.is_sad(m)
        for word in ("--runs", model_dir_of(d, m, s))
    ]


def logged(command):
    """The shell line of a job that runs ``command`` and logs it.

    ``command`` is a ``salpipe`` command line whose every field is ``:q``-formatted
    (``{params.args:q}`` quotes each word of a list), so bash splits it into exactly the
    intended words, whatever a path holds (spaces, ``;``, ``$(...)``). Those words are
    kept in a bash array and run as such, never re-parsed (no ``eval``); the log's first
    line is that array printed back shell-quoted (bash's ``printf %q``: one line that a
    user can paste to rerun the job)."""
    return "".join((
        "cmd=(", command, "); printf -v line '%q ' \"${{cmd[@]}}\";",
        ' echo "${{line% }}" > {log:q}; "${{cmd[@]}}" >> {log:q} 2>&1',
    ))


def _alts(names):
    return "|".join(sorted(names)) or "^$"


wildcard_constraints:
    dataset=_alts(P.datasets),
    teacher=_alts(P.teachers),
    source=_alts(s.replace(".", r"\.") for s in P.saliency),
    student=_alts(P.students),
    sad=_alts(P.sad),
    model=_alts(list(P.students) + list(P.sad)),
    seed=r"\d+",
    preset=_alts(SWEEP.presets_used()),
