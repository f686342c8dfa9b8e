# The plan, then training: one rule for every job (study, reference, tuning grid and tuned reruns). A job trains
# a population of runs of one problem as one vectorised model; each run keeps its own directory under
# results/<study>/runs/<run key>/ and its own MLflow run. The plan fixes each job's runs; only jobs with runs left
# to train are in the DAG, each with just those runs, and its marker lives until the analysis has read it.


rule plan:
    output:
        plan=PLAN,
        problems=PROBLEMS_FILE,
    params:
        # the plan's content: a change of what the study runs rewrites it, and reruns what reads it
        digest=STUDY.plan_digest(),
    conda:
        "../../environment.yml"
    log:
        study_path("logs", "plan.log"),
    script:
        "../../scripts/plan.py"


rule train:
    input:
        unpack(job_inputs),
    output:
        temp(study_path("jobs", "{job}.json")),
    params:
        job=lambda wildcards: JOBS[wildcards.job].params(),
    wildcard_constraints:
        job="|".join(JOBS) or "no-jobs",
    threads: config["threads"]
    resources:
        gpu=job_gpus,
    conda:
        "../../environment.yml"
    log:
        study_path("logs", "train", "{job}.log"),
    benchmark:
        study_path("benchmarks", "train", "{job}.tsv")
    script:
        "../../scripts/train.py"
