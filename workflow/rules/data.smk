# Fashion-MNIST: the only rule that downloads, then one preparation into the tensors training loads.
from adabench.data import FASHION_MNIST_FILES

# Downloads run where Snakemake runs (a cluster's login node): compute nodes often have no internet.
localrules:
    fetch_fashion_mnist,


rule fetch_fashion_mnist:
    output:
        "results/data/fashion-mnist/{filename}",
    params:
        sources=config["data"]["fashion_mnist"]["sources"],
        timeout=config["data"]["fashion_mnist"].get("timeout_s", 60),
    wildcard_constraints:
        filename="|".join(name for name, _ in FASHION_MNIST_FILES.values()),
    retries: 2
    conda:
        "../../environment.yml"
    log:
        "results/logs/fetch_fashion_mnist/{filename}.log",
    script:
        "../../scripts/fetch_data.py"


rule prepare_fashion_mnist:
    input:
        expand("results/data/fashion-mnist/{filename}", filename=[name for name, _ in FASHION_MNIST_FILES.values()]),
    output:
        FASHION_MNIST_FILE,
    conda:
        "../../environment.yml"
    log:
        "results/logs/prepare_fashion_mnist.log",
    script:
        "../../scripts/prepare_data.py"
