"""Writing files so that a kill, a crash or a full disk never leaves a half-written one.

`atomic_write(path)` hands out a temporary file next to `path`; only when everything has
been written, flushed and synced is it renamed onto `path` (a rename within a folder is
atomic on POSIX and Windows). If anything fails, the temporary file is removed and `path`
keeps its previous content. A failure of the disk or the file system (no space left, a
quota, no permission, a read-only mount) becomes a `WriteError` that names the path and the
free space there, which the command line prints without a traceback.

A kill -9 mid-write cannot run any clean-up: it leaves a temporary file, hidden
(``.NAME.tmpPID``) and never mistaken for the real one; `remove_temporaries` deletes those
of a folder when the next run starts on it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .errors import HamganError

TEMPORARY_GLOB = ".*.tmp[0-9]*"


class WriteError(HamganError):
    """A file could not be written (full disk, quota, permission, read-only file system)."""


def free_space(path: str | os.PathLike) -> str:
    """Free space on the disk holding `path` (or its nearest existing parent), in words."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return "free space unknown"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if free >= size:
            return f"{free / size:.1f} {unit} free"
    return f"{free} bytes free"


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind `e`: itself, or one it was raised from or during (torch.save turns a
    failed write of its stream into a RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def writing(path: str | os.PathLike):
    """Inside, a failure to write (an OSError, also one wrapped by a library) becomes a
    `WriteError` naming `path` and the free space."""
    try:
        yield
    except WriteError:
        raise
    except Exception as e:
        err = _os_error(e)
        if err is None:
            raise
        reason = err.strerror or type(err).__name__
        raise WriteError(f"cannot write {path}: {reason} ({free_space(path)}); free some space or fix the "
                         f"permissions, then run the same command again") from e


def temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs):
    """`with atomic_write(p) as f: ...` writes `p` all at once or not at all (see the module
    docstring). `mode` 'wb' or 'w' (text: `open_kwargs` such as encoding)."""
    path = Path(path)
    tmp = temporary_name(path)
    with writing(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, mode, **open_kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _sync_folder(path.parent)


def write_text(path: str | os.PathLike, text: str, **open_kwargs) -> None:
    """`path` <- `text` (UTF-8 unless `open_kwargs` say otherwise), atomically."""
    with atomic_write(path, "w", **{"encoding": "utf-8", **open_kwargs}) as f:
        f.write(text)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); folders cannot be opened on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files writes killed mid-way left under `folder`; returns them. Call
    it only while no one else writes there (e.g. holding the run's lock)."""
    found = sorted(Path(folder).rglob(TEMPORARY_GLOB)) if Path(folder).is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return found
