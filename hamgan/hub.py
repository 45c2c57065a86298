"""What the torch.hub entry points of hubconf.py call: a preset's generator, with weights from a
path or a URL (`hamgan.from_pretrained` loads a checkpoint or export folder with its own config)."""
from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_payload, load_state
from .errors import HamganError


def _local(weights: str) -> Path:
    """A path as given, or a URL's file downloaded once into torch.hub's cache."""
    scheme = urllib.parse.urlparse(weights).scheme
    if scheme not in ("http", "https", "file"):
        return Path(weights)
    name = Path(urllib.parse.urlparse(weights).path).name
    if not name:
        raise HamganError(f"weights={weights!r}: the URL names no file")
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights, str(path), progress=True)
    return path


def _weights_state(path: Path, ema: bool, model_cfg) -> dict:
    """The generator state dict in a checkpoint, export folder or bare model.safetensors."""
    from .config import Config, from_dict
    from .export import CONFIG_FILE

    if path.suffix == ".safetensors" and not (path.parent / CONFIG_FILE).is_file():   # weights alone
        from safetensors.torch import load_file
        try:
            tensors = load_file(path)
        except Exception as e:  # noqa: BLE001 - safetensors raises several kinds
            raise CheckpointError(f"{path} is damaged or not a safetensors file ({e})") from None
        nets = {k.partition(".")[0] for k in tensors}
        net = "G_ema" if ema and "G_ema" in nets else "G"
        if net not in nets:
            raise CheckpointError(f"{path} holds no hamgan generator weights (no G.* / G_ema.* tensors)")
        return {k.partition(".")[2]: v for k, v in tensors.items() if k.startswith(net + ".")}
    payload = load_payload(path)
    carried = from_dict(Config, payload["config"]).model
    if carried != model_cfg:
        from .config import differences, to_dict
        diff = differences(to_dict(carried), to_dict(model_cfg), "model", ("weights", "preset"))
        raise CheckpointError(f"{path} holds a different network than the preset: {'; '.join(diff[:3])}")
    net = "G_ema" if ema and payload.get("G_ema") is not None else "G"
    if payload.get(net) is None:
        raise CheckpointError(f"{path} holds no generator weights")
    return payload[net]


def load_preset(config: str | os.PathLike, weights: str | os.PathLike | None = None, ema: bool = True,
                device="cpu", overrides: list[str] = ()) -> torch.nn.Module:
    """G of the config file `config` (+ dotted overrides), in eval mode; with `weights` (a
    checkpoint, an export folder, a model.safetensors, or an http(s)/file URL of a file, cached
    in torch.hub's folder) loaded into it, G_ema when present and `ema`."""
    from .config import load_config
    from .models import build_generator

    cfg = load_config(config, list(overrides))
    G = build_generator(cfg.model)
    if weights is not None:
        path = _local(str(weights))
        load_state(G, _weights_state(path, ema, cfg.model), str(weights))
    return G.to(device).eval()
