"""What a fit writes to and resumes from: its folders (writable, one run at a time), the checkpoint ``--ckpt_path``
names, and where W&B logs when no key is known."""

from __future__ import annotations

import datetime
import errno
import json
import netrc
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from nano8k.atomic import unwritable_reason
from nano8k.errors import OutputError

LOCK_NAME = ".nano8k-run.lock"  # in every owned folder while a fit runs; holds the owner's pid, host and start time


@dataclass(frozen=True)
class OutputFolder:
    """One folder a fit writes to; ``owned`` folders (checkpoints, export, the run's root) take one run at a time,
    the others (a logger's save_dir, which Lightning versions per run) are only checked for writing."""

    key: str  # the config key that sets it, for messages
    path: Path
    owned: bool = True


def _callbacks(config: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """(short class name, init args) of every callback, in fit's parsed form or preflight's folded form."""
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    for item in callbacks.values() if isinstance(callbacks, Mapping) else callbacks:
        if isinstance(item, Mapping) and "class_path" in item:
            yield str(item["class_path"]).rsplit(".", 1)[-1], item.get("init_args") or item


def _loggers(config: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    logger = (config.get("trainer") or {}).get("logger")
    if isinstance(logger, Mapping) and "class_path" not in logger:
        items = [(f"trainer.logger.{name}", value) for name, value in logger.items()]
    else:
        items = [("trainer.logger", item) for item in (logger if isinstance(logger, list) else [logger])]
    for key, item in items:
        if isinstance(item, Mapping) and "class_path" in item:
            yield key, item.get("init_args") or item


def output_folders(config: Mapping[str, Any]) -> list[OutputFolder]:
    """The folders the config names for a fit's outputs: ``trainer.default_root_dir`` (before_after.json, the default
    export), every checkpoint callback's ``dirpath``, ExportOnFitEnd's ``out_dir`` and each logger's ``save_dir``.

    Folders left to Lightning's defaults (versioned ``lightning_logs/version_N``) are not listed: runs do not share
    them.
    """
    trainer = config.get("trainer") or {}
    root = trainer.get("default_root_dir")
    folders = [OutputFolder("trainer.default_root_dir", Path(root))] if root else []
    for name, args in _callbacks(config):
        if args.get("dirpath"):
            folders.append(OutputFolder(f"trainer.callbacks.{name}.dirpath", Path(args["dirpath"])))
        if name == "ExportOnFitEnd" and (args.get("out_dir") or root):
            folders.append(
                OutputFolder(f"trainer.callbacks.{name}.out_dir", Path(args.get("out_dir") or Path(root) / "export"))
            )
    for key, args in _loggers(config):
        if args.get("save_dir"):
            folders.append(OutputFolder(f"{key}.save_dir", Path(args["save_dir"]), owned=False))
    unique: dict[Path, OutputFolder] = {}
    for folder in folders:
        resolved = folder.path.expanduser().resolve()
        if resolved not in unique or (folder.owned and not unique[resolved].owned):
            unique[resolved] = OutputFolder(folder.key, resolved, folder.owned)
    return list(unique.values())


def require_writable(folders: Iterable[OutputFolder]) -> None:
    """``OutputError`` naming the first folder that cannot be written (or created), its key, why and the fix."""
    for folder in folders:
        reason = unwritable_reason(folder.path)
        if reason is not None:
            raise OutputError(
                f"{folder.key}={folder.path}: cannot write there ({reason}); make the folder writable "
                f"or set {folder.key} to a folder you can write"
            )


class RunLock:
    """Holds ``<folder>/.nano8k-run.lock`` for each owned output folder while a fit runs, so a second fit into the same
    folder is refused instead of overwriting ``last.ckpt``, ``export/`` and ``before_after.json``.

    The lock is an advisory ``flock`` on the file, so it ends with its process however that process ends (a
    ``kill -9`` leaves no stale lock); the file names the owner (pid, host, start time) for the refusal message.
    """

    def __init__(self, folders: Iterable[OutputFolder]) -> None:
        self.folders = sorted((f for f in folders if f.owned), key=lambda f: str(f.path))  # one order: no deadlock
        self._held: list[tuple[Path, int]] = []
        self.empty: list[Path] = []  # owned folders that held nothing but this run's lock file when it was taken

    def acquire(self) -> RunLock:
        """Take every folder's lock or none; ``OutputError`` names the folder and the run that holds it."""
        try:
            for folder in self.folders:
                self._held.append((folder.path / LOCK_NAME, self._lock(folder)))
                if [p.name for p in folder.path.iterdir()] == [LOCK_NAME]:
                    self.empty.append(folder.path)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Remove the lock files this run holds (a no-op when it holds none)."""
        import fcntl

        while self._held:
            path, fd = self._held.pop()
            try:
                path.unlink(missing_ok=True)  # unlinked before unlocking: a waiting opener sees a new inode (_lock)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    @staticmethod
    def _lock(folder: OutputFolder) -> int:
        import fcntl

        path = folder.path / LOCK_NAME
        require_writable([folder])
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{folder.key}={folder.path}: cannot create the folder ({err.strerror or err})") from err
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise OutputError(
                    f"{folder.key}={folder.path} is in use by another nano8k fit ({_owner(path)}): "
                    "two runs in one folder overwrite each other's last.ckpt, export and "
                    f"before_after.json. Wait for that run to end, or set {folder.key} (and the run's "
                    "other output folders) to a folder of this run's own"
                ) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:  # else the previous owner removed the file between our open and lock: take the new one
                break
            os.close(fd)
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(owner) + "\n").encode())
        return fd


def _owner(path: Path) -> str:
    """``pid N on host H, started T; lock file P`` from a lock file, as far as it can be read."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        owner = {}
    if not owner:
        return f"starting now; lock file {path}"
    return f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}; lock file {path}"


def wandb_api_key_known() -> bool:
    """True when W&B can authenticate: WANDB_API_KEY, or a key saved by ``wandb login`` in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def default_wandb_offline() -> None:
    """W&B runs offline (``wandb sync`` later) unless a key is known or WANDB_MODE is set explicitly."""
    if not os.environ.get("WANDB_MODE") and not wandb_api_key_known():
        os.environ["WANDB_MODE"] = "offline"
        print("[wandb] no API key found: logging offline (sync later with `wandb sync <run dir>`)")


def resume_file(trainer: Any, ckpt_path: str | None) -> str | None:
    """The file ``--ckpt_path`` resumes from as Lightning picks it: a path as given, ``last`` the newest ``last*.ckpt``
    of the checkpoint callbacks' folders; None for no resume, no last.ckpt yet, or the other keywords."""
    if ckpt_path in (None, "best", "hpc") or str(ckpt_path).startswith(("http://", "https://")):
        return None
    if ckpt_path != "last":
        return ckpt_path
    found = {
        path
        for callback in trainer.checkpoint_callbacks
        if isinstance(callback, ModelCheckpoint)
        for path in _last_checkpoints(callback, trainer)
    }
    return max(found, key=os.path.getmtime) if found else None


def _last_checkpoints(callback: ModelCheckpoint, trainer: Any) -> list[str]:
    """Lightning's own rule for 'last' (a private method of 2.6); where a release lacks it, ``last*.ckpt`` in the
    callback's folder, as that rule reads it."""
    find = getattr(callback, "_find_last_checkpoints", None)
    if find is not None:
        return list(find(trainer))
    folder = Path(callback.dirpath) if callback.dirpath else None
    return [str(path) for path in folder.glob("last*.ckpt")] if folder and folder.is_dir() else []
