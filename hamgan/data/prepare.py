"""`prepare`: an image folder -> a prepared store (see `store.py` for the files it holds).

Files are decoded by a pool of processes (PIL: decoding dominates), results come back in
listing order and are written straight into a memory-mapped ``images.npy`` pre-allocated for
every listed file, so RAM use does not grow with the dataset. Unreadable files are skipped:
later images move up, so the store has no holes; at the end the file is cut to the images
kept and its header rewritten.

Resuming: ``progress.json`` records (after the written images have been flushed) how many
listed files are done and how many images were kept. A re-run of the same command reopens the
store and continues from there, rewriting at most the images written after the last record, so
an interrupted-then-resumed store is byte-identical to an uninterrupted one. The manifest is
written last: its presence marks a finished store. Every file but the memory-mapped images is
written atomically (`hamgan.atomic`); a full disk stops the run with the path and the free
space, and the same command continues once space is freed. A lock file (`hamgan.runlock`) keeps
a second prepare out of the folder while one is writing it.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_write, remove_temporaries, write_text, writing
from ..errors import HamganError
from ..runlock import LOCK_NAME, RunLock
from .folder import LayoutError, Listing, read_class_names, scan_class_folders, scan_labelled_folder
from .transforms import check_resize, load_image

STORE_FORMAT = "hamgan-prepared"
STORE_VERSION = 1
IMAGES, LABELS, CLASSES, FILES, MANIFEST, REPORT, PROGRESS = (
    "images.npy", "labels.npy", "class_names.json", "files.txt", "manifest.json", "report.txt", "progress.json")
STOP_ENV = "HAMGAN_PREPARE_KILL_AFTER"  # testing hook: SIGKILL ourselves after this many images


class SimulatedCrash(RuntimeError):
    """Raised by the `_stop_after` testing hook: the run stops as if killed, without recording
    the images written since the last progress record."""


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS)
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- workers


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    warnings.simplefilter("ignore")  # PIL's EXIF/palette warnings would flood the progress bar


def _load(task: tuple[str, int, str]) -> tuple[np.ndarray | None, str]:
    """(path, size, resize) -> (uint8 (size, size, 3), '') or (None, reason it is unreadable)."""
    path, size, resize = task
    try:
        return load_image(path, size, resize), ""
    except Exception as e:  # any decoding failure means "skip and report", never abort
        return None, f"{type(e).__name__}: {e}".replace("\n", " ")


# --------------------------------------------------------------------------- files


def _write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def _shrink_npy(path: Path, n: int) -> None:
    """Cut a uint8 .npy of shape (M, ...) to its first n rows: new header (padded to the old
    length, so the data does not move), then truncate."""
    with open(path, "r+b") as f:
        major, _ = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if major == 1
                                 else np.lib.format.read_array_header_2_0(f))
        offset = f.tell()
        prefix = 10 if major == 1 else 12  # magic (6) + version (2) + header length (2 or 4)
        new_shape = (n,) + tuple(shape[1:])
        header = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran,
                       "shape": new_shape})
        header = header.ljust(offset - prefix - 1) + "\n"
        assert len(header) == offset - prefix
        f.seek(prefix)
        f.write(header.encode("latin1"))
        f.truncate(offset + n * int(np.prod(shape[1:])) * dtype.itemsize)


# --------------------------------------------------------------------------- prepare


def _job(listing: Listing, src: Path, label_file, size: int, resize: str) -> dict:
    """What identifies a run: a re-run continues only when all of it is equal."""
    return {"source": str(src), "label_file": str(Path(label_file).resolve()) if label_file else None,
            "size": size, "resize": resize, "candidates": len(listing.files),
            "listing_sha256": listing.fingerprint()}


class _AlreadyDone(Exception):
    """`out` already holds the finished store of this job."""

    def __init__(self, manifest):
        self.manifest = manifest


def _check_out(out: Path, job: dict) -> dict | None:
    """Decide what to do with the output folder: returns the saved progress (resume), None
    (fresh start) or raises; a finished store of the same job raises `_AlreadyDone`."""
    if (out / MANIFEST).is_file():
        manifest = json.loads((out / MANIFEST).read_text())
        if manifest.get("job") == job:
            raise _AlreadyDone(manifest)
        raise HamganError(f"{out} already holds a finished store of another source or options "
                          f"({manifest.get('source')}, {manifest.get('size')} px, {manifest.get('resize')}); "
                          f"choose another --out or delete it")
    if (out / PROGRESS).is_file():
        saved = json.loads((out / PROGRESS).read_text())
        if saved.get("job") != job:
            raise HamganError(f"{out} holds an unfinished prepare of another source, options or file "
                              f"listing ({saved.get('job', {}).get('source')}); re-run that command to "
                              f"finish it, or delete {out}")
        return saved
    if out.exists() and (not out.is_dir() or any(p.name != LOCK_NAME for p in out.iterdir())):
        raise HamganError(f"--out {out} exists and is not empty (nor a store being prepared); "
                          f"choose a new folder")
    return None


def prepare(src: str | os.PathLike, out: str | os.PathLike, size: int = 128, resize: str = "tf_bilinear",
            workers: int | None = None, label_file: str | os.PathLike | None = None,
            classes: str | os.PathLike | list[str] | None = None, progress: bool = True,
            checkpoint_every: int = 10_000, _stop_after: int | None = None) -> dict:
    """Prepare the images under `src` into the store `out`; returns its manifest (a dict).

    `src`: an ImageFolder tree, or (with `label_file`) a flat folder, see `folder.py`.
    `classes`: class list for a labelled flat folder (a store, an ImageFolder tree, a text file
    or a list). `workers`: decoding processes (default: all cores; <= 1 decodes in this process).
    `checkpoint_every`: images between progress records (also every 10 s).
    `_stop_after`: testing hook, raise `SimulatedCrash` after that many images of this call.
    Re-running the same call on an unfinished `out` continues it; on a finished one it is a no-op."""
    check_resize(resize, "--resize")
    if size < 1:
        raise HamganError(f"--size must be positive, got {size}")
    src, out = Path(src).resolve(), Path(out).resolve()
    if label_file is not None:
        names = read_class_names(classes) if isinstance(classes, (str, os.PathLike)) else classes
        listing = scan_labelled_folder(src, label_file, names)
    else:
        if classes is not None:
            raise HamganError("--classes applies to a flat folder with --labels; an ImageFolder's classes "
                              "are its sub-folders")
        listing = scan_class_folders(src)
    job = _job(listing, src, label_file, size, resize)
    try:
        saved = _check_out(out, job)
    except _AlreadyDone as finished:
        if progress:
            print(f"{out}: already prepared ({finished.manifest['count']} images); nothing to do", file=sys.stderr)
        return finished.manifest

    need = (len(listing.files) - (saved["kept"] if saved else 0)) * size * size * 3
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free
    if need > free:
        raise HamganError(f"{out}: the store needs {need / 1e9:.1f} GB more, only {free / 1e9:.1f} GB free")
    with RunLock(out, "hamgan prepare", note=lambda line: print(line, file=sys.stderr)):
        remove_temporaries(out)  # of writes a kill interrupted
        kept, skipped = _convert(listing, out, job, saved, workers, progress, checkpoint_every, _stop_after)
        manifest = _finish(out, listing, job, kept, skipped)
    return manifest


def _convert(listing: Listing, out: Path, job: dict, saved: dict | None, workers: int | None, progress: bool,
             checkpoint_every: int, stop_after: int | None) -> tuple[int, list]:
    """Decode every listed file not done yet into images.npy; returns (images kept, skipped
    [file, reason] pairs)."""
    m, size, resize, src = len(listing.files), job["size"], job["resize"], Path(job["source"])
    done, kept, skipped = (saved["done"], saved["kept"], saved["skipped"]) if saved else (0, 0, [])
    with writing(out / IMAGES):
        if saved:
            images = np.load(out / IMAGES, mmap_mode="r+")
        else:
            images = np.lib.format.open_memmap(out / IMAGES, mode="w+", dtype=np.uint8, shape=(m, size, size, 3))

    def record():
        with writing(out / IMAGES):
            images.flush()  # data first, then the record that says it is there
        _write_json(out / PROGRESS, {"job": job, "done": done, "kept": kept, "skipped": skipped})

    if not saved:
        record()
    kill_after = int(os.environ.get(STOP_ENV, "0") or 0)
    tasks = ((str(src / f), size, resize) for f in listing.files[done:])
    workers = default_workers() if workers is None else workers
    pool = multiprocessing.Pool(workers, initializer=_init_worker) if workers > 1 and done < m else None
    from tqdm import tqdm
    bar = tqdm(total=m, initial=done, unit="img", desc=f"prepare {size}px", disable=not progress,
               dynamic_ncols=True, smoothing=0.05)
    last_record, last_time, n_this_call = done, time.monotonic(), 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = pool.imap(_load, tasks, chunksize=16) if pool else map(_load, tasks)
            for array, error in results:
                if array is not None:
                    images[kept] = array
                    kept += 1
                else:
                    skipped.append([listing.files[done], error])
                    bar.set_postfix(skipped=len(skipped), refresh=False)
                done += 1
                n_this_call += 1
                bar.update()
                if stop_after is not None and n_this_call >= stop_after:
                    raise SimulatedCrash(f"stopped after {n_this_call} images")
                if kill_after and n_this_call >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                if done - last_record >= checkpoint_every or time.monotonic() - last_time > 10:
                    record()
                    last_record, last_time = done, time.monotonic()
    except KeyboardInterrupt:
        # no record here: the counters may be half-updated; the last record is at most 10 s old
        bar.close()
        print(f"\n{out}: interrupted; run the same command again to continue", file=sys.stderr)
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    record()
    return kept, skipped


def _finish(out: Path, listing: Listing, job: dict, kept: int, skipped: list) -> dict:
    """Cut images.npy to the kept images and write labels, names, file list, report, manifest.
    Safe to repeat after an interruption (the cut is idempotent, the rest is rewritten)."""
    report = [f"# {len(skipped)} unreadable images skipped (file<TAB>reason)"]
    report += [f"{f}\t{reason}" for f, reason in skipped]
    report += [f"# {len(listing.ignored)} files ignored (not an image extension, or no label)"]
    report += listing.ignored
    write_text(out / REPORT, "\n".join(report) + "\n", errors="surrogateescape")
    if kept == 0:
        raise HamganError(f"none of the {len(listing.files)} images could be read; reasons in {out / REPORT}")
    with writing(out / IMAGES):
        _shrink_npy(out / IMAGES, kept)
    bad = {f for f, _ in skipped}
    files = [f for f in listing.files if f not in bad]
    labels = np.array([y for f, y in zip(listing.files, listing.labels) if f not in bad], dtype=np.int64)
    assert len(files) == kept
    with atomic_write(out / LABELS) as f:
        np.save(f, labels)
    _write_json(out / CLASSES, listing.class_names)
    write_text(out / FILES, "".join(f"{f}\n" for f in files), errors="surrogateescape")
    counts = np.bincount(labels, minlength=len(listing.class_names)).tolist()
    manifest = {
        "format": STORE_FORMAT, "version": STORE_VERSION, "hamgan_version": __version__,
        "source": job["source"], "label_file": job["label_file"], "size": job["size"],
        "resize": job["resize"], "count": kept, "classes": len(listing.class_names),
        "class_counts": dict(zip(listing.class_names, counts)), "candidates": job["candidates"],
        "skipped": len(skipped), "skipped_files": sorted(bad), "ignored": len(listing.ignored),
        "files": {"images": IMAGES, "labels": LABELS, "class_names": CLASSES, "files": FILES, "report": REPORT},
        "job": job,
    }
    empty = [c for c, n in manifest["class_counts"].items() if n == 0]
    if empty:
        warnings.warn(f"{out}: every image of {len(empty)} classes was unreadable: {', '.join(empty[:5])}")
    _write_json(out / MANIFEST, manifest)
    (out / PROGRESS).unlink(missing_ok=True)
    return manifest


__all__ = ["prepare", "SimulatedCrash", "LayoutError", "default_workers", "STORE_FORMAT", "STORE_VERSION"]
