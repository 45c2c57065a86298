"""pytorch-fid's Inception (the TF 2015-12-05 graph ported to PyTorch) as one feature extractor:
pool3 features for FID/KID/precision-recall and the 1008 logits for IS from ONE forward pass.

Images come as uint8 (B, 3, H, W) or as floats in [-1, 1] (generator output, the official
pipeline's real images) and are resized to 299 x 299 in one of two ways (`RESIZES`):

- ``pytorch_fid``: pytorch-fid's input handling exactly: uint8 -> / 255 -> ``F.interpolate``
  (bilinear, align_corners=False: half-pixel centres, no antialias) -> 2x - 1, so features
  equal ``pytorch_fid.inception.InceptionV3`` on the same images and weights;
- ``tf1_bilinear``: what TF-GAN's evaluation of the official HamGAN did: images in [-1, 1]
  resized by TF1's legacy bilinear (``tf.compat.v1.image.resize``: source position
  out * in / out, no half-pixel centres, no antialias; `resize_tf1_bilinear`).

Weights are resolved in this order: an explicit path, ``$HAMGAN_INCEPTION_WEIGHTS``, the torch
hub cache (``$TORCH_HOME/hub/checkpoints``, where pytorch-fid keeps them), a download from
pytorch-fid's URL. Offline with none of these: an error saying which file to put where.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import HamganError

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE)
ENV_VAR = "HAMGAN_INCEPTION_WEIGHTS"
# What a statistics file records about how its features were made; evaluations refuse
# statistics whose values differ from theirs.
BACKBONE = "pytorch-fid-inception-v3-2015-12-05-pool3"
# resize mode -> what statistics files record of it
RESIZES = {"pytorch_fid": "bilinear-299",         # F.interpolate, bilinear, align_corners=False
           "tf1_bilinear": "tf1-bilinear-299"}    # tf.compat.v1.image.resize, legacy bilinear
RESIZE = RESIZES["pytorch_fid"]
FEATURE_DIM = 2048
NUM_LOGITS = 1008
INPUT_SIZE = 299


class InceptionWeightsError(HamganError):
    """The Inception weights file cannot be found or read."""


def hub_weights_path() -> Path:
    """Where pytorch-fid looks for (and downloads) its weights: <torch hub dir>/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def resolve_weights(path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The weights file to use: `path`, else $HAMGAN_INCEPTION_WEIGHTS, else the torch hub cache,
    else downloaded into the hub cache (when `download` and online)."""
    for given, what in ((path, "the given weights path"), (os.environ.get(ENV_VAR) or None, f"${ENV_VAR}")):
        if given:
            given = Path(given).expanduser()
            if not given.is_file():
                raise InceptionWeightsError(f"{what} {given} does not exist")
            return given
    cached = hub_weights_path()
    if cached.is_file():
        return cached
    where = (f"put {WEIGHTS_FILE} (pytorch-fid's Inception weights) in {cached.parent}/, "
             f"or point ${ENV_VAR} or --inception-weights at it")
    if not download:
        raise InceptionWeightsError(f"Inception weights not found; {where}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{WEIGHTS_FILE}.part{os.getpid()}")
    try:
        torch.hub.download_url_to_file(WEIGHTS_URL, str(tmp), progress=True)
        os.replace(tmp, cached)
    except Exception as e:  # offline: URLError, socket errors, HTTP errors, ...
        tmp.unlink(missing_ok=True)
        raise InceptionWeightsError(f"Inception weights not found and the download from {WEIGHTS_URL} "
                                    f"failed ({type(e).__name__}: {e}); {where}") from None
    return cached


_DIGESTS: dict[tuple, str] = {}


def weights_digest(path: str | os.PathLike) -> str:
    """First 16 hex digits of the file's SHA-256, cached per (path, size, mtime). Statistics
    files record their weights' (features from other weights, e.g. the offline conversion vs
    pytorch-fid's file, are not comparable); results record their statistics file's."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def build_network() -> nn.Module:
    """pytorch-fid's FID Inception (torchvision's Inception3 with its TF-compatible blocks),
    without weights; its state_dict keys are those of the weights file."""
    import torchvision
    from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2

    net = torchvision.models.inception_v3(weights=None, num_classes=NUM_LOGITS, aux_logits=False,
                                          init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net


@contextlib.contextmanager
def _full_fp32():
    """No TF32 on CUDA inside: features then match CPU / pytorch-fid in float32 to ~1e-6."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def resize_tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """float (B, C, H, W) -> (B, C, size, size) as TF1's legacy ``resize_bilinear``
    (align_corners=False, half_pixel_centers=False): output pixel i reads source position
    i * (H / size) (scale and position in float32, as TF), between floor and ceil of it
    (clamped to H - 1), interpolated in TF's order (along x on both rows, then along y)."""

    def axis(n_in: int):
        pos = torch.arange(size, dtype=torch.float32) * (torch.tensor(n_in, dtype=torch.float32) / size)
        lower = pos.floor()
        upper = pos.ceil().clamp_(max=n_in - 1)
        return lower.long().to(x.device), upper.long().to(x.device), (pos - lower).to(x.device, x.dtype)

    y0, y1, wy = axis(x.shape[-2])
    x0, x1, wx = axis(x.shape[-1])
    top, bottom = x.index_select(-2, y0), x.index_select(-2, y1)
    top = torch.lerp(top.index_select(-1, x0), top.index_select(-1, x1), wx)
    bottom = torch.lerp(bottom.index_select(-1, x0), bottom.index_select(-1, x1), wx)
    return torch.lerp(top, bottom, wy[:, None])


class InceptionFeatures(nn.Module):
    """Images (B, 3, H, W), uint8 or float in [-1, 1] -> (pool3 (B, 2048), logits (B, 1008)),
    both float32, with the images resized to 299 by `resize` (see the module docstring).

    The logits are pool3 @ fc.weight^T without the fc bias, as the original Inception Score code
    computes them. The module is frozen and always in eval mode."""

    def __init__(self, weights: str | os.PathLike | None = None, download: bool = True):
        super().__init__()
        self.weights_path = resolve_weights(weights, download)
        net = build_network()
        try:
            state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as e:
            raise InceptionWeightsError(f"{self.weights_path} is not pytorch-fid's Inception weights "
                                        f"({type(e).__name__}: {str(e)[:200]})") from None
        self.digest = weights_digest(self.weights_path)
        # the same modules in the same order as pytorch-fid's blocks 0-3
        self.features = nn.Sequential(
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a,
            net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e,
            net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)))
        self.register_buffer("fc_weight", net.fc.weight.detach().clone())  # (1008, 2048)
        # the offline conversion (REFERENCE section 5) has an all-zero fc: IS is then 1 by construction
        self.has_classifier = bool(self.fc_weight.abs().sum() > 0)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # batch norm must keep its running statistics

    def provenance(self, image_size: int, resize: str = "pytorch_fid") -> dict:
        """What statistics computed by this extractor from `image_size`-px images record."""
        return {"backbone": BACKBONE, "weights": self.digest, "resize": RESIZES[resize],
                "image_size": int(image_size), "dims": FEATURE_DIM}

    @torch.no_grad()
    def forward(self, images: torch.Tensor, resize: str = "pytorch_fid") -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3 or not (images.dtype == torch.uint8 or images.is_floating_point()):
            raise ValueError(f"expected uint8 or float images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {tuple(RESIZES)}, got {resize!r}")
        x = images.to(self.fc_weight.device, non_blocking=True)
        if resize == "pytorch_fid":
            # [0, 1] as torchvision's ToTensor, resize, then [-1, 1]
            x = x.float().div(255) if x.dtype == torch.uint8 else (x.float() + 1) / 2
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            x = 2 * x - 1
        else:
            # [-1, 1] first, then resize: the official evaluation resized images in [-1, 1]
            x = x.float().div(127.5).sub(1) if x.dtype == torch.uint8 else x.float()
            x = resize_tf1_bilinear(x, INPUT_SIZE)
        with _full_fp32():
            pool3 = self.features(x).flatten(1)
            logits = pool3 @ self.fc_weight.t()
        return pool3, logits


