"""Atomic writes and file digests: the one implementation every stage uses.

Every output is written to a temporary sibling and renamed into place, so a crash never
leaves a half-written file (or folder) that looks complete (DESIGN.md section 2).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write; renamed onto ``path`` when the block ends.

    The parent folder is created. On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (flushed and fsynced before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` into memory, then :func:`atomic_write_bytes`."""

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


# renameat2(2) with RENAME_EXCHANGE swaps two paths in one step (Linux >= 3.15)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap folders ``a`` and ``b`` atomically; False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextmanager
def atomic_dir(path: str | Path, check: Callable[[], None] | None = None) -> Iterator[Path]:
    """A temporary sibling folder to fill; it replaces ``path`` when the block ends.

    The new folder is swapped in with one atomic exchange where the system has one
    (Linux ``renameat2``), else the old folder is renamed aside first; at every moment
    either the old or the new folder is there. ``check()``, when given, runs just before
    the swap (a last look at what is being replaced). The folder gets the permissions
    a plain ``mkdir`` would give. On an exception the temporary folder is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private to its owner
        yield tmp
        if check is not None:
            check()
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            os.replace(tmp, path)  # nothing, or an empty folder, to replace: one rename
        elif _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # now the old folder
        else:
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_location(path: str | Path, what: str) -> None:
    """Refuse, before anything is written, an output ``path`` whose nearest existing
    folder above it is a file or is not writable (the message names ``what``, ``path``
    and that folder)."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FileExistsError(f"cannot write {what} {path}: {parent} is a file, "
                                      "not a folder (fix --out)")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PermissionError(f"cannot write {what} {path}: folder {parent} is "
                                      "not writable (fix --out)")
            return


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
