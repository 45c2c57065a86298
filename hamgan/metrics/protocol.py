"""Evaluation protocols: the conventions an FID / IS depends on, by name, and the record of them
that every result carries, so that two numbers are compared only when they mean the same thing.

A `Protocol` fixes what an evaluation does with the images: how many are generated, whether
they are rounded to uint8 before Inception, how they are resized to 299, how many splits the
Inception Score uses, which generator is scored by default, and which reference statistics it
takes (made under which protocol, repeated to how many images):

- ``paper`` (REFERENCE §4, the official HamGAN code's TF-GAN evaluation): the raw G (the official
  run had no EMA), 50,176 images fed to Inception as floats, TF1's legacy bilinear resize for
  fakes and reals, the 50,000 validation images in store order repeated to 50,176, IS over one
  split;
- ``studiogan``: 50,000 images of G_ema against the train set, pytorch-fid's conventions (uint8
  images, ``F.interpolate`` resize), IS over 10 splits;
- ``pytorch_fid``: the same conventions, ``hamgan eval`` without ``--protocol`` (the number of
  images is ``--num``'s);
- ``training``: the in-training evaluation (`training_protocol`), pytorch-fid's conventions at
  ``eval.num_samples`` images, cheap enough to run during training.

`record` writes a result's ``"protocol"`` object; `compare` lists the fields in which two
results' protocols differ; `check_reference` refuses reference statistics made under another
protocol, naming the differing fields. IS logits are pool3 @ fc.weight^T without the fc bias in
every protocol (the original IS code's; TF-GAN reads the ``logits`` tensor of its frozen graph,
which its source describes as OpenAI's weights and computation, see docs/BENCHMARKS.md).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from ..config import differences
from .fid import FIDStats, StatsError
from .inception import RESIZES, weights_digest

IS_LOGITS = "pool3 @ fc.weight (no fc bias)"
BN = "running"  # G's batch norms in inference mode, with their running statistics
PAPER_COUNT = 50_176  # 49 x 1024


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    num_samples: int
    generator: str               # scored by default: "G" or "G_ema"
    resize_to_299: str           # "tf1_bilinear" or "pytorch_fid" (hamgan.metrics.inception.RESIZES)
    quantized: bool              # generated images rounded to uint8 (as saved PNGs) before Inception
    is_splits: int
    reference: str               # the protocol reference statistics must be made under
    reference_count: Optional[int] = None   # reals repeated in store order to this many (paper)


PROTOCOLS = {
    "paper": Protocol("paper", PAPER_COUNT, "G", "tf1_bilinear", False, 1, "paper", PAPER_COUNT),
    "studiogan": Protocol("studiogan", 50_000, "G_ema", "pytorch_fid", True, 10, "pytorch_fid"),
    "pytorch_fid": Protocol("pytorch_fid", 50_000, "G_ema", "pytorch_fid", True, 10, "pytorch_fid"),
}
# the protocols reference statistics can be made under (`hamgan fid-stats --protocol`)
REFERENCE_PROTOCOLS = ("pytorch_fid", "paper")


def training_protocol(cfg) -> Protocol:
    """The protocol of the in-training FID/IS of a run with `cfg` (a `Config`): its generator
    for samples (G_ema with EMA), eval.num_samples images, pytorch-fid's cheap conventions."""
    return Protocol("training", cfg.eval.num_samples, "G_ema" if cfg.train.ema else "G", "pytorch_fid",
                    True, 10, "pytorch_fid")


def reference_record(path, stats: Optional[FIDStats]) -> Optional[dict]:
    """The ``reference`` field of a protocol record: statistics file, the split (the name of the
    folder or store its images came from), image count, file digest, whether the reals were uint8."""
    if stats is None:
        return None
    source = stats.provenance.get("source", "")
    return {"file": str(Path(path).resolve()) if path else None,
            "split": Path(source).name if source else None,
            "count": stats.count, "digest": weights_digest(path) if path else None,
            "quantized": stats.provenance.get("quantized", True)}


def record(protocol: Protocol, *, generator: Optional[str], num_samples: int, reference: Optional[dict],
           truncation: Optional[float], seed: int, repeats: int = 1, inception_weights: Optional[str] = None) -> dict:
    """The ``"protocol"`` object of a result: everything the numbers depend on besides the weights
    of the generator. `generator`: "G", "G_ema", or None for a folder of images (uint8 files:
    "quantized" whatever the protocol)."""
    return {"name": protocol.name, "generator": generator, "num_samples": num_samples, "reference": reference,
            "resize_to_299": protocol.resize_to_299, "quantized": protocol.quantized or generator is None,
            "is_splits": protocol.is_splits, "is_logits": IS_LOGITS, "bn": BN if generator else None,
            "truncation": truncation, "seed": seed, "repeats": repeats, "inception_weights": inception_weights}


def compare(a: dict, b: dict, names: tuple[str, str] = ("A", "B")) -> list[str]:
    """'field: A value, B value' for every protocol field in which results `a` and `b` differ
    (dotted for the reference's fields). Raises StatsError naming a result without one."""
    for result, name in zip((a, b), names):
        if not isinstance(result.get("protocol"), dict):
            fields = ", ".join(record(PROTOCOLS["pytorch_fid"], generator="G", num_samples=0, reference=None,
                                      truncation=None, seed=0))
            raise StatsError(f"{name} has no protocol object, so none of its fields ({fields}) can be compared; "
                             "it was written before results recorded their protocol: evaluate again")
    return differences(a["protocol"], b["protocol"], names=names)


def _reference_fields(stats: FIDStats) -> dict:
    resize = {v: k for k, v in RESIZES.items()}.get(stats.provenance.get("resize"), stats.provenance.get("resize"))
    # statistics written before protocols were recorded used pytorch-fid's conventions
    return {"protocol": stats.provenance.get("protocol", "pytorch_fid"), "resize_to_299": resize}


def check_reference(protocol: Protocol, stats: FIDStats, path) -> None:
    """Raise StatsError if `stats` (read from `path`) were made under another protocol than the
    one `protocol` takes its reference from, naming the differing fields."""
    want = {"protocol": protocol.reference, "resize_to_299": protocol.resize_to_299}
    diffs = differences(_reference_fields(stats), want, names=("statistics", "this evaluation"))
    if diffs:
        raise StatsError(f"{path} was made under another protocol than this evaluation ({protocol.name}) takes "
                         f"its reference from: {'; '.join(diffs)}. Make matching statistics with "
                         f"`hamgan fid-stats --protocol {protocol.reference}`")
