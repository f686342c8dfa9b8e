"""Fashion-MNIST as training reads it: the four IDX files (fetched and verified by adabench.core.download) prepared into
tensors, saved with their sha256 beside them, and checked when loaded."""
from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .atomic import atomic_write_bytes, atomic_write_text, read_json, sha256_bytes, sha256_file
from .checkpoints import torch_bytes
from .download import DATA_DIR, DATA_FILE, FASHION_MNIST_FILES, ChecksumError, verified_bytes

# tensors_digest of the prepared tensors of the real Fashion-MNIST (the four files above): what every LeNet run of
# a study records as its data, and what the workflow's prepared file must hold
FASHION_MNIST_CONTENT_SHA256 = "8de48e796a9bca3babc0d17e07cdea538cdcee6f8859b2cba900c4aa437a63df"

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(RuntimeError):
    """A dataset file is missing or fails a check; the message names the file, the check and the fix."""


def data_path_fault(value) -> str:
    """Why a configured dataset path (a problem's ``data_file``) may not be used, or "" if it names a file inside the
    data folder (``results/data/``, relative to the checkout, as the workflow runs): only there does the project
    prepare data, and only there may its messages advise deleting or rewriting a file. A path elsewhere
    (``/etc/passwd``, ``../x``) would make training read, and its error advise removing, a file of someone else."""
    if not isinstance(value, str) or not value or any(ord(char) < 32 or ord(char) == 127 for char in value):
        return f"{value!r} is not a path (an empty string, or one with control characters)"
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if PurePosixPath(value).is_absolute() or ".." in parts or parts[:2] != ("results", "data") or len(parts) < 3:
        return (f"{value!r} is not inside the data folder {DATA_DIR}/: a dataset is read only from there (a relative "
                f"path without '..'). Fix: leave data_file out (default {DATA_FILE}, which the workflow's data rules "
                f"fetch and prepare), or prepare a copy there: python -m adabench data --out {DATA_DIR}/NAME.pt")
    return ""


def written_by_adabench(path: Path) -> bool:
    """Whether the prepared file at ``path`` is one the project writes, and so one its messages may tell a user to
    delete or rewrite: inside the data folder, and either the workflow's own file or one with the sidecar that
    ``save_prepared`` writes beside it. Anything else (a file outside, or one a user put there) is left alone."""
    path = Path(path)
    try:
        return in_data_folder(path) and (path.resolve() == Path(DATA_FILE).resolve() or checksum_file(path).is_file())
    except (OSError, RuntimeError):  # a path that cannot be resolved (a symlink loop) is nobody's we know
        return False


def in_data_folder(path: Path) -> bool:
    """Whether ``path``, links followed, lies inside the data folder (of the current directory: the workflow's)."""
    try:
        return Path(path).resolve().is_relative_to(Path(DATA_DIR).resolve())
    except (OSError, RuntimeError):
        return False


