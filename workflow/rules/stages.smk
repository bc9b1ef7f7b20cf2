# The stage rules. Each rule's shell line is the whole job: one `salpipe` command whose
# every field is `:q`-quoted (list params are quoted word by word), run without `eval`
# and echoed, shell-quoted, as the first line of the job's log (logged() in common.smk);
# running that line by hand reproduces the job. Every job passes its `threads` to
# salpipe (`--threads`: torch's and Dask's pools), writes a benchmark TSV under BENCH,
# and a GPU-capable one requests `gpu=GPUS` (config `gpus`).
import os


# cheap jobs that run where Snakemake runs, never as cluster jobs
localrules:
    all,
    check_sweep,
    report,
    saliency_gallery,


rule prepare_data:
    output:
        touch(PREPARED),
    log:
        f"{LOGS}/prepare_data/{{dataset}}.log",
    benchmark:
        f"{BENCH}/prepare_data/{{dataset}}.tsv"
    params:
        device=config["device"],
        store=STORE,
        args=lambda w: SWEEP.prepare_args(w.dataset),
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        logged(
            "salpipe --device {params.device:q} --threads {threads} prepare-data"
            " {params.args:q} --store {params.store:q}"
        )


rule train_teacher:
    input:
        flag=PREPARED,
        config=lambda w: SWEEP.teacher_config(w.teacher),
    output:
        model=f"{TEACHER}/model.pt",
        sidecar=f"{TEACHER}/model.json",
    log:
        f"{LOGS}/train_teacher/{{dataset}}/{{teacher}}.log",
    benchmark:
        f"{BENCH}/train_teacher/{{dataset}}/{{teacher}}.tsv"
    params:
        device=config["device"],
        store=STORE,
        out=lambda w, output: os.path.dirname(output.model),
        args=lambda w: SWEEP.teacher_args(w.dataset, w.teacher),
    # teachers and their saliency gate every saliency-guided student: start them first,
    # or the scheduler fills both cores with baselines and the SAT jobs queue up last
    priority: 20
    threads: 1
    resources:
        gpu=GPUS,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        logged(
            "salpipe --device {params.device:q} --threads {threads} train-teacher"
            " --store {params.store:q} {params.args:q} --out {params.out:q}"
        )


rule precompute_saliency:
    input:
        source_inputs,
    output:
        touch(SOURCE_DONE),
    log:
        f"{LOGS}/precompute_saliency/{{dataset}}/{{source}}.log",
    benchmark:
        f"{BENCH}/precompute_saliency/{{dataset}}/{{source}}.tsv"
    params:
        device=config["device"],
        store=STORE,
        teacher=teacher_option,
        args=lambda w: SWEEP.source_args(w.source),
    priority: 10
    threads: 1
    resources:
        gpu=GPUS,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        logged(
            "salpipe --device {params.device:q} --threads {threads} precompute-saliency"
            " --store {params.store:q} --split train {params.teacher:q} {params.args:q}"
        )


rule saliency_gallery:
    input:
        SOURCE_DONE,
    output:
        report(GALLERY, category="Saliency galleries", subcategory="{dataset}",
               labels={"data set": "{dataset}", "source": "{source}"}),
    log:
        f"{LOGS}/saliency_gallery/{{dataset}}/{{source}}.log",
    benchmark:
        f"{BENCH}/saliency_gallery/{{dataset}}/{{source}}.tsv"
    params:
        store=STORE,
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        logged(
            "salpipe --threads {threads} show-saliency --store {params.store:q}"
            " --split train --source {wildcards.source:q} --n 8 --out {output:q}"
        )


