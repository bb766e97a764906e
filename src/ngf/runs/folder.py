"""The run folder (``out``): refused before any work if unusable, locked, prepared, and cleaned up.

``check`` runs before the data and the model are loaded; ``prepare``, right after it,
takes the folder's lock (one writer per folder: ``fcntl.flock`` on
``DIR/.ngf.lock``, released by the kernel however the process ends) and returns the
``RunFolder`` the run writes through. Its ``claim`` makes the folder the run's before
its first file: with ``--overwrite`` the old run's files stay until then (the new run's
first checkpoint, or its end if that comes first). ``close`` lets go of the lock and,
after a failure before the first epoch, removes what the run wrote, so that nothing
looks like a result.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Callable

import jax

from ngf.core.errors import NgfError
from ngf.runs.config import RunConfig
from ngf.runs.files import (CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE, OWN_FILES, PROBE_PREFIX, holds_files,
                            is_debris, remove_debris, remove_own_files)


def check(config: RunConfig) -> None:
    """Refuse an ``out`` that cannot be used, before anything is loaded or written."""
    if config.out is None:
        if config.resume:
            raise NgfError("resume needs the run's folder (out, or ngf run --resume DIR)")
        return
    out = Path(config.out)
    try:
        if out.exists() and not out.is_dir():
            raise NgfError(f"--out {out} exists and is not a folder")
        if config.resume:
            if not out.is_dir():
                raise NgfError(f"cannot resume: {out} does not exist")
            for name in (CONFIG_FILE, CHECKPOINT_FILE):  # what a resume reads: ngf's own regular files
                check_own_file(out / name)
            if not any((out / name).is_file() for name in (CHECKPOINT_FILE, CONFIG_FILE)):
                raise NgfError(f"cannot resume: {out} holds no run ({CHECKPOINT_FILE} does not exist)")
        elif holds_files(out) and not config.overwrite and jax.process_index() == 0:
            # a lock or temporary file a kill left is no run; in a multi-process run only process 0
            # writes and checks this: another may start after process 0 wrote its config.toml
            raise _holds_files(out)
        for above in out.parents:  # the first folder that exists must be a folder
            if above.exists():
                if not above.is_dir():
                    raise NgfError(f"cannot write to --out {out}: {above} is not a folder")
                break
    except OSError as exc:
        raise NgfError(f"cannot use --out {out}: {exc.strerror or exc}") from None
    _check_log_target(config, out)
    _probe(out)


def check_own_file(path: Path) -> None:
    """Refuse a run file that is there but is not a regular file ngf wrote (a directory, a link, a device)."""
    if not os.path.lexists(path) or (path.is_file() and not path.is_symlink()):
        return
    kind = ("a link" if path.is_symlink() else "a directory" if path.is_dir() else "not a regular file")
    raise NgfError(f"cannot resume: {path} is {kind}, not the run's {path.name}; ngf writes it as a plain file "
                   "(remove it, or start a new run in another folder)")


def _check_log_target(config: RunConfig, out: Path) -> None:
    """Refuse a --log-csv that names one of the run's own files (its checkpoint, metrics, config, summary,
    lock): appending rows to it would destroy the run."""
    if config.log_csv is None:
        return
    target = Path(config.log_csv).expanduser().resolve()
    if target.parent == out.expanduser().resolve() and (target.name in OWN_FILES or is_debris(target.name)):
        raise NgfError(f"--log-csv {config.log_csv} is the run's own {target.name}; choose another file")


def _probe(out: Path) -> None:
    """Fail now, not after loading the data, if ``out`` cannot be created or written to.

    Creates ``out`` (and missing parents) and a temporary file in it, then removes
    exactly what it created.
    """
    missing = [folder for folder in (out, *out.parents) if not folder.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=out)
        os.close(handle)
        Path(name).unlink(missing_ok=True)
    except OSError as exc:
        raise NgfError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    finally:
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


def _holds_files(out: Path) -> NgfError:
    return NgfError(f"--out {out} already holds files; choose another folder or pass --overwrite")


class FolderLock:
    """An exclusive ``flock`` on ``DIR/.ngf.lock``, a file holding the holder's pid."""

    def __init__(self, path: Path, handle: int):
        self.path, self.handle = path, handle

    def release(self) -> None:
        """Remove the lock file while still holding it, then let go (a waiting opener then retries)."""
        if self.handle is None:
            return
        try:
            if _same_file(self.handle, self.path):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(self.handle)
            self.handle = None


