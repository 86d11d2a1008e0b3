"""Write a file so that a crash part-way leaves the old one (temporary file, fsync, rename)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from nano8k.errors import OutputError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``<path>.tmp`` in the same folder, fsync, then ``os.replace``: the old file survives a crash.

    A full disk (or quota) raises ``OutputError`` naming the file and the free space; the old file is kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        if _disk_full(err):
            kept = f"{path} still holds the previous file" if path.exists() else f"no earlier {path.name} to keep"
            raise OutputError(f"{path}: the disk is full ({_mib(shutil.disk_usage(path.parent).free)} free in "
                              f"{path.parent} after writing {_mib(written)} of it); {kept}. Free space or move the "
                              "output folders to a larger disk, then resume with --ckpt_path last") from err
        raise
    _fsync_dir(path.parent)


def _disk_full(err: BaseException | None) -> bool:
    """True when ``err`` or an exception it was raised from is ENOSPC / EDQUOT (torch.save wraps the OSError in a
    ``RuntimeError: unexpected pos``)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def follow_umask(folder: str | os.PathLike) -> None:
    """Give every file under ``folder`` the mode a plain ``open`` gives (0666 less the umask, 0644 usually): some
    writers (safetensors via a temporary file) leave 0600, so one export would mix modes."""
    umask = os.umask(0)
    os.umask(umask)
    for root, _, files in os.walk(folder):
        for name in files:
            os.chmod(Path(root) / name, 0o666 & ~umask)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable: fsync the folder (skipped where the filesystem cannot open folders)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
