# salpipe SWEEP: prepare_data -> train_teacher -> precompute_saliency -> train_student
# (and sad_calibrate) -> evaluate -> report. Every rule only calls `salpipe <stage>` with
# explicit paths; every choice comes from config/ (config.yaml and the active profile).
from snakemake.utils import validate

from pipeline.config.dag import Dag


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")

SWEEP = Dag.from_config(config)
P = SWEEP.profile
W = f"{config['workdir']}/{P.name}"
DEVICE = config["device"]

# the path scheme (the package never invents output paths)
STORE = W + "/cache/{dataset}.zarr"
PREPARED = W + "/flags/{dataset}/prepared"
SOURCE_DONE = W + "/flags/{dataset}/saliency/{source}.done"
TEACHER = W + "/runs/{dataset}/teachers/{teacher}"
STUDENT = W + "/runs/{dataset}/students/{student}/seed{seed}"
SAD = W + "/runs/{dataset}/sad/{sad}/seed{seed}"
RESULT = W + "/results/{dataset}/{model}/seed{seed}/" + P.evaluate.preset + ".parquet"
GALLERY = W + "/galleries/{dataset}/{source}.png"
REPORT = W + "/report"
LOGS = W + "/logs"


def sweep_targets():
    """Every teacher and saliency source of the profile, every evaluation, the report."""
    return (
        [TEACHER.format(dataset=d, teacher=t) + "/model.pt" for d, t in SWEEP.teacher_cells()]
        + [SOURCE_DONE.format(dataset=d, source=s) for d, s in SWEEP.source_cells()]
        + [RESULT.format(dataset=d, model=m, seed=s) for d, m, s in SWEEP.cells()]
        + [REPORT + "/report.html"]
    )


def model_dir_of(dataset, model, seed):
    if SWEEP.is_sad(model):
        return SAD.format(dataset=dataset, sad=model, seed=seed)
    return STUDENT.format(dataset=dataset, student=model, seed=seed)


def model_dir(w):
    return model_dir_of(w.dataset, w.model, w.seed)


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


include: "workflow/rules/stages.smk"


rule all:
    input:
        sweep_targets(),
    default_target: True
