"""torch.hub entry points: the generators of hamgan's presets (configs/*.toml), with weights
when given (a hamgan checkpoint, an exported folder, a model.safetensors, or a URL of a file).

    G = torch.hub.load("path/to/hamgan", "hamgan_strong", source="local", weights="hamgan_strong.pt")
    G = torch.hub.load("path/to/hamgan", "hamgan_baby", source="local")        # untrained, for its shapes

Each returns G in eval mode; keyword arguments: weights, ema (G_ema when present, default True),
device, overrides (dotted config overrides, e.g. ["model.G.ch=32"]).
"""
from pathlib import Path

dependencies = ["torch", "numpy", "safetensors"]

_CONFIGS = Path(__file__).resolve().parent / "configs"


def _preset(name: str, weights=None, ema: bool = True, device="cpu", overrides=()):
    from hamgan.hub import load_preset
    return load_preset(_CONFIGS / f"{name}.toml", weights, ema=ema, device=device, overrides=overrides)


def hamgan_baby(weights=None, ema: bool = True, device="cpu", overrides=()):
    """HamGAN-baby's generator (the paper's networks, 128 px, 1000 classes)."""
    return _preset("hamgan_baby", weights, ema, device, overrides)


def hamgan_strong(weights=None, ema: bool = True, device="cpu", overrides=()):
    """HamGAN-strong's generator (the same networks as HamGAN-baby, trained with a 4x larger batch)."""
    return _preset("hamgan_strong", weights, ema, device, overrides)


def sagan(weights=None, ema: bool = True, device="cpu", overrides=()):
    """The SAGAN baseline's generator (self-attention instead of the Hamburger)."""
    return _preset("sagan", weights, ema, device, overrides)