_EXTRACTORS: dict[tuple, InceptionFeatures] = {}


def get_extractor(device="cpu", weights: str | os.PathLike | None = None, download: bool = True
                  ) -> InceptionFeatures:
    """An InceptionFeatures on `device`, built once per (weights file, device) in a process
    (in-training evaluations reuse it instead of reloading 95 MB each time)."""
    path = resolve_weights(weights, download)
    key = (str(path.resolve()), weights_digest(path), str(torch.device(device)))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = InceptionFeatures(path).to(device)
    return _EXTRACTORS[key]


def write_random_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """A weights file with pytorch-fid's layout but seeded random values (He-initialised convs,
    identity batch norm, a random fc): for tests and benchmarks where the real file is absent.
    Features are deterministic and well scaled, but meaningless."""
    gen = torch.Generator().manual_seed(seed)
    net = build_network()
    state = {}
    for name, t in net.state_dict().items():
        if name.endswith("conv.weight"):  # (out, in, kh, kw): keep activations' variance through ReLUs
            fan_in = t[0].numel()
            t = torch.randn(t.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif name == "fc.weight":
            t = torch.randn(t.shape, generator=gen) * 4.0 / t.shape[1] ** 0.5
        elif name.endswith("bn.bias") or name == "fc.bias":
            t = 0.1 * torch.randn(t.shape, generator=gen)
        state[name] = t.clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
