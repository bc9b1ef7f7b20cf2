# salpipe DAG: prepare_data -> train_teacher -> precompute_saliency -> train_student
# (and sad_calibrate) -> evaluate -> report. Every rule only calls `salpipe <stage>` with
# explicit paths; every choice comes from config/ (config.yaml and the active sweep).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")

# The rules' shell lines hold the command as a bash array (logged() in common.smk): bash,
# or a clear "not available in your PATH" error, never a fall-back to sh.
shell.executable("bash")


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


rule all:
    input:
        sweep_targets(),
    default_target: True
