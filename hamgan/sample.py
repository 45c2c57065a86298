"""Sampling from a trained generator: grids, class sheets, interpolations, truncation sheets,
exports for external FID/IS scripts, and pictures of what each Hamburger does.

Every Hamburger starts its NMF from random bases, so images are drawn in one of two ways:

- *samples* (`samples`, `grid`, `dump`, `ham_maps`): i.i.d. draws made exactly as `hamgan eval`
  makes them (batch k seeded with (seed, k), then z, labels, then per-sample bases inside G).
  A dump in fp32 is therefore the very image set `hamgan eval --seed S --batch B` scores, and
  the same (seed, batch) give the same bytes.
- *sheets* (`render`, `class_sheet`, `interpolate`, `truncation_sheet`): images meant to differ
  in one thing only (class, z, truncation). All of them start NMF from the same bases, drawn
  from the seed (`bases="shared"`), so each image is a function of its own (z, class): the
  same at any batch size or position, interpolation endpoints equal the direct samples, strips
  do not flicker.

Functions take a generator with hamgan's interface (`G(z, y)`, `G(z, embedding=e)`, `G.embed`,
`z_dim`, `n_classes`) and return uint8 images (B, 3, H, W) on the CPU; `save_sheet` and `dump`
write files through `hamgan.images`. G runs in eval mode (restored after), without autograd.
"""
from __future__ import annotations

import contextlib
import difflib
import math
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_write, write_text
from .errors import HamganError
from .ham import Bases, Hamburger, record_factors
from .images import save_grid, save_png, to_float, to_uint8
from .layers import eval_mode
from .metrics.evaluate import chunk_seed, sample_latents
from .rng import derive_seed, private_rng

PRECISIONS = ("fp32", "bf16")
INTERPOLATIONS = ("linear", "slerp")
DEFAULT_LEVELS = (math.inf, 2.0, 1.0, 0.5, 0.25)
DUMP_FORMATS = ("png", "npz", "both")


@dataclass
class Sheet:
    """Images to save as one PNG grid: uint8 (B, 3, H, W), row-major, `nrow` per row; `legend`
    says what rows and columns are. z (B, z_dim) and y (B,) are each image's latent and label
    where it has a single one (None otherwise)."""
    images: torch.Tensor
    nrow: int
    legend: list[str] = field(default_factory=list)
    z: torch.Tensor | None = None
    y: torch.Tensor | None = None


def save_sheet(sheet: Sheet, path: str | os.PathLike, header: Sequence[str] = ()) -> Path:
    """The sheet as a PNG at `path` and its legend (`header` lines first) next to it as .txt."""
    path = Path(path)
    save_grid(sheet.images, path, sheet.nrow)
    write_text(path.with_suffix(".txt"), "\n".join([*header, *sheet.legend]) + "\n")
    return path


# --------------------------------------------------------------------------- classes


def class_names_of(payload: dict, n_classes: int) -> list[str]:
    """The class names a checkpoint carries, or the indices as names if it has none."""
    names = payload.get("class_names")
    return [str(n) for n in names] if names and len(names) == n_classes else [str(i) for i in range(n_classes)]