def _same_file(handle: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``handle`` (a releasing holder may have removed it)."""
    try:
        found = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(handle)
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)


def _open_lock_file(path: Path) -> int:
    """Open (create) the lock file itself: never through a symbolic link or a hard link planted in the folder
    (one is removed and the file made afresh, so that writing the pid truncates nothing outside)."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(3):
        try:
            handle = os.open(path, flags, 0o644)
        except IsADirectoryError:
            raise NgfError(f"{path} is a directory where ngf keeps its lock file; remove it") from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            path.unlink()  # a symbolic link where the lock goes: removed, never followed
            continue
        if os.fstat(handle).st_nlink <= 1:
            return handle
        os.close(handle)
        path.unlink()  # a hard link to a file elsewhere: removed, never written
    raise NgfError(f"{path} keeps being replaced by a link; remove it")


def lock(out: Path) -> FolderLock:
    """Take ``out``'s lock without waiting; if another process holds it, ``NgfError`` naming its pid."""
    path = Path(out) / LOCK_FILE
    while True:
        handle = _open_lock_file(path)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            raise NgfError(f"{out} is in use by another ngf run (pid {holder}); wait for it to end "
                           "or choose another --out") from None
        if _same_file(handle, path):
            break
        os.close(handle)  # locked a file its holder removed as it ended: lock the new one
    os.ftruncate(handle, 0)
    os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
    return FolderLock(path, handle)


class RunFolder:
    """The locked folder of one run (``out`` None: a run without files).

    ``write_config`` writes the run's ``config.toml``; the caller sets it once the run's
    names are resolved, before ``claim``. In a multi-process run only process 0 writes
    the folder (docs/scaling.md): the others' ``RunFolder`` (``writer`` False) holds no
    lock and neither removes nor writes anything.
    """

    def __init__(self, out: Path | None, created: Path | None, held: FolderLock | None, replaces: bool = False,
                 write_config: Callable[[], None] = lambda: None, writer: bool = True):
        self.out, self.created, self.held, self.writer = out, created, held, writer
        self.replaces, self.write_config, self.claimed = replaces, write_config, False
        self.resumed = False  # a resumed run's files are never removed: they are the run
        self.identity = None  # what its checkpoints record of the run (ngf.runs.identity), once resolved
        self.restores = None  # the identity the checkpoint it resumes from must record, once resolved

    @property
    def writes(self) -> Path | None:
        """Where this process writes the run's files: ``out``, or ``None`` where it does not write."""
        return self.out if self.writer else None

    def claim(self) -> None:
        """Before the run's first file, once: remove an overwritten run's files, write config.toml."""
        if self.claimed or self.out is None:
            return
        self.claimed = True
        if not self.writer:
            return
        if self.replaces:
            remove_own_files(self.out)
        self.write_config()

    def close(self, failed: bool) -> None:
        """Let go of the lock; after a failure before the first epoch, remove what this run wrote first."""
        if self.out is None or not self.writer:
            return
        try:
            if failed and self.claimed and not self.resumed and not (self.out / CHECKPOINT_FILE).exists():
                remove_own_files(self.out)
        finally:
            self.held.release()
        if failed:
            _remove_created(self.out, self.created)


def _remove_created(out: Path, created: Path | None) -> None:
    """Remove the folders a run made (``out`` up to ``created``), deepest first, while they are empty."""
    if created is None:
        return
    for folder in (out, *out.parents):
        try:
            folder.rmdir()
        except OSError:
            break
        if folder == created:
            break


def prepare(config: RunConfig) -> RunFolder:
    """Create ``out`` (and missing parents), lock it, and clear what killed writes left in it.

    ``created`` is the topmost folder this call made, which ``close`` removes if the run
    fails before its first epoch. An earlier run's files (``--overwrite``) stay until
    ``claim``; only ngf's own files are removed then, nothing else in the folder.
    """
    if config.out is None:
        return RunFolder(None, None, None)
    out = Path(config.out)
    if jax.process_index() != 0:  # another process of a multi-process run: process 0 locks and writes
        return RunFolder(out, None, None, writer=False)
    created = next((f for f in reversed((out, *out.parents)) if not f.exists()), None)
    try:
        for attempt in range(3):  # another process's check() may remove the empty folder it probed meanwhile
            out.mkdir(parents=True, exist_ok=True)
            try:
                place = RunFolder(out, created, lock(out))
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
    except (OSError, NgfError) as exc:
        _remove_created(out, created)
        if isinstance(exc, NgfError):
            raise
        raise NgfError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    try:
        if not config.resume and not config.overwrite and holds_files(out):
            raise _holds_files(out)  # a run that ended between check() and the lock
        remove_debris(out)
    except BaseException:
        place.close(failed=True)
        raise
    place.replaces = not config.resume and any((out / n).exists() or (out / n).is_symlink() for n in OWN_FILES)
    place.resumed = config.resume
    return place
