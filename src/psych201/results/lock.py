"""One process owns a run directory: an OS lock on ``DIR/.psych201.lock`` for a command's life.

Every command that writes into a run directory (``score``, ``merge``, ``runs verify --repair``)
takes the lock before its first write; a second process is refused at once with the holder's PID.
The lock is ``flock`` (through :func:`filelock.lock_descriptor`): the kernel drops it when the
holder exits or is killed, so a stale lock file never blocks a rerun. The file stays in place on
release (deleting it would let two processes lock two different inodes of the same name) and
holds the PID and host of the last holder, which is what the refusal names.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from types import TracebackType

from filelock import lock_descriptor, unlock_descriptor

from psych201.errors import EXIT_USAGE, RunLockedError, StorageError
from psych201.results.writer import ResultsError

LOCK_FILE = ".psych201.lock"

#: How long a refused process waits for the holder to have written its PID (it writes it right
#: after taking the lock, so this is only the gap between flock and write).
_PID_WAIT_S = 0.2


class RunDirLockedError(ResultsError, RunLockedError):
    """Another process holds the run directory's lock; the message names its PID."""

    exit_code = EXIT_USAGE


class RunLock:
    """A held lock on a run directory; release it with :meth:`release` or a ``with`` block."""

    def __init__(self, run_dir: Path, fd: int, *, name: str, created: bool = False) -> None:
        self.run_dir = run_dir
        self._fd: int | None = fd
        self._name = name
        self._created = created

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._created:
                self._remove_if_unused()
            unlock_descriptor(fd)
        finally:
            os.close(fd)

    def _remove_if_unused(self) -> None:
        # A command that failed before writing anything leaves no directory behind. The lock
        # file goes while still locked, so no other process can hold a lock on it meanwhile.
        try:
            if [p.name for p in self.run_dir.iterdir()] == [self._name]:
                (self.run_dir / self._name).unlink()
                self.run_dir.rmdir()
        except OSError:
            pass

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOCK_FILE


def lock_run_dir(run_dir: str | Path, *, name: str = LOCK_FILE, label: str = "") -> RunLock:
    """Create ``run_dir`` if needed and lock it for this process, or raise
    :class:`RunDirLockedError` naming the process that holds it.

    ``name`` is the lock file's name in ``run_dir``; ``label`` what the refusal calls busy (a
    file output is locked through a sidecar in its folder).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ResultsError(f"{run_dir}: exists and is not a directory")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageError(f"{run_dir}: cannot create the run directory's lock ({exc})") from exc
    try:
        acquired = lock_descriptor(fd, blocking=False)
    except OSError as exc:
        os.close(fd)
        raise StorageError(f"{run_dir}: cannot lock the run directory ({exc})") from exc
    if not acquired:
        holder = _read_holder(fd)
        os.close(fd)
        raise RunDirLockedError(_busy(label or str(run_dir), holder))
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {platform.node()}\n".encode(), 0)
    except OSError as exc:
        unlock_descriptor(fd)
        os.close(fd)
        raise StorageError(f"{run_dir / name}: cannot write the lock's owner ({exc})") from exc
    return RunLock(run_dir, fd, name=name, created=created)


def _busy(label: str, holder: str) -> str:
    return (
        f"{label} is in use by another psych201 process ({holder}); wait for it to finish, or "
        "stop it and rerun this command"
    )


def check_unlocked(run_dir: str | Path) -> None:
    """Raise :class:`RunDirLockedError` now when another process holds ``run_dir``: a cheap
    early check (nothing created) so a command can refuse before loading a model."""
    holder = holder_of(Path(run_dir))
    if holder is not None:
        raise RunDirLockedError(_busy(str(run_dir), holder))


def _read_holder(fd: int) -> str:
    deadline = time.monotonic() + _PID_WAIT_S
    while True:
        text = os.pread(fd, 256, 0).decode(errors="replace").split()
        if text or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if not text:
        return "PID unknown"
    pid, host = text[0], " ".join(text[1:])
    return f"PID {pid}" + (f" on {host}" if host and host != platform.node() else "")


def lock_output_file(path: Path) -> RunLock:
    """Lock a single output file (``merge --out X.parquet``) through a sidecar next to it."""
    path = Path(path)
    return lock_run_dir(path.parent, name=f".{path.name}.psych201.lock", label=str(path))


def holder_of(run_dir: Path) -> str | None:
    """The holder (``PID n``) when another process holds ``run_dir``'s lock, else None.

    Reads only: does not create the directory or the lock file.
    """
    path = lock_path(run_dir)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if lock_descriptor(fd, blocking=False):
            unlock_descriptor(fd)
            return None
        return _read_holder(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