def parse_classes(spec: str | Sequence[str | int], names: Sequence[str]) -> list[int]:
    """'3,red circle' (or a list) -> class indices. Each item is a class name (exact, else the one
    case-insensitive match) or an index; names win over indices when a name is a number."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    if not names:
        raise HamganError("this generator is unconditional: it takes no classes")
    exact = {n: i for i, n in enumerate(names)}
    folded: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        folded.setdefault(n.casefold(), []).append(i)
    out = []
    for item in items:
        if item in exact:
            out.append(exact[item])
        elif len(folded.get(item.casefold(), ())) == 1:
            out.append(folded[item.casefold()][0])
        elif item.lstrip("-").isdigit():
            k = int(item)
            if not 0 <= k < len(names):
                raise HamganError(f"class index {k} is out of range: the generator has {len(names)} classes "
                                  f"(0..{len(names) - 1})")
            out.append(k)
        else:
            close = difflib.get_close_matches(item, names, n=5, cutoff=0.6)
            hint = (f"close matches: {', '.join(map(repr, close))}" if close else
                    f"the {len(names)} classes are e.g. {', '.join(map(repr, names[:5]))}")
            raise HamganError(f"unknown class {item!r} ({hint}); give a class name or an index 0..{len(names) - 1}")
    if not out:
        raise HamganError(f"no classes in {spec!r}")
    return out


def _need_classes(G) -> None:
    if not G.n_classes:
        raise HamganError("this generator is unconditional (n_classes = 0): it has no classes to show")


def _row_classes(G, num: int, classes: Sequence[int] | None, seed: int) -> torch.Tensor | None:
    """(num,) labels: `classes` cycled, else uniform random from the seed; None if unconditional."""
    if not G.n_classes:
        return None
    if classes:
        return torch.tensor([classes[i % len(classes)] for i in range(num)])
    return torch.randint(G.n_classes, (num,), generator=torch.Generator().manual_seed(derive_seed(seed, "y")))


def _name(y: int | None, class_names: Sequence[str] | None) -> str:
    if y is None:
        return "-"
    return f"{y} ({class_names[y]})" if class_names and class_names[y] != str(y) else str(y)


# --------------------------------------------------------------------------- running G


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@contextlib.contextmanager
def _seeded(seed: int):
    """torch seeded with `seed` inside (CPU and CUDA); the caller's RNG state restored after."""
    with private_rng():
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _inference(module: torch.nn.Module, precision: str):
    """Eval mode (running BN statistics, eval NMF steps; restored after), no autograd, and bf16
    autocast when asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    with eval_mode(module), torch.no_grad(), \
            torch.autocast(_device(module).type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def _forward(G, z, y=None, embedding=None, precision="fp32", bases: Bases = "sample") -> torch.Tensor:
    """G(z, y) or G(z, embedding=e) -> float32 (B, 3, H, W) on the CPU."""
    device = _device(G)
    with _inference(G, precision):
        x = G(z.to(device), None if y is None else y.to(device),
              embedding=None if embedding is None else embedding.to(device), bases=bases)
    return x.float().cpu()


def _embed(G, y: torch.Tensor, precision="fp32") -> torch.Tensor:
    """G.embed(y) -> float32 (B, E) on the CPU, computed as G's forward computes it."""
    with _inference(G, precision):
        return G.embed(y.to(_device(G))).float().cpu()