rule train_student:
    input:
        flag=PREPARED,
        config=SWEEP.student_config(),
        sources=student_source_flags,
    output:
        model=f"{STUDENT}/model.pt",
        sidecar=f"{STUDENT}/model.json",
    log:
        f"{LOGS}/train_student/{{dataset}}/{{student}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train_student/{{dataset}}/{{student}}/seed{{seed}}.tsv"
    params:
        device=config["device"],
        store=STORE,
        out=lambda w, output: os.path.dirname(output.model),
        args=lambda w: SWEEP.student_args(w.dataset, w.student, int(w.seed)),
    threads: 1
    resources:
        gpu=GPUS,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        logged(
            "salpipe --device {params.device:q} --threads {threads} train"
            " --store {params.store:q} {params.args:q} --out {params.out:q}"
        )


rule sad_calibrate:
    input:
        flag=PREPARED,
        base=lambda w: f"{sad_base_dir(w)}/model.pt",
    output:
        model=f"{SAD}/model.pt",
        sidecar=f"{SAD}/model.json",
    log:
        f"{LOGS}/sad_calibrate/{{dataset}}/{{sad}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/sad_calibrate/{{dataset}}/{{sad}}/seed{{seed}}.tsv"
    params:
        device=config["device"],
        store=STORE,
        base=lambda w, input: os.path.dirname(input.base),
        out=lambda w, output: os.path.dirname(output.model),
        args=lambda w: SWEEP.sad_args(w.sad, int(w.seed)),  # --seed: the job's
    threads: 1
    resources:
        gpu=GPUS,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        logged(
            "salpipe --device {params.device:q} --threads {threads} sad-calibrate"
            " --model {params.base:q} --store {params.store:q} {params.args:q}"
            " --out {params.out:q}"
        )


rule evaluate:
    input:
        flag=PREPARED,
        model=lambda w: f"{model_dir(w)}/model.pt",
        sources=transfer_inputs,
    output:
        RESULT,
    log:
        f"{LOGS}/evaluate/{{dataset}}/{{model}}/seed{{seed}}.{{preset}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{dataset}}/{{model}}/seed{{seed}}.{{preset}}.tsv"
    params:
        device=config["device"],
        store=STORE,
        model=lambda w, input: os.path.dirname(input.model),
        args=lambda w: SWEEP.eval_args(w.dataset, transfer_dirs(w), w.model, w.preset),
        # read, not an input: the job reruns when its own preset's digest changes
        presets=PRESETS,
        preset_digest=lambda w: preset_digest(SWEEP, w.preset),
    threads: 1
    resources:
        gpu=GPUS,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        logged(
            "salpipe --device {params.device:q} --threads {threads} evaluate"
            " --model {params.model:q} --store {params.store:q} {params.args:q}"
            " --presets {params.presets:q} --out {output:q}"
        )


rule check_sweep:
    input:
        sweep=SWEEP_FILE,
        config=SWEEP.student_config(),
    output:
        COMPARISONS,
    log:
        f"{LOGS}/check_sweep.log",
    benchmark:
        f"{BENCH}/check_sweep/{P.name}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        logged(
            "salpipe --threads {threads} check-sweep {input.sweep:q} --quiet"
            " --out {output:q}"
        )


rule report:
    input:
        results=all_results,
        galleries=all_galleries,
        comparisons=COMPARISONS,
        paper_tables=PAPER_TABLE_FILES,  # read by salpipe report from the package
        claims=CLAIMS,  # the papers' claims it gives verdicts on (package data)
    output:
        # the whole folder (salpipe report replaces it atomically): report.html as the
        # page of `snakemake --report`, with report.md and the figures beside it
        folder=report(directory(REPORT), htmlindex="report.html", category="Report",
                      labels={"sweep": P.name}),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report/{P.name}.tsv"
    params:
        benchmarks=BENCH,  # a param, not an input: the benchmarks written so far
        results=lambda w, input: [x for r in input.results for x in ("--results", r)],
        galleries=lambda w, input: [x for g in input.galleries for x in ("--gallery", g)],
        runs=report_runs,
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        logged(
            "salpipe --threads {threads} report {params.results:q} {params.runs:q}"
            " {params.galleries:q} --comparisons {input.comparisons:q}"
            " --benchmarks {params.benchmarks:q} --out {output.folder:q}"
        )
