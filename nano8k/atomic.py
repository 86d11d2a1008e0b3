"""Writing output files safely: atomic replace (a crash leaves the old file), a full disk named, modes, writability."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
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
            raise OutputError(
                f"{path}: the disk is full ({_mib(shutil.disk_usage(path.parent).free)} free in "
                f"{path.parent} after writing {_mib(written)} of it); {kept}. Free space or move the "
                "output folders to a larger disk, then resume with --ckpt_path last"
            ) from err
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


def current_umask() -> int:
    """The process's umask, read without changing it (Linux ``/proc``); elsewhere set and restored at once (not
    thread-safe, so only there)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def follow_umask(folder: str | os.PathLike) -> None:
    """Give every file under ``folder`` the mode a plain ``open`` gives (0666 less the umask, 0644 usually): some
    writers (safetensors via a temporary file) leave 0600, so one export would mix modes."""
    umask = current_umask()
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


def unwritable_reason(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (or, when it does not exist yet, created there); None when they can.

    A real probe (a nameless temporary file) rather than permission bits: it sees read-only filesystems and root."""
    probe = Path(folder)
    while not probe.exists():
        if probe.parent == probe:
            return "no existing parent folder"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        where = "" if probe == Path(folder) else f" (its nearest existing parent {probe}: the folder cannot be created)"
        return f"{err.strerror or err}{where}"
    return None