def samples(G, num: int, *, classes: Sequence[int] | None = None, truncation: float | None = None, seed: int = 0,
            batch: int = 64, precision: str = "fp32") -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (uint8 images (b, 3, H, W), labels (b,) long or None), b <= batch, `num` in all.

    Batch k is drawn as `hamgan eval` draws it: torch seeded with chunk_seed(seed, k), then z
    (normal, or truncated to [-T, T] with `truncation`), uniform labels, then fresh NMF bases
    per sample inside G. With `classes` the labels cycle through them instead (z unchanged)."""
    if num < 1 or batch < 1:
        raise HamganError(f"need num >= 1 and batch >= 1, got {num} and {batch}")
    for k, lo in enumerate(range(0, num, batch)):
        n = min(batch, num - lo)
        with _seeded(chunk_seed(seed, k)):
            z, y = sample_latents(n, G.z_dim, G.n_classes, truncation)
            if classes and y is not None:
                y = torch.tensor([classes[i % len(classes)] for i in range(lo, lo + n)])
            images = to_uint8(_forward(G, z, y, precision=precision))
        yield images, y


def render(G, z: torch.Tensor, y: torch.Tensor | None = None, embedding: torch.Tensor | None = None, *,
           seed: int = 0, batch: int = 64, precision: str = "fp32") -> torch.Tensor:
    """Sheet images: G(z (B, z_dim), y (B,)) or G(z, embedding=e (B, E)) -> float32 (B, 3, H, W)
    in [-1, 1] on the CPU, every sample starting NMF from the same bases (drawn from `seed`),
    so each image depends on its own z and class only."""
    bases_seed, out = derive_seed(seed, "bases"), []
    for lo in range(0, len(z), batch):
        rows = slice(lo, lo + batch)
        with _seeded(bases_seed):
            out.append(_forward(G, z[rows], None if y is None else y[rows],
                                None if embedding is None else embedding[rows], precision, bases="shared"))
    return torch.cat(out)


def _sheet_latents(G, num: int, truncation: float | None, seed: int) -> torch.Tensor:
    """(num, z_dim) latents of a sheet, from the seed (truncated normal with `truncation`)."""
    with _seeded(derive_seed(seed, "z")):
        return sample_latents(num, G.z_dim, 0, truncation)[0]


# --------------------------------------------------------------------------- latents


def truncate(z: torch.Tensor, threshold: float) -> torch.Tensor:
    """Standard-normal z -> normal truncated to [-T, T] through the same quantile:
    z_T = Phi^-1(Phi(-T) + Phi(z) (1 - 2 Phi(-T))) = sqrt2 erfinv(erf(T / sqrt2) erf(z / sqrt2)).
    z_T is exactly truncated-normal when z ~ N(0, 1) and moves monotonically with T: "the same z"
    seen at several truncations. T = inf returns z. Computed in float64 for the tails."""
    if math.isinf(threshold) and threshold > 0:
        return z.clone()
    if not threshold > 0:
        raise HamganError(f"truncation must be > 0, got {threshold}")
    r2 = math.sqrt(2.0)
    zt = r2 * torch.erfinv(math.erf(threshold / r2) * torch.erf(z.double() / r2))
    return zt.clamp_(-threshold, threshold).to(z.dtype)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of latents z0, z1 (B, d) at t (T,) -> (B, T, d): the direction
    moves along the great circle, the norm linearly from |z0| to |z1|, so no point comes near
    the origin where a straight line between two Gaussian latents passes (their norms ~ sqrt d)."""
    n0, n1 = z0.norm(dim=1, keepdim=True).clamp_min(1e-12), z1.norm(dim=1, keepdim=True).clamp_min(1e-12)
    u0, u1 = (z0 / n0)[:, None], (z1 / n1)[:, None]                           # (B, 1, d)
    omega = (u0 * u1).sum(-1, keepdim=True).clamp(-1, 1).acos()               # (B, 1, 1)
    t = t.to(z0.dtype)[None, :, None]                                        # (1, T, 1)
    sin = omega.sin()
    parallel = sin < 1e-6                                                    # no circle: straight line
    w0 = torch.where(parallel, 1 - t, ((1 - t) * omega).sin() / sin.clamp_min(1e-6))
    w1 = torch.where(parallel, t, (t * omega).sin() / sin.clamp_min(1e-6))
    direction = F.normalize(w0 * u0 + w1 * u1, dim=-1)
    return direction * ((1 - t) * n0[:, None] + t * n1[:, None])


def interpolate_latents(z0: torch.Tensor, z1: torch.Tensor, steps: int, kind: str = "slerp") -> torch.Tensor:
    """`steps` points from z0 to z1 (B, d), both included -> (B, steps, d), endpoints exact."""
    if kind not in INTERPOLATIONS:
        raise HamganError(f"interpolation must be one of {INTERPOLATIONS}, got {kind!r}")
    if steps < 2:
        raise HamganError(f"an interpolation needs at least 2 steps (its endpoints), got {steps}")
    t = torch.linspace(0, 1, steps)
    if kind == "linear":
        out = z0[:, None] + t[None, :, None] * (z1 - z0)[:, None]
    else:
        out = slerp(z0, z1, t)
    out[:, 0], out[:, -1] = z0, z1
    return out


# --------------------------------------------------------------------------- modes


