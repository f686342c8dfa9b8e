"""Files written so that a crash or a full disk never leaves a half-written file that is trusted, and their
digests. Every file goes to a temporary name, is flushed and fsynced, renamed over the target, and the directory is
fsynced: after a crash the target is either the old file or the new one. Used by the run records, the data and
MLflow's store; light (no torch)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some filesystems do not fsync directories; the rename is still atomic
        pass
    finally:
        os.close(descriptor)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen half-written, even after a crash or ENOSPC."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# Far deeper than any JSON the project writes (a run summary nests four levels): a file nested deeper is damaged, and
# refusing it here keeps what reads it later (comparisons, digests) from recursing without end.
MAX_JSON_DEPTH = 64


class DamagedJSON(ValueError):
    """A JSON file that exists but cannot be used: not UTF-8, not JSON, nested deeper than any the project writes, or
    not of the expected type. Its message names the file; what reads it sets the file aside, or treats it as
    missing."""


def json_depth(value) -> int:
    """How deep lists and objects nest in a parsed value (0 for a scalar), counted without recursion and only as far
    as one level past MAX_JSON_DEPTH."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                break
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_json(path: Path, kind: type = dict):
    """Every JSON file the project reads back goes through here: its value, which must be a ``kind`` (dict or
    list). DamagedJSON naming the file for any content that cannot be used: bytes that are not UTF-8, text that is
    not JSON, nesting deep enough to exhaust the parser's recursion (a RecursionError, which is no ValueError) or
    deeper than MAX_JSON_DEPTH, another top-level type, or a folder in the file's place. A missing file raises
    FileNotFoundError, and any other OSError (permissions, I/O) passes unchanged: it says nothing about the
    content."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DamagedJSON(f"{path}: damaged, a folder, not a JSON file") from None
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DamagedJSON(f"{path}: damaged, not valid JSON (not UTF-8: {error})") from None
    except RecursionError:
        raise DamagedJSON(f"{path}: damaged, JSON nested too deeply to parse") from None
    except ValueError as error:  # JSONDecodeError, and integers too long for int()
        raise DamagedJSON(f"{path}: damaged, not valid JSON ({error})") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise DamagedJSON(f"{path}: damaged, JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(value, kind):
        names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
                 float: "a number", type(None): "null"}
        raise DamagedJSON(f"{path}: damaged, JSON {names[type(value)]}, not {names[kind]}")
    return value


def read_json_object(path: Path) -> dict:
    """A small JSON record (a lock's holder, an output's sources): its object, or {} if it is missing, unreadable
    or damaged (read_json)."""
    try:
        return read_json(path)
    except (OSError, DamagedJSON):
        return {}
