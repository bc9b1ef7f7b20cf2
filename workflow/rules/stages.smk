# The stage rules. Each rule's shell line is the whole job: it is echoed as the first
# line of the job's log, and running it by hand reproduces the job.
import os


rule prepare_data:
    output:
        touch(PREPARED),
    log:
        f"{LOGS}/prepare_data/{{dataset}}.log",
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
        "cmd='salpipe --device {params.device} prepare-data {params.args} --store {params.store}';"
        ' echo "$cmd" > {log}; eval "$cmd" >> {log} 2>&1'


rule train_teacher:
    input:
        flag=PREPARED,
        config=lambda w: SWEEP.teacher_config(w.teacher),
    output:
        model=f"{TEACHER}/model.pt",
        sidecar=f"{TEACHER}/model.json",
    log:
        f"{LOGS}/train_teacher/{{dataset}}/{{teacher}}.log",
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
        gpu=1,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        "cmd='salpipe --device {params.device} train-teacher --store {params.store} {params.args}"
        " --out {params.out}'; echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"


rule precompute_saliency:
    input:
        source_inputs,
    output:
        touch(SOURCE_DONE),
    log:
        f"{LOGS}/precompute_saliency/{{dataset}}/{{source}}.log",
    params:
        device=config["device"],
        store=STORE,
        teacher=teacher_option,
        args=lambda w: SWEEP.source_args(w.source),
    priority: 10
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        "cmd='salpipe --device {params.device} precompute-saliency --store {params.store}"
        " --split train {params.teacher} {params.args}'; echo \"$cmd\" > {log};"
        ' eval "$cmd" >> {log} 2>&1'


rule saliency_gallery:
    input:
        SOURCE_DONE,
    output:
        GALLERY,
    log:
        f"{LOGS}/saliency_gallery/{{dataset}}/{{source}}.log",
    params:
        store=STORE,
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        "cmd='salpipe show-saliency --store {params.store} --split train"
        " --source {wildcards.source} --n 8 --out {output}'; echo \"$cmd\" > {log};"
        ' eval "$cmd" >> {log} 2>&1'


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
    params:
        device=config["device"],
        store=STORE,
        out=lambda w, output: os.path.dirname(output.model),
        args=lambda w: SWEEP.student_args(w.dataset, w.student, int(w.seed)),
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        "cmd='salpipe --device {params.device} train --store {params.store} {params.args}"
        " --out {params.out}'; echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"


rule sad_calibrate:
    input:
        flag=PREPARED,
        base=lambda w: f"{sad_base_dir(w)}/model.pt",
    output:
        model=f"{SAD}/model.pt",
        sidecar=f"{SAD}/model.json",
    log:
        f"{LOGS}/sad_calibrate/{{dataset}}/{{sad}}/seed{{seed}}.log",
    params:
        device=config["device"],
        store=STORE,
        base=lambda w, input: os.path.dirname(input.base),
        out=lambda w, output: os.path.dirname(output.model),
        args=lambda w: SWEEP.sad_args(w.sad, int(w.seed)),  # --seed: the job's
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        "cmd='salpipe --device {params.device} sad-calibrate --model {params.base}"
        " --store {params.store} {params.args} --out {params.out}'; echo \"$cmd\" > {log};"
        ' eval "$cmd" >> {log} 2>&1'


rule evaluate:
    input:
        flag=PREPARED,
        model=lambda w: f"{model_dir(w)}/model.pt",
    output:
        RESULT,
    log:
        f"{LOGS}/evaluate/{{dataset}}/{{model}}/seed{{seed}}.log",
    params:
        device=config["device"],
        store=STORE,
        model=lambda w, input: os.path.dirname(input.model),
        args=lambda w: SWEEP.eval_args(w.dataset),
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        "cmd='salpipe --device {params.device} evaluate --model {params.model}"
        " --store {params.store} {params.args} --out {output}'; echo \"$cmd\" > {log};"
        ' eval "$cmd" >> {log} 2>&1'


rule report:
    input:
        results=all_results,
        galleries=all_galleries,
    output:
        html=f"{REPORT}/report.html",
        md=f"{REPORT}/report.md",
    log:
        f"{LOGS}/report.log",
    params:
        out=lambda w, output: os.path.dirname(output.html),
        results=lambda w, input: " ".join(f"--results {r}" for r in input.results),
        galleries=lambda w, input: " ".join(f"--gallery {g}" for g in input.galleries),
        runs=report_runs,
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../envs/salpipe.yaml"
    shell:
        "cmd='salpipe report {params.results} {params.runs} {params.galleries}"
        " --out {params.out}'; echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"
