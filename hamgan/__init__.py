"""hamgan: class-conditional GANs whose global context comes from matrix decomposition."""
__version__ = "0.1.0"


def from_pretrained(path, ema: bool = True, device="cpu"):
    """The generator, in eval mode, of a hamgan checkpoint or an exported model folder (`hamgan
    export`; the folder or its model.safetensors), built from the config it carries: G_ema when
    it has one and `ema`, else G. (torch is imported on use: `import hamgan` stays light.)"""
    from .checkpoint import load_generator
    return load_generator(path, use_ema=ema, device=device)[0]