def grid(G, num: int = 64, *, nrow: int | None = None, classes: Sequence[int] | None = None,
         class_names: Sequence[str] | None = None, truncation: float | None = None, seed: int = 0,
         batch: int = 64, precision: str = "fp32") -> Sheet:
    """`num` samples (see `samples`: random classes, or `classes` cycled), `nrow` per row
    (default: a square-ish grid)."""
    parts = list(samples(G, num, classes=classes, truncation=truncation, seed=seed, batch=batch, precision=precision))
    images = torch.cat([im for im, _ in parts])
    y = torch.cat([lab for _, lab in parts]) if G.n_classes else None
    nrow = nrow or math.ceil(math.sqrt(num))
    legend = [f"grid: {num} samples, {nrow} per row, row-major" + (f", truncation {truncation}" if truncation else "")]
    if y is not None:
        legend += [f"row {r}: classes " + ", ".join(_name(c, class_names) for c in y[r * nrow:(r + 1) * nrow].tolist())
                   for r in range(math.ceil(num / nrow))]
    return Sheet(images, nrow, legend, y=y)


def class_sheet(G, classes: Sequence[int] | None = None, columns: int = 8, *,
                class_names: Sequence[str] | None = None, truncation: float | None = None, seed: int = 0,
                batch: int = 64, precision: str = "fp32") -> Sheet:
    """One row per class (all, or `classes`), one column per z: the same `columns` latents in
    every row, so a column shows one z across classes."""
    _need_classes(G)
    classes = list(range(G.n_classes)) if classes is None else list(classes)
    z = _sheet_latents(G, columns, truncation, seed).repeat(len(classes), 1)
    y = torch.tensor(classes).repeat_interleave(columns)
    images = to_uint8(render(G, z, y, seed=seed, batch=batch, precision=precision))
    legend = [f"class sheet: {len(classes)} rows (one class each) x {columns} columns (one z each, the same in "
              f"every row)" + (f", truncation {truncation}" if truncation else "")]
    legend += [f"row {r}: class {_name(c, class_names)}" for r, c in enumerate(classes)]
    return Sheet(images, columns, legend, z, y)


def interpolate(G, over: str = "z", *, num: int = 4, steps: int = 8, kind: str = "slerp",
                classes: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                truncation: float | None = None, seed: int = 0, batch: int = 64, precision: str = "fp32") -> Sheet:
    """`num` strips (rows) of `steps` images each, endpoints included.

    over='z': z0 -> z1 (`kind`: 'linear' or 'slerp') at a fixed class per row (`classes`
    cycled, else random). over='class': class a -> class b at a fixed z per row, by linear
    interpolation of the class representations G.embed (a, b = consecutive `classes`, cycled,
    with two or more given; else random distinct pairs). Sheet.y holds the labels of the
    z-strips (None for class strips)."""
    if steps < 2:
        raise HamganError(f"an interpolation needs at least 2 steps (its endpoints), got {steps}")
    t = torch.linspace(0, 1, steps)
    if over == "z":
        z = _sheet_latents(G, 2 * num, truncation, seed)
        zs = interpolate_latents(z[:num], z[num:], steps, kind).reshape(num * steps, -1)
        y = _row_classes(G, num, classes, seed)
        ys = None if y is None else y.repeat_interleave(steps)
        images = to_uint8(render(G, zs, ys, seed=seed, batch=batch, precision=precision))
        legend = [f"interpolation in z ({kind}): {num} rows x {steps} steps, z0 (left) -> z1 (right) at a fixed "
                  f"class" + (f", truncation {truncation}" if truncation else "")]
        legend += [f"row {r}: class {_name(None if y is None else y[r].item(), class_names)}" for r in range(num)]
        return Sheet(images, steps, legend, zs, ys)
    if over != "class":
        raise HamganError(f"interpolate over 'z' or 'class', got {over!r}")
    _need_classes(G)
    if classes and len(classes) >= 2:
        a = torch.tensor([classes[r % len(classes)] for r in range(num)])
        b = torch.tensor([classes[(r + 1) % len(classes)] for r in range(num)])
    else:
        if G.n_classes < 2:
            raise HamganError("class interpolation needs a generator with at least 2 classes")
        g = torch.Generator().manual_seed(derive_seed(seed, "pairs"))
        a = torch.randint(G.n_classes, (num,), generator=g)
        b = (a + torch.randint(1, G.n_classes, (num,), generator=g)) % G.n_classes   # b != a
    ea, eb = _embed(G, a, precision), _embed(G, b, precision)                 # (num, E)
    e = ((1 - t)[None, :, None] * ea[:, None] + t[None, :, None] * eb[:, None]).reshape(num * steps, -1)
    zs = _sheet_latents(G, num, truncation, seed).repeat_interleave(steps, dim=0)
    images = to_uint8(render(G, zs, embedding=e, seed=seed, batch=batch, precision=precision))
    legend = [f"interpolation between classes (linear in G.embed): {num} rows x {steps} steps at a fixed z"
              + (f", truncation {truncation}" if truncation else "")]
    legend += [f"row {r}: class {_name(a[r].item(), class_names)} -> {_name(b[r].item(), class_names)}"
               for r in range(num)]
    return Sheet(images, steps, legend, zs, None)