def read_idx(raw: bytes) -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file: magic 0x0000TTDD, DD big-endian dimensions."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError("not an IDX file: the magic number must start with two zero bytes")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_DTYPES:
        raise ValueError(f"not an IDX file: unknown element type 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX header truncated: {ndim} dimensions need {header} bytes, found {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"IDX file truncated or padded: shape {shape} needs {expected} bytes, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors by content (name, dtype, shape, bytes), whatever file format they came from."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def checksum_file(prepared: Path) -> Path:
    """The prepared file's sidecar: its sha256 and the shapes it holds, written with it."""
    prepared = Path(prepared)
    return prepared.with_name(prepared.name + ".sha256.json")


def prepare_fashion_mnist(raw_dir: Path, out_file: Path) -> dict[str, tuple[int, ...]]:
    """Verify the four files again and save them as one file of uint8 tensors that training loads, with a
    sidecar holding its sha256 (training refuses a prepared file that does not match it)."""
    tensors = {}
    for key, (filename, sha256) in FASHION_MNIST_FILES.items():
        path = Path(raw_dir) / filename
        try:
            raw = verified_bytes(path.read_bytes(), sha256, str(path))
        except (OSError, ChecksumError) as error:
            raise DataError(f"{error}. Fix: delete {path} and rerun; the data rule will fetch it again") from None
        tensors[key] = torch.from_numpy(read_idx(raw).copy())
    if (content := tensors_digest(tensors)) != FASHION_MNIST_CONTENT_SHA256:
        raise DataError(f"the verified files of {raw_dir} parse to tensors of sha256 {content}, not the real "
                        f"Fashion-MNIST's {FASHION_MNIST_CONTENT_SHA256}: the IDX parser disagrees with this file")
    return save_prepared(tensors, Path(out_file))


def save_prepared(tensors: dict[str, torch.Tensor], out_file: Path) -> dict[str, tuple[int, ...]]:
    """Write the tensors training loads, and beside them the sha256 that training checks the file against and the
    digest of its content (``tensors_digest``), which says which data set it is."""
    data = torch_bytes(tensors)
    shapes = {key: tuple(value.shape) for key, value in tensors.items()}
    atomic_write_bytes(out_file, data)
    atomic_write_text(checksum_file(out_file), json.dumps({"sha256": sha256_bytes(data), "shapes": shapes,
                                                           "content_sha256": tensors_digest(tensors)}) + "\n")
    return shapes


def prepared_data_fault(path: Path, data: bytes | None = None, content: str | None = None) -> str:
    """Why the prepared file at ``path`` cannot be trusted, or "" if it matches its recorded sha256 (and, where
    ``content`` is given, holds the data set of that content digest). ``data``: the file's bytes, where the caller
    has read them already."""
    path, sidecar = Path(path), checksum_file(path)
    if not path.exists():
        return f"{path} does not exist"
    try:
        recorded = read_json(sidecar)
        expected = recorded["sha256"]
    except KeyError:
        return f"{sidecar}, the record of its sha256, is damaged (it lacks the field sha256)"
    except (OSError, ValueError) as error:  # ValueError: DamagedJSON, whose message says what is wrong with the file
        return f"{sidecar}, the record of its sha256, is missing or unreadable ({error})"
    actual = sha256_file(path) if data is None else sha256_bytes(data)
    if actual != expected:
        return f"{path} has sha256 {actual}, not the {expected} recorded when it was prepared (damaged or changed)"
    if content is not None and recorded.get("content_sha256") != content:
        return (f"{path} holds data of content sha256 {recorded.get('content_sha256')}, not the real Fashion-MNIST's "
                f"{content} (another data set, or prepared by an older version)")
    return ""


def load_prepared(path: str | Path) -> dict[str, torch.Tensor]:
    """The prepared Fashion-MNIST tensors, after checking the file against its recorded sha256."""
    path = Path(path)
    data = path.read_bytes() if path.exists() else None  # read once: checked, then loaded
    fault = prepared_data_fault(path, data)
    if fault:
        raise DataError(f"{fault}. Fix: {prepared_data_fix(path)}")
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as error:  # noqa: BLE001 - a file that matches its checksum but does not load
        raise DataError(f"{path} does not load ({error}). Fix: {prepared_data_fix(path)}") from None


def prepared_data_fix(path: Path) -> str:
    """How to get a usable prepared file at ``path``. Advice to delete or overwrite a file is given only where the
    project wrote it (``written_by_adabench``): a data_file naming someone else's file is pointed back at the data
    folder, and that file is left as it is."""
    path = Path(path)
    elsewhere = (f"leave data_file out (default {DATA_FILE}, which snakemake's data rules prepare), or set it to a "
                 f"file inside {DATA_DIR}/ prepared by: python -m adabench data --out {DATA_DIR}/NAME.pt")
    inside = in_data_folder(path)
    if path.exists() and not written_by_adabench(path):
        why = (f"has no {checksum_file(path).name} beside it (adabench did not prepare it)" if inside else
               f"lies outside {DATA_DIR}/, where adabench prepares data")
        return f"{path} {why}, so it is left as it is: {elsewhere}"
    if not path.exists() and not inside:
        return f"{path} lies outside {DATA_DIR}/: {elsewhere}"
    remove = f"delete {path} and " if path.exists() else ""
    if path.resolve() == Path(DATA_FILE).resolve():
        return (f"{remove}rerun snakemake (its data rules prepare it again from the verified raw files), or: "
                f"python -m adabench data --out {path}")
    return f"{remove}prepare it again: python -m adabench data --out {path}"
