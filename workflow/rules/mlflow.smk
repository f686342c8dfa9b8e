# One job creates the MLflow store and experiment before any training job: concurrent first opens
# of a fresh SQLite store corrupt it (MLflow creates its tables without a lock).


rule mlflow_store:
    output:
        "results/mlflow/experiment.json",
    params:
        tracking_uri=TRACKING_URI,
        experiment=config["mlflow"]["experiment"],
        artifact_root="results/mlflow/artifacts",
    conda:
        "../../environment.yml"
    log:
        "results/logs/mlflow_store.log",
    script:
        "../../scripts/mlflow_store.py"