def truncation_sheet(G, levels: Sequence[float] = DEFAULT_LEVELS, *, num: int = 4,
                     classes: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                     seed: int = 0, batch: int = 64, precision: str = "fp32") -> Sheet:
    """`num` rows (a z ~ N(0, I) and a class each) x one column per truncation level T, the
    row's z mapped to T by `truncate` (inf: untruncated)."""
    if not levels:
        raise HamganError("no truncation levels")
    z = _sheet_latents(G, num, None, seed)
    zs = torch.stack([truncate(z, T) for T in levels], dim=1).reshape(num * len(levels), -1)
    y = _row_classes(G, num, classes, seed)
    ys = None if y is None else y.repeat_interleave(len(levels))
    images = to_uint8(render(G, zs, ys, seed=seed, batch=batch, precision=precision))
    legend = [f"truncation sheet: {num} rows (one z and class each) x {len(levels)} columns, truncation T = "
              + ", ".join("none" if math.isinf(T) else f"{T:g}" for T in levels)]
    legend += [f"row {r}: class {_name(None if y is None else y[r].item(), class_names)}" for r in range(num)]
    return Sheet(images, len(levels), legend, zs, ys)


# --------------------------------------------------------------------------- dump


def folder_name(name: str, index: int) -> str:
    """A class name made safe as a folder name (path separators and the like replaced)."""
    safe = "".join("_" if c in '/\\:*?"<>|' or ord(c) < 32 else c for c in name).strip()
    return safe if safe not in ("", ".", "..") else f"class_{index}"


