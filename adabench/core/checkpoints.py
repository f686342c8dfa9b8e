"""A run's checkpoint: every completed epoch of a member of a population, written atomically, loaded only as
tensors and plain data (never code), and only if it is of the run it claims to be."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from .atomic import atomic_write_bytes
from .records import CHECKPOINT, RecordError, set_aside


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_torch_save(obj, path: Path) -> None:
    atomic_write_bytes(path, torch_bytes(obj))


def load_checkpoint(out_dir: Path, identity: dict, device: torch.device, log) -> dict | None:
    """The run's checkpoint if it loads (tensors and plain data only: never code) and is of ``identity``.

    A checkpoint that is damaged or of another run is moved aside, and the run restarts from scratch.
    """
    path = Path(out_dir) / CHECKPOINT
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, weights_only=True, map_location=device)
        if not isinstance(checkpoint, dict) or checkpoint.get("identity") != identity:
            raise RecordError("a checkpoint of another configuration")
        for name in ("params", "optimizer", "batch_order", "records", "steps", "train_time", "step_time", "epoch",
                     "wall_time"):
            if name not in checkpoint:
                raise RecordError(f"no {name!r}")
    except Exception as error:  # noqa: BLE001 - whatever a damaged file raises, the answer is the same
        log(f"WARNING: {path} is unusable ({type(error).__name__}: {str(error)[:200]}); the run restarts from scratch")
        set_aside(path, log)
        return None
    return checkpoint
