"""The workflow's data rules against mirrors on 127.0.0.1 that serve files this test made."""
from __future__ import annotations

import functools
import gzip
import http.server
import threading
from pathlib import Path

import pytest
import torch
from workflow_helpers import REPO_ROOT, snakemake, write_config

from adabench.core.download import FASHION_MNIST_FILES

DEBIAN_COPY = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not DEBIAN_COPY.is_dir(), reason="needs Debian's dataset-fashion-mnist for real bytes")
LABELS = "t10k-labels-idx1-ubyte.gz"


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory):
    """An HTTP server on 127.0.0.1 with three mirrors: good (recompressed: other .gz bytes, same content),
    corrupt (one byte of the content changed) and empty (every file 404)."""
    root = tmp_path_factory.mktemp("mirrors")
    for name in ("good", "corrupt", "empty"):
        (root / name).mkdir()
    for filename, _ in FASHION_MNIST_FILES.values():
        raw = gzip.decompress((DEBIAN_COPY / filename).read_bytes())
        (root / "good" / filename).write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
        damaged = bytearray(raw)
        damaged[-1] ^= 0xFF
        (root / "corrupt" / filename).write_bytes(gzip.compress(bytes(damaged), compresslevel=1, mtime=0))
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def data_config(tmp_path: Path, sources: list[str]) -> None:
    write_config(tmp_path, {"study": "quick", "data": {"fashion_mnist": {"sources": sources}}})


def test_failing_and_corrupt_mirrors_fall_through_to_the_next(tmp_path, mirrors):
    sources = [str(tmp_path / "no-such-directory"), f"{mirrors}/empty", f"{mirrors}/corrupt", f"{mirrors}/good"]
    data_config(tmp_path, sources)
    snakemake(tmp_path, "results/data/fashion_mnist.pt", "--cores", "2", "--configfile", "test-config.yaml",
              snakefile=REPO_ROOT / "Snakefile")
    log = (tmp_path / "results/quick/logs/fetch_fashion_mnist" / f"{LABELS}.log").read_text()
    assert "No such file" in log and "404" in log and "sha256 of the decompressed bytes" in log
    assert f"from {mirrors}/good/{LABELS}" in log
    # the mirror's own .gz bytes are kept, and they differ from Debian's: only the content is checked
    fetched = tmp_path / "results/data/fashion-mnist" / LABELS
    assert fetched.read_bytes() != (DEBIAN_COPY / LABELS).read_bytes()
    data = torch.load(tmp_path / "results/data/fashion_mnist.pt", weights_only=True)
    assert data["train_images"].shape == (60000, 28, 28) and data["test_labels"].shape == (10000,)


def test_no_verified_copy_anywhere_fails_clearly_and_leaves_nothing(tmp_path, mirrors):
    data_config(tmp_path, [f"{mirrors}/corrupt", f"{mirrors}/empty"])
    target = f"results/data/fashion-mnist/{LABELS}"
    result = snakemake(tmp_path, target, "--cores", "1", "--configfile", "test-config.yaml",
                       snakefile=REPO_ROOT / "Snakefile", check=False)
    assert result.returncode != 0
    log = (tmp_path / "results/quick/logs/fetch_fashion_mnist" / f"{LABELS}.log").read_text()
    assert f"no source gave a verified copy of {LABELS}" in log
    assert f"{mirrors}/corrupt/{LABELS}: sha256 of the decompressed bytes" in log
    assert f"{mirrors}/empty/{LABELS}:" in log
    leftovers = list((tmp_path / "results/data").rglob("*")) if (tmp_path / "results/data").exists() else []
    assert [path for path in leftovers if path.is_file()] == []
