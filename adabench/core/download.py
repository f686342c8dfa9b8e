"""Fashion-MNIST's four IDX files: where they come from, their checksums, and fetching each from the first source
whose copy verifies. Light (no numpy, no torch): the workflow's download jobs start in a fraction of a second.

Checksums are of the decompressed bytes: Debian's ``dataset-fashion-mnist`` recompressed the files, so their
``.gz`` digests differ from upstream, while what they decompress to is identical. adabench.core.data prepares the
tensors training loads from these files.
"""
from __future__ import annotations

import gzip
import urllib.request
import zlib
from pathlib import Path

from .atomic import atomic_write_bytes, sha256_bytes

FASHION_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

# where a checkout keeps Fashion-MNIST: the prepared tensors training loads, and beside them the fetched files
DATA_DIR = "results/data"
DATA_FILE = f"{DATA_DIR}/fashion_mnist.pt"
RAW_DIR = f"{DATA_DIR}/fashion-mnist"

DEFAULT_SOURCES = [
    "/usr/share/datasets/fashion-mnist",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion",
]


class ChecksumError(ValueError):
    pass


class SourcesExhausted(RuntimeError):
    pass


def verified_bytes(compressed: bytes, sha256: str, origin: str) -> bytes:
    try:
        raw = gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as error:
        raise ChecksumError(f"{origin}: not a valid gzip file ({error})") from None
    digest = sha256_bytes(raw)
    if digest != sha256:
        raise ChecksumError(f"{origin}: sha256 of the decompressed bytes is {digest}, expected {sha256}")
    return raw


def read_source(source: str, filename: str, timeout: float) -> bytes:
    if "://" in source:
        with urllib.request.urlopen(f"{source.rstrip('/')}/{filename}", timeout=timeout) as response:
            return response.read()
    return (Path(source) / filename).read_bytes()


def fetch_file(filename: str, sha256: str, sources: list[str], destination: Path, timeout: float = 60.0,
               log=print) -> str:
    """Copy ``filename`` from the first source whose copy verifies; written to a temporary file, then renamed.

    Returns the source used. Raises ``SourcesExhausted`` naming every failure; nothing is left behind.
    """
    failures = []
    for source in sources:
        origin = f"{source.rstrip('/')}/{filename}"
        try:
            compressed = read_source(source, filename, timeout)
            verified_bytes(compressed, sha256, origin)
        except (OSError, ChecksumError) as error:
            failures.append(f"  {origin}: {error}")
            log(f"fetch {filename}: {origin} failed: {error}")
            continue
        atomic_write_bytes(destination, compressed)
        log(f"fetch {filename}: from {origin}")
        return source
    raise SourcesExhausted(f"no source gave a verified copy of {filename}:\n" + "\n".join(failures))


def fetch_one(filename: str, sources: list[str], output: Path, timeout: float = 60.0, log=print) -> str:
    """One of the four files, checked against its own sha256 (the workflow's rule fetch_fashion_mnist); returns the
    source used."""
    return fetch_file(filename, dict(FASHION_MNIST_FILES.values())[filename], sources, Path(output), timeout, log)


def fetch_fashion_mnist(sources: list[str], out_dir: Path, timeout: float = 60.0, log=print) -> dict[str, str]:
    """Fetch all four files into ``out_dir``; returns file name -> source used."""
    return {filename: fetch_one(filename, sources, Path(out_dir) / filename, timeout, log)
            for filename, _ in FASHION_MNIST_FILES.values()}