def dump(G, out_dir: str | os.PathLike, num: int, *, format: str = "both", classes: Sequence[int] | None = None,
         class_names: Sequence[str] | None = None, truncation: float | None = None, seed: int = 0,
         batch: int = 64, precision: str = "fp32", progress: bool = True) -> dict:
    """`num` samples (as `samples`) for external FID/IS scripts, into an empty or new `out_dir`:

    - png: out_dir/<class name>/<index>.png (flat out_dir/<index>.png if unconditional);
    - npz: out_dir/samples.npz with images uint8 (N, H, W, 3), labels int64 (N,) (-1 if
      unconditional), class_names (str); images stream through a memory-mapped file, so N is
      not limited by RAM.

    Returns {"num", "png_dir" (or None), "folders" (class folders written), "npz" (or None)}."""
    from tqdm import tqdm

    if format not in DUMP_FORMATS:
        raise HamganError(f"format must be one of {DUMP_FORMATS}, got {format!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        # stale images from an earlier dump would silently join the set an FID script reads
        raise HamganError(f"{out_dir} is not empty: dump into a new or empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(class_names) if class_names else [str(i) for i in range(G.n_classes)]
    folders = [folder_name(n, i) for i, n in enumerate(names)]
    if len(set(folders)) < len(folders):               # names that collide once made safe
        folders = [f"{i:04d}_{f}" for i, f in enumerate(folders)]
    digits = max(6, len(str(num - 1)))
    images_npy = out_dir / ".samples.images.npy.tmp"
    memmap, labels, used, lo = None, np.full(num, -1, dtype=np.int64), set(), 0
    try:
        with tqdm(total=num, unit="img", desc="dump", disable=not progress, dynamic_ncols=True) as bar:
            for images, y in samples(G, num, classes=classes, truncation=truncation, seed=seed, batch=batch,
                                     precision=precision):
                n = len(images)
                if y is not None:
                    labels[lo:lo + n] = y.numpy()
                if format in ("png", "both"):
                    for i in range(n):
                        sub = folders[int(labels[lo + i])] if y is not None else ""
                        used.add(sub)
                        save_png(images[i], out_dir / sub / f"{lo + i:0{digits}d}.png")
                if format in ("npz", "both"):
                    if memmap is None:
                        memmap = np.lib.format.open_memmap(images_npy, mode="w+", dtype=np.uint8,
                                                           shape=(num, *images.shape[2:], 3))
                    memmap[lo:lo + n] = images.permute(0, 2, 3, 1).numpy()
                lo += n
                bar.update(n)
        npz = None
        if memmap is not None:
            memmap.flush()
            del memmap
            npz = _write_npz(out_dir / "samples.npz", images_npy, labels, names)
    finally:
        images_npy.unlink(missing_ok=True)
    png = format in ("png", "both")
    return {"num": num, "png_dir": out_dir if png else None, "folders": sorted(f for f in used if f), "npz": npz}


def _write_npz(path: Path, images_npy: Path, labels: np.ndarray, names: Sequence[str]) -> Path:
    """The .npz np.savez would write (stored, uncompressed), built from the images' .npy file on
    disk, atomically (`hamgan.atomic`)."""
    with atomic_write(path) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        # copied through zf.open, as np.savez writes, so the entry has no time stamp of its own
        with open(images_npy, "rb") as src, zf.open("images.npy", "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
        for key, value in (("labels", labels), ("class_names", np.array(names, dtype=str))):
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, value, allow_pickle=False)
    return path


# --------------------------------------------------------------------------- ham maps

# inferno-like colour stops for heat maps, low to high
_HEAT = torch.tensor([[0, 0, 4], [66, 10, 104], [147, 38, 103], [221, 81, 58], [252, 165, 10], [252, 255, 164]],
                     dtype=torch.float32)


def _heat(v: torch.Tensor) -> torch.Tensor:
    """Values (..., ) in [0, 1] -> uint8 colours (..., 3)."""
    pos = v.clamp(0, 1) * (len(_HEAT) - 1)
    i = pos.floor().long().clamp_(max=len(_HEAT) - 2)
    frac = (pos - i)[..., None]
    return (_HEAT[i] * (1 - frac) + _HEAT[i + 1] * frac + 0.5).to(torch.uint8)


def _unit_range(v: torch.Tensor, dim: int) -> torch.Tensor:
    """Scale v to [0, 1] along `dim` (min -> 0, max -> 1; constant -> 0)."""
    lo, hi = v.amin(dim, keepdim=True), v.amax(dim, keepdim=True)
    return (v - lo) / (hi - lo).clamp_min(1e-12)


def _pca_rgb(x: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Matrices (D, N) -> colours (3, N) in [0, 1]: projections on the top 3 principal directions
    of x's columns (signs fixed: largest entry positive), scaled to x's range; `others` (e.g.
    its reconstruction) go through the very same map, so they can be compared with x."""
    mean = x.mean(1, keepdim=True)
    u = torch.linalg.svd(x - mean, full_matrices=False)[0][:, :3]
    u = u * torch.sign(u.gather(0, u.abs().argmax(0, keepdim=True)) + 1e-30)
    u = F.pad(u, (0, 3 - u.shape[1]))                                        # fewer than 3 directions
    proj = [u.T @ (m - mean) for m in (x, *others)]
    lo, hi = proj[0].amin(1, keepdim=True), proj[0].amax(1, keepdim=True)
    return [((p - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1) for p in proj]


def _ham_sheet(images: torch.Tensor, ham: Hamburger, factors: dict, where: str,
               labels: list[str]) -> Sheet:
    """Rows: samples (x groups); columns: image | input X (PCA) | reconstruction B C^T (PCA) |
    R coefficient maps. Maps are upscaled (nearest) to the image size."""
    x, bases, coef = (factors[k].float().cpu() for k in ("x", "bases", "coef"))
    recon = torch.bmm(bases, coef.transpose(1, 2))                          # (B*S, D, N)
    side = math.isqrt(x.shape[2])
    groups, (h, w) = ham.groups, images.shape[2:]
    cells = []
    for i in range(x.shape[0]):
        rgb = torch.stack(_pca_rgb(x[i], recon[i]))                          # (2, 3, N)
        maps = _heat(_unit_range(coef[i], dim=0).T)                          # (R, N, 3)
        small = torch.cat([(rgb * 255 + 0.5).to(torch.uint8), maps.permute(0, 2, 1)])
        small = small.reshape(-1, 3, side, side)
        cells += [images[i // groups][None], F.interpolate(small, size=(h, w), mode="nearest")]
    dec = ham.ham
    steps = dec.eval_steps
    legend = [f"{where}: {type(dec).__name__} on a {side}x{side} feature map (shown upscaled to {h}x{w}), "
              f"D = {dec.dim}, R = {dec.rank}, K = {steps} (eval), groups = {groups}, sigma = {ham.sigma.item():.4g}",
              "columns: 1 image | 2 the ham's input X (lower bread + ReLU), PCA to RGB | 3 its low-rank "
              "reconstruction B C^T (same PCA map) | 4.. coefficient maps C[:, r], r = 0..R-1, each scaled to "
              "its own min..max (dark low, bright high)"]
    legend += [f"row {i}: sample {i // groups}" + (f" group {i % groups}" if groups > 1 else "")
               + f", class {labels[i // groups]}" for i in range(x.shape[0])]
    return Sheet(torch.cat(cells), 3 + dec.rank, legend)


def ham_maps(G, num: int = 4, *, D=None, classes: Sequence[int] | None = None,
             class_names: Sequence[str] | None = None, truncation: float | None = None, seed: int = 0,
             precision: str = "fp32") -> dict[str, Sheet]:
    """What each Hamburger of G (and of D, run on the same images, when given) does on `num`
    samples, drawn as the first batch of `samples` with batch >= num: {"G_<k>_<H>px": Sheet, ...}
    with one row per sample (and group) -- see `_ham_sheet`."""
    nets = [("G", G)] + ([("D", D)] if D is not None else [])
    if not any(isinstance(m, Hamburger) for _, net in nets for m in net.modules()):
        raise HamganError("this generator has no Hamburger blocks (self-attention or none): nothing to show")
    with contextlib.ExitStack() as stack:
        stack.enter_context(_seeded(chunk_seed(seed, 0)))
        recorded = {net_name: stack.enter_context(record_factors(net)) for net_name, net in nets}
        z, y = sample_latents(num, G.z_dim, G.n_classes, truncation)
        if classes and y is not None:
            y = torch.tensor([classes[i % len(classes)] for i in range(num)])
        images = to_uint8(_forward(G, z, y, precision=precision))
        if D is not None:
            with _inference(D, precision):
                D(to_float(images).to(_device(D)), None if y is None else y.to(_device(D)))
        labels = [_name(None if y is None else c, class_names) for c in (y.tolist() if y is not None else [None] * num)]
        sheets = {}
        for net_name, net in nets:
            hams = [(name, m) for name, m in net.named_modules() if isinstance(m, Hamburger)]
            for k, (name, ham) in enumerate(hams):
                factors = recorded[net_name][f"{name}.ham"].last
                side = math.isqrt(factors["x"].shape[2])
                sheets[f"{net_name}_{k}_{side}px"] = _ham_sheet(images, ham, factors, f"{net_name}.{name}", labels)
    return sheets
