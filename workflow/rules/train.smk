# The plan, then training: one rule for every job (study, reference, defaults, the search's rates and the tuned
# reruns). A job trains a population of runs of one problem as one vectorised model; each run keeps its own
# directory under results/<study>/runs/<run key>/ and its own MLflow run. The plan fixes the jobs of the runs known
# before training, the search's checkpoints those of the runs it adds; only jobs with runs left to train are in the
# DAG, and a job's marker lives until what reads its runs has read them.


# The plan is written in seconds from the config alone: on a cluster it runs where Snakemake runs, not as a job
# that waits in the queue before any training job may start.
localrules:
    plan,


rule plan:
    output:
        plan=PLAN,
        problems=PROBLEMS_FILE,
    params:
        # the plan's content: a change of what the study runs rewrites it, and reruns what reads it
        digest=STUDY.plan_digest(),
    conda:
        ENV
    log:
        study_path("logs", "plan.log"),
    script:
        "../../scripts/plan.py"


rule train:
    input:
        unpack(job_inputs),
    output:
        # a marker, not the runs' records: Snakemake deletes a job's declared outputs before the job runs, and the
        # sealed records of the runs a job finished before a kill must survive its rerun (removed once read)
        temp(study_path("jobs", "{job}.json")),
    params:
        job=lambda wildcards: job_of(wildcards.job).params(),
    wildcard_constraints:
        # the plan's pending jobs, and those the search adds: <problem>-search<round>-<n>, <problem>-tuned-<n>
        job="|".join([*JOBS, *(rf"{re.escape(problem)}-(search[0-9]+|tuned)-[0-9]+" for problem in config["problems"])]),
    threads: config["threads"]
    resources:
        gpu=job_gpus,
    conda:
        ENV
    log:
        study_path("logs", "train", "{job}.log"),
    benchmark:
        study_path("benchmarks", "train", "{job}.tsv")
    script:
        "../../scripts/train.py"
