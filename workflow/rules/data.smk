# Fashion-MNIST: the only rule that downloads, then one preparation into the tensors training loads (with the
# sha256 training checks them against). Shared by every study: the data is the same.
from adabench.core.data import checksum_file
from adabench.core.download import DATA_FILE, FASHION_MNIST_FILES, RAW_DIR


# Downloads run where Snakemake runs (a cluster's login node): compute nodes often have no internet.
localrules:
    fetch_fashion_mnist,


rule fetch_fashion_mnist:
    output:
        os.path.join(RAW_DIR, "{filename}"),
    params:
        sources=config["data"]["fashion_mnist"]["sources"],
        timeout=config["data"]["fashion_mnist"]["timeout_s"],
    wildcard_constraints:
        filename="|".join(name for name, _ in FASHION_MNIST_FILES.values()),
    retries: 2
    conda:
        ENV
    log:
        study_path("logs", "fetch_fashion_mnist", "{filename}.log"),
    script:
        "../../scripts/fetch_data.py"


rule prepare_fashion_mnist:
    input:
        expand(os.path.join(RAW_DIR, "{filename}"), filename=[name for name, _ in FASHION_MNIST_FILES.values()]),
    output:
        data=DATA_FILE,
        checksum=str(checksum_file(DATA_FILE)),
    conda:
        ENV
    log:
        study_path("logs", "prepare_fashion_mnist.log"),
    script:
        "../../scripts/prepare_data.py"
