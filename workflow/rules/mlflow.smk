# MLflow is a view of the run records, never a condition of training. One job creates the store (atomically)
# and the experiment before any training job; after training, mlflow_sync logs whatever MLflow missed (a server
# that was down, a store that was deleted) from the records, so every later run of the workflow heals it.


# Creating the store and the experiment takes seconds, and every training job waits for it: on a cluster it runs
# where Snakemake runs (which reaches the tracking server the jobs use), not as a job that waits in the queue.
localrules:
    mlflow_store,


rule mlflow_store:
    output:
        STORE,
    conda:
        ENV
    log:
        study_path("logs", "mlflow_store.log"),
    script:
        "../../scripts/mlflow_store.py"


rule mlflow_sync:
    input:
        unpack(run_tables),
        markers=PENDING_MARKERS,
        **TUNED_MARKERS,
        # not ancient: the store's marker is no file git carries, and a store made again is synced again
        store=STORE,
    output:
        SYNCED,
    params:
        # the digest of the records read: MLflow follows a changed record
        records=table_records,
    conda:
        ENV
    log:
        study_path("logs", "mlflow_sync.log"),
    script:
        "../../scripts/mlflow_sync.py"
