# The stage rules. Each rule's shell line is the whole job: it is echoed as the first
# line of the job's log, and running it by hand reproduces the job.


rule prepare_data:
    output:
        touch(PREPARED),
    log:
        LOGS + "/prepare_data/{dataset}.log",
    params:
        store=STORE,
        args=lambda w: SWEEP.prepare_args(w.dataset),
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        "cmd='salpipe --device {DEVICE} prepare-data {params.args} --store {params.store}';"
        " echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"


rule train_teacher:
    input:
        flag=PREPARED,
        config=lambda w: SWEEP.teacher_config(w.teacher),
    output:
        model=TEACHER + "/model.pt",
        sidecar=TEACHER + "/model.json",
    log:
        LOGS + "/train_teacher/{dataset}/{teacher}.log",
    params:
        store=STORE,
        out=TEACHER,
        args=lambda w: SWEEP.teacher_args(w.dataset, w.teacher),
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    shell:
        "cmd='salpipe --device {DEVICE} train-teacher --store {params.store} {params.args}"
        " --out {params.out}'; echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"


def _source_inputs(w):
    teacher = SWEEP.source_teacher(w.source)
    inputs = [PREPARED.format(dataset=w.dataset)]
    if teacher is not None:
        inputs.append(TEACHER.format(dataset=w.dataset, teacher=teacher) + "/model.pt")
    return inputs


def _teacher_opt(w):
    teacher = SWEEP.source_teacher(w.source)
    return "" if teacher is None else "--teacher " + TEACHER.format(dataset=w.dataset, teacher=teacher)


rule precompute_saliency:
    input:
        _source_inputs,
    output:
        touch(SOURCE_DONE),
    log:
        LOGS + "/precompute_saliency/{dataset}/{source}.log",
    params:
        store=STORE,
        teacher=_teacher_opt,
        args=lambda w: SWEEP.source_args(w.source),
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    shell:
        "cmd='salpipe --device {DEVICE} precompute-saliency --store {params.store} --split train"
        " {params.teacher} {params.args}'; echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"


rule train_student:
    input:
        flag=PREPARED,
        config=SWEEP.student_config(),
        sources=lambda w: [
            SOURCE_DONE.format(dataset=w.dataset, source=s) for s in SWEEP.student_sources(w.student)
        ],
    output:
        model=STUDENT + "/model.pt",
        sidecar=STUDENT + "/model.json",
    log:
        LOGS + "/train_student/{dataset}/{student}/seed{seed}.log",
    params:
        store=STORE,
        out=STUDENT,
        args=lambda w: SWEEP.student_args(w.dataset, w.student, int(w.seed)),
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    shell:
        "cmd='salpipe --device {DEVICE} train --store {params.store} {params.args}"
        " --out {params.out}'; echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"


rule sad_calibrate:
    input:
        flag=PREPARED,
        base=lambda w: STUDENT.format(dataset=w.dataset, student=SWEEP.sad_base(w.sad), seed=w.seed)
        + "/model.pt",
    output:
        model=SAD + "/model.pt",
        sidecar=SAD + "/model.json",
    log:
        LOGS + "/sad_calibrate/{dataset}/{sad}/seed{seed}.log",
    params:
        store=STORE,
        base=lambda w: STUDENT.format(dataset=w.dataset, student=SWEEP.sad_base(w.sad), seed=w.seed),
        out=SAD,
        args=lambda w: SWEEP.sad_args(w.sad),
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    shell:
        "cmd='salpipe --device {DEVICE} sad-calibrate --model {params.base} --store {params.store}"
        " {params.args} --out {params.out}'; echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"


rule evaluate:
    input:
        flag=PREPARED,
        model=lambda w: model_dir(w) + "/model.pt",
    output:
        RESULT,
    log:
        LOGS + "/evaluate/{dataset}/{model}/seed{seed}.log",
    params:
        store=STORE,
        model=model_dir,
        args=lambda w: SWEEP.eval_args(w.dataset),
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
    shell:
        "cmd='salpipe --device {DEVICE} evaluate --model {params.model} --store {params.store}"
        " {params.args} --out {output}'; echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"


rule saliency_gallery:
    input:
        SOURCE_DONE,
    output:
        GALLERY,
    log:
        LOGS + "/saliency_gallery/{dataset}/{source}.log",
    params:
        store=STORE,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "cmd='salpipe show-saliency --store {params.store} --split train --source {wildcards.source}"
        " --n 8 --out {output}'; echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"


rule report:
    input:
        results=lambda w: [RESULT.format(dataset=d, model=m, seed=s) for d, m, s in SWEEP.cells()],
        galleries=lambda w: [GALLERY.format(dataset=d, source=s) for d, s in SWEEP.source_cells()],
    output:
        html=REPORT + "/report.html",
        md=REPORT + "/report.md",
    log:
        LOGS + "/report.log",
    params:
        out=REPORT,
        results=lambda w, input: " ".join(f"--results {r}" for r in input.results),
        galleries=lambda w, input: " ".join(f"--gallery {g}" for g in input.galleries),
        # training cost per epoch comes from the trained runs (SAD calibrates, no epochs)
        runs=lambda w: " ".join(
            f"--runs {model_dir_of(d, m, s)}" for d, m, s in SWEEP.cells() if not SWEEP.is_sad(m)
        ),
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        "cmd='salpipe report {params.results} {params.runs} {params.galleries} --out {params.out}';"
        " echo \"$cmd\" > {log}; eval \"$cmd\" >> {log} 2>&1"
