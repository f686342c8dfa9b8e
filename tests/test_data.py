"""The IDX reader and the checksum-verified fetch from local directories (HTTP mirrors are tested elsewhere)."""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from adabench.core.data import read_idx
from adabench.core.download import SourcesExhausted, fetch_file

TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
FILENAME = "train-labels-idx1-ubyte.gz"


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: two zero bytes, the element type, the rank, big-endian uint32 dimensions, the data."""
    header = bytes([0, 0, TYPE_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def random_array(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    limits = np.iinfo(np.dtype(dtype))
    return np.random.default_rng(0).integers(limits.min, limits.max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("shape, dtype", [((3, 28, 28), "u1"), ((7,), "u1"), ((5,), ">i4")],
                         ids=["uint8-3d", "uint8-1d", "int32-big-endian"])
def test_read_idx_round_trip(shape, dtype):
    array = random_array(shape, dtype)
    parsed = read_idx(idx_bytes(array))
    assert parsed.shape == shape
    assert parsed.dtype == array.dtype
    np.testing.assert_array_equal(parsed, array)


VALID = idx_bytes(random_array((2, 3, 4), "u1"))


@pytest.mark.parametrize("raw", [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x01" + VALID[1:], id="bad-magic"),
    pytest.param(VALID[:2] + b"\x07" + VALID[3:], id="unknown-type"),
    pytest.param(VALID[:-1], id="data-truncated"),
    pytest.param(VALID + b"\x00", id="data-padded"),
    pytest.param(VALID[:10], id="header-truncated"),
])
def test_read_idx_rejects_malformed_input(raw):
    with pytest.raises(ValueError):
        read_idx(raw)


@pytest.fixture
def payload() -> tuple[bytes, str]:
    """A gzipped IDX file and the sha256 of its decompressed bytes (what fetch_file checks)."""
    raw = idx_bytes(random_array((10,), "u1"))
    return gzip.compress(raw), hashlib.sha256(raw).hexdigest()


def source_holding(directory: Path, content: bytes) -> str:
    directory.mkdir()
    (directory / FILENAME).write_bytes(content)
    return str(directory)


BAD_COPIES = {  # name: (the copy a source holds, what the error says about it)
    "other-content": (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\xff"), "sha256"),
    "not-gzip": (b"plain bytes", "not a valid gzip file"),
}


@pytest.mark.parametrize("bad_copy", sorted(BAD_COPIES))
def test_unverified_copy_is_an_error_naming_the_file_and_leaves_nothing(tmp_path, payload, bad_copy):
    _, sha256 = payload
    content, complaint = BAD_COPIES[bad_copy]
    source = source_holding(tmp_path / "mirror", content)
    destination = tmp_path / "out" / FILENAME
    with pytest.raises(SourcesExhausted) as error:
        fetch_file(FILENAME, sha256, [source], destination, log=lambda message: None)
    assert f"{source}/{FILENAME}" in str(error.value)
    assert complaint in str(error.value)
    # neither the file nor a temporary copy of it
    assert not destination.parent.exists() or os.listdir(destination.parent) == []


def test_first_source_that_verifies_is_used(tmp_path, payload):
    compressed, sha256 = payload
    missing = str(tmp_path / "missing")
    corrupted = source_holding(tmp_path / "corrupted", BAD_COPIES["other-content"][0])
    good = source_holding(tmp_path / "good", compressed)
    destination = tmp_path / "out" / FILENAME
    used = fetch_file(FILENAME, sha256, [missing, corrupted, good], destination, log=lambda message: None)
    assert used == good
    assert destination.read_bytes() == compressed
    assert os.listdir(destination.parent) == [FILENAME]


# --- where a dataset may be read from, and whose file an error may tell a user to delete ---------------------------

def lenet_config(section: str, data_file: str) -> dict:
    import yaml
    from workflow_helpers import REPO_ROOT

    from adabench.study.config import merge

    defaults = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    return merge(defaults, {"problems": {"lenet_relu_fmnist": {section: {"data_file": data_file}}}})


@pytest.mark.parametrize("section", ["options", "grid_options"])
@pytest.mark.parametrize("data_file", ["/etc/passwd", "../elsewhere.pt", "results/data/../../etc/passwd",
                                       "results/elsewhere.pt", "results/data", "results/data/a\nb.pt"])
def test_a_dataset_path_outside_the_data_folder_is_refused_naming_the_field(section, data_file):
    from adabench.study.config import ConfigError, validate_config

    with pytest.raises(ConfigError) as raised:
        validate_config(lenet_config(section, data_file))
    assert raised.value.field == f"problems.lenet_relu_fmnist.{section}.data_file"
    assert "results/data/" in raised.value.message and "delete" not in raised.value.message


def test_a_dataset_path_inside_the_data_folder_is_accepted_and_adabench_train_checks_it_too():
    from adabench.study.config import ConfigError, check_run_arguments, validate_config

    config = validate_config(lenet_config("options", "results/data/my_copy.pt"))
    assert config["problems"]["lenet_relu_fmnist"]["options"]["data_file"] == "results/data/my_copy.pt"
    check_run_arguments("lenet_relu_fmnist", "adam", {}, {"data_file": "results/data/my_copy.pt"}, 0)
    with pytest.raises(ConfigError) as raised:
        check_run_arguments("lenet_relu_fmnist", "adam", {}, {"data_file": "/etc/passwd"}, 0)
    assert raised.value.field == "--option data_file"


def tiny_tensors() -> dict:
    import torch

    return {"train_images": torch.zeros(4, 28, 28, dtype=torch.uint8), "train_labels": torch.arange(4),
            "test_images": torch.zeros(2, 28, 28, dtype=torch.uint8), "test_labels": torch.arange(2)}


def test_a_file_adabench_did_not_write_is_never_to_be_deleted_or_overwritten(tmp_path, monkeypatch):
    from adabench.core.data import DataError, load_prepared, save_prepared

    monkeypatch.chdir(tmp_path)  # the data folder is results/data/ of the directory the workflow runs in
    foreign = tmp_path / "passwd"
    foreign.write_text("root:x:0:0:root:/root:/bin/bash\n")
    inside_foreign = Path("results/data/dropped_in.pt")  # put there by hand: no sidecar
    inside_foreign.parent.mkdir(parents=True)
    inside_foreign.write_bytes(b"not tensors")
    for path in (foreign, inside_foreign):
        with pytest.raises(DataError) as raised:
            load_prepared(path)
        message = str(raised.value)
        assert str(path) in message and "left as it is" in message, message
        assert "delete" not in message and f"--out {path}" not in message, message
        assert path.exists()

    ours = Path("results/data/mine.pt")  # prepared by adabench, then damaged: deleting and preparing it is the fix
    save_prepared(tiny_tensors(), ours)
    ours.write_bytes(ours.read_bytes()[:-1])
    fix = f"Fix: delete {ours} and prepare it again: python -m adabench data --out {ours}"
    with pytest.raises(DataError, match=fix):
        load_prepared(ours)


@pytest.mark.parametrize("damage, words", [
    (lambda sidecar: sidecar.write_text('{"sha256": "ab'), "damaged, not valid JSON (Unterminated string"),
    (lambda sidecar: sidecar.write_text("[1, 2]"), "damaged, JSON an array, not an object"),
    (lambda sidecar: sidecar.write_text('{"shapes": {}}'), "is damaged (it lacks the field sha256)"),
    (lambda sidecar: sidecar.unlink(), "No such file or directory"),
], ids=["cut off", "an array", "no sha256", "deleted"])
def test_a_damaged_sidecar_of_the_prepared_data_is_named_with_what_is_wrong(tmp_path, damage, words):
    """The fault names the sidecar and what is wrong with it (read_json's message), not only an exception's type."""
    from adabench.core.data import checksum_file, prepared_data_fault, save_prepared

    prepared = tmp_path / "prepared.pt"
    save_prepared(tiny_tensors(), prepared)
    assert prepared_data_fault(prepared) == ""
    damage(checksum_file(prepared))
    fault = prepared_data_fault(prepared)
    assert fault.startswith(f"{checksum_file(prepared)}, the record of its sha256, is ") and words in fault, fault
