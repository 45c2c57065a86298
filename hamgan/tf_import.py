"""Official HamGAN TensorFlow checkpoints (Gsunshine/Enjoy-Hamburger, gan/HamGAN) as hamgan
checkpoints: every variable mapped onto hamgan's G and D, or listed as deliberately unused.

The official code is TF-GAN's SAGAN with the NMF Hamburger (v1), trained by TF-GAN's GAN
estimator, which wraps G in a variable scope 'Generator' and D in 'Discriminator'. Its layout:

- Convs ``<layer>/<layer>/kernel`` (kh, kw, in, out) + ``bias``; hamgan: (out, in, kh, kw).
  The Hamburger's breads ``<layer>/weights`` (1, 1, in, out), no bias.
- Linears ``<layer>/dense/kernel`` (in, out) + ``bias``; hamgan: (out, in). G's first linear
  feeds ``reshape(-1, 4, 4, C)`` (NHWC: unit (h * 4 + w) * C + c), hamgan's ``view(-1, C, 4, 4)``
  (unit c * 16 + h * 4 + w): its output units are permuted.
- D's class embedding ``d_embedding/embedding_map`` (classes, C), as hamgan's.
- Batch norms (TF-GAN's tpu.batch_norm): ``gamma`` / ``beta`` of shape (classes, 1, 1, C) for the
  per-class tables, (1, 1, 1, C) for G's last, plain one; ``moving_mean`` / ``moving_variance`` (C).
- Spectral norm (TF-GAN): the kernel reshaped to w (kh * kw * in, out), which is the transpose of
  hamgan's (out, in * kh * kw) matrix W with the rows in (h, w, in) order instead of (in, h, w);
  its persisted ``spectral_norm_u`` (kh * kw * in, 1) lives in W's input space, i.e. it is
  hamgan's v, not u. TF computes sigma from one power-iteration step taken from the stored u on
  every read, also in inference (without storing it): v_tf = normalize(w^T u) = normalize(W u_tf),
  u' = normalize(W^T v_tf), sigma = v_tf^T W u'. hamgan's eval mode takes sigma = u^T W v from its
  buffers without iterating, so the importer stores u = v_tf and v = u': the imported networks
  compute the very sigma TF computed.
- Hamburger ``g_ops`` / ``d_ops``: ``sn_lower_bread``, ``sn_upper_bread``, G's ``upper_bread_bn``,
  ``sigma_ratio``.

Deliberately unused: Adam's slots (``.../Adam``, ``.../Adam_1``) and powers (``beta1_power*``,
``beta2_power*``), ``global_step`` (its value becomes the checkpoint's step). Anything else is
an unknown variable, an error, as is a missing one or a shape the config does not make.

What the checkpoint does not record comes from the config: the Hamburgers' rank R and steps K,
BN epsilon, the kind of spectral norm. `official_semantics_notes` says where a config departs
from the official values.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import __version__
from .errors import HamganError
from .tfbundle import TensorBundle

G_SCOPE, D_SCOPE = "Generator/generator", "Discriminator/discriminator"
SN_U = "spectral_normalize/spectral_norm/spectral_norm_u"
UNUSED = (("Adam slots", re.compile(r".+/Adam(_1)?$")),
          ("Adam powers", re.compile(r"beta[12]_power(_\d+)?$")),
          ("global step", re.compile(r"global_step$")))


class TFImportError(HamganError):
    """A TensorFlow checkpoint that does not map onto the networks of the config."""


@dataclass
class Var:
    """One TensorFlow variable the config's networks need: its name(s), the shape it must have
    (TF layout), and what it fills."""

    names: tuple[str, ...]          # accepted names, the first is the one TF-GAN writes today
    shape: tuple[int, ...]
    target: str                     # hamgan state-dict key(s), for the table
    how: str                        # the conversion, for the table
    found: str | None = None        # the name present in the checkpoint


@dataclass
class Layer:
    """A hamgan module and the TF variables that fill it; `convert` turns their values (by role)
    into the module's state-dict entries."""

    net: str                        # "G" or "D"
    path: str                       # module path in the net
    what: str                       # for messages: "up-block 1 conv1", ...
    vars: dict[str, Var] = field(default_factory=dict)     # role -> Var
    convert: Callable[[dict[str, np.ndarray]], dict[str, torch.Tensor]] | None = None


def _sn_keys(prefix: str, weight: torch.Tensor, u_tf: np.ndarray, columns: Callable) -> dict[str, torch.Tensor]:
    """State entries of an SN layer: the weight (torch layout) and hamgan's (u, v) buffers from TF's
    stored u (put in the order of the weight matrix's columns by `columns`): one power-iteration
    step, as TF takes it on every read (see the module docstring)."""
    matrix = weight.reshape(weight.shape[0], -1).double()
    u = F.normalize(matrix @ columns(torch.from_numpy(u_tf).reshape(-1)).double(), dim=0, eps=1e-12)
    v = F.normalize(matrix.t() @ u, dim=0, eps=1e-12)
    return {f"{prefix}.parametrizations.weight.original": weight,
            f"{prefix}.parametrizations.weight.0._u": u.float(), f"{prefix}.parametrizations.weight.0._v": v.float()}


def _u_names(weight_name: str) -> tuple[str, ...]:
    """TF-GAN's custom getter opens the scope '<full weight name>/spectral_normalize' inside the
    layer's scope, so the scope path appears twice; the single form is accepted as well."""
    scope = weight_name.rsplit("/", 1)[0]
    return f"{scope}/{weight_name}/{SN_U}", f"{weight_name}/{SN_U}"


def _conv(net: str, path: str, what: str, module: nn.Conv2d, scope: str, weights: str = "kernel") -> Layer:
    out_c, in_c, kh, kw = module.parametrizations["weight"].original.shape
    name = f"{scope}/{weights}"
    layer = Layer(net, path, what)
    layer.vars["kernel"] = Var((name,), (kh, kw, in_c, out_c), f"{net}.{path}.weight", "HWIO -> OIHW")
    layer.vars["u"] = Var(_u_names(name), (kh * kw * in_c, 1), f"{net}.{path}.weight u, v", "power step")
    if module.bias is not None:
        layer.vars["bias"] = Var((f"{scope}/bias",), (out_c,), f"{net}.{path}.bias", "")

    def convert(v):
        weight = torch.from_numpy(v["kernel"]).permute(3, 2, 0, 1).contiguous()
        out = _sn_keys(path, weight, v["u"],
                       lambda u: u.reshape(kh, kw, in_c).permute(2, 0, 1).reshape(-1))   # (h, w, in) -> (in, h, w)
        if "bias" in v:
            out[f"{path}.bias"] = torch.from_numpy(v["bias"])
        return out
    layer.convert = convert
    return layer


def _linear(net: str, path: str, what: str, module: nn.Linear, scope: str, nhwc_to_nchw: int = 0) -> Layer:
    """`nhwc_to_nchw` = C: the output feeds a 4x4xC NHWC reshape in TF, a C x 4 x 4 view in hamgan."""
    out_f, in_f = module.parametrizations["weight"].original.shape
    name = f"{scope}/dense/kernel"
    layer = Layer(net, path, what)
    how = "transpose, units (h, w, c) -> (c, h, w)" if nhwc_to_nchw else "transpose"
    layer.vars["kernel"] = Var((name,), (in_f, out_f), f"{net}.{path}.weight", how)
    layer.vars["u"] = Var(_u_names(name), (in_f, 1), f"{net}.{path}.weight u, v", "power step")
    layer.vars["bias"] = Var((f"{scope}/dense/bias",), (out_f,), f"{net}.{path}.bias", how.replace("transpose, ", ""))
    if nhwc_to_nchw:
        c = nhwc_to_nchw
        order = torch.arange(out_f).reshape(4, 4, c).permute(2, 0, 1).reshape(-1)   # hamgan unit -> TF unit
    else:
        order = torch.arange(out_f)

    def convert(v):
        weight = torch.from_numpy(v["kernel"]).t()[order].contiguous()
        out = _sn_keys(path, weight, v["u"], lambda u: u)
        out[f"{path}.bias"] = torch.from_numpy(v["bias"])[order].contiguous()
        return out
    layer.convert = convert
    return layer


def _embedding(net: str, path: str, what: str, module: nn.Embedding, scope: str) -> Layer:
    n, dim = module.parametrizations["weight"].original.shape
    layer = Layer(net, path, what)
    layer.vars["table"] = Var((f"{scope}/embedding_map",), (n, dim), f"{net}.{path}.weight", "")
    layer.vars["u"] = Var((f"{scope}/{SN_U}",), (dim, 1), f"{net}.{path}.weight u, v", "power step")
    layer.convert = lambda v: _sn_keys(path, torch.from_numpy(v["table"]), v["u"], lambda u: u)
    return layer


def _batch_norm(net: str, path: str, what: str, module: nn.Module, scope: str) -> Layer:
    """A per-class table BN (`ClassTableBN`: gain / bias (classes, C)) or a plain one (`BatchNorm2d`)."""
    table = hasattr(module, "gain")
    rows, c = module.gain.shape if table else (1, module.channels)
    affine = ("gain", "bias") if table else ("weight", "bias")
    shape = (rows, c) if table else (c,)
    stats = f"{path}.bn" if table else path
    layer = Layer(net, path, what)
    for role, key in zip(("gamma", "beta"), affine):
        layer.vars[role] = Var((f"{scope}/{role}",), (rows, 1, 1, c), f"{net}.{path}.{key}", "squeeze")
    for role, key in (("moving_mean", "running_mean"), ("moving_variance", "running_var")):
        layer.vars[role] = Var((f"{scope}/{role}",), (c,), f"{net}.{stats}.{key}", "")

    def convert(v):
        out = {f"{path}.{key}": torch.from_numpy(v[role]).reshape(shape)
               for role, key in zip(("gamma", "beta"), affine)}
        out[f"{stats}.running_mean"] = torch.from_numpy(v["moving_mean"])
        out[f"{stats}.running_var"] = torch.from_numpy(v["moving_variance"])
        return out
    layer.convert = convert
    return layer


def _hamburger(net: str, path: str, what: str, ham, scope: str) -> list[Layer]:
    layers = [_conv(net, f"{path}.lower_bread", f"{what} lower bread", ham.lower_bread, f"{scope}/sn_lower_bread",
                    "weights"),
              _conv(net, f"{path}.upper_bread", f"{what} upper bread", ham.upper_bread, f"{scope}/sn_upper_bread",
                    "weights")]
    if ham.norm is not None:
        layers.append(_batch_norm(net, f"{path}.norm", f"{what} BN", ham.norm, f"{scope}/upper_bread_bn"))
    sigma = Layer(net, f"{path}.sigma", f"{what} scale")
    sigma.vars["sigma"] = Var((f"{scope}/sigma_ratio",), (), f"{net}.{path}.sigma", "")
    sigma.convert = lambda v: {f"{path}.sigma": torch.from_numpy(v["sigma"]).reshape(())}
    return layers + [sigma]


def _context(net: str, context: nn.ModuleList, scope: str) -> dict[int, tuple[str, nn.Module]]:
    """{stage index: (module path, Hamburger)}: the official networks have one NMF Hamburger each."""
    from .ham import Hamburger

    found = {k: (f"context.{k}.{j}", m) for k, ms in enumerate(context) for j, m in enumerate(ms)}
    if not found:
        raise TFImportError(f"model.{net}.context is empty: the official HamGAN has an NMF Hamburger in {net} "
                            f"({scope})")
    kinds = [type(m.ham).__name__ if isinstance(m, Hamburger) else type(m).__name__ for _, m in found.values()]
    if kinds != ["NMF"]:
        raise TFImportError(f"model.{net}.context: the official HamGAN has one NMF Hamburger in {net} ({scope}); "
                            f"this config has {kinds}")
    return found


def layers_of(G, D) -> list[Layer]:
    """The official variables of G and D as hamgan builds them, in network order."""
    if G.n_classes == 0 or G.conditioning != "cbn" or D.embed is None:
        raise TFImportError("the official HamGAN is class-conditional with per-class BN tables in G "
                            "(model.conditioning = 'cbn', model.n_classes > 0)")
    out = [_linear("G", "linear", "linear z -> 4x4", G.linear, f"{G_SCOPE}/g_snh0", G.stages[0].c_in)]
    g_ham = _context("G", G.context, f"{G_SCOPE}/g_ops")
    for k, block in enumerate(G.blocks):
        scope, what = f"{G_SCOPE}/g_block{k + 1}", f"up-block {k + 1}"
        out += [_batch_norm("G", f"blocks.{k}.bn1", f"{what} BN 1", block.bn1, f"{scope}/cbn_0"),
                _conv("G", f"blocks.{k}.conv1", f"{what} conv 1", block.conv1, f"{scope}/snconv1/snconv1"),
                _batch_norm("G", f"blocks.{k}.bn2", f"{what} BN 2", block.bn2, f"{scope}/cbn_1"),
                _conv("G", f"blocks.{k}.conv2", f"{what} conv 2", block.conv2, f"{scope}/snconv2/snconv2"),
                _conv("G", f"blocks.{k}.skip", f"{what} skip conv", block.skip, f"{scope}/snconv3/snconv3")]
        if k in g_ham:
            out += _hamburger("G", g_ham[k][0], f"Hamburger after {what}", g_ham[k][1], f"{G_SCOPE}/g_ops")
    out += [_batch_norm("G", "out_bn", "output BN", G.out_bn, f"{G_SCOPE}/g_bn"),
            _conv("G", "out_conv", "output conv", G.out_conv, f"{G_SCOPE}/g_snconv_last/g_snconv_last")]

    d_ham = _context("D", D.context, f"{D_SCOPE}/d_ops")
    for k, block in enumerate(D.blocks):
        name = "d_optimized_block1" if k == 0 else f"d_block{k + 1}"
        scope, what = f"{D_SCOPE}/{name}", f"block {k + 1}"
        out += [_conv("D", f"blocks.{k}.conv1", f"{what} conv 1", block.conv1, f"{scope}/sn_conv1/sn_conv1"),
                _conv("D", f"blocks.{k}.conv2", f"{what} conv 2", block.conv2, f"{scope}/sn_conv2/sn_conv2")]
        if block.skip is not None:
            out.append(_conv("D", f"blocks.{k}.skip", f"{what} skip conv", block.skip, f"{scope}/sn_conv3/sn_conv3"))
        if k in d_ham:
            out += _hamburger("D", d_ham[k][0], f"Hamburger after {what}", d_ham[k][1], f"{D_SCOPE}/d_ops")
    out += [_linear("D", "linear", "output linear", D.linear, f"{D_SCOPE}/d_sn_linear"),
            _embedding("D", "embed", "class embedding", D.embed, f"{D_SCOPE}/d_embedding")]
    return out


# --------------------------------------------------------------------------- the import


OFFICIAL_MODEL = {"sn": "official", "bn_eps": 1e-3, "bn_momentum": 1e-3, "bn_running_var": "biased"}
# the official Hamburgers (REFERENCE §1): rank, steps (train and eval), uniform bases, inv_t 1, eps 1e-6
OFFICIAL_HAM = {"G": dict(rank=32, steps=6, eval_steps=None, bases_init="rand", inv_t=None, eps=1e-6),
                "D": dict(rank=16, steps=6, eval_steps=None, bases_init="rand", inv_t=None, eps=1e-6)}


def official_semantics_notes(model_cfg) -> list[str]:
    """Where the config computes differently from the official networks, in what the checkpoint
    does not record (the imported weights then compute something else than in TensorFlow)."""
    notes = [f"model.{key} = {getattr(model_cfg, key)!r}; the official networks: {value!r}"
             for key, value in OFFICIAL_MODEL.items() if getattr(model_cfg, key, value) != value]
    for net, official in OFFICIAL_HAM.items():
        for i, ctx in enumerate(getattr(model_cfg, net).context):
            notes += [f"model.{net}.context[{i}].{key} = {getattr(ctx, key)!r}; the official networks: {value!r}"
                      for key, value in official.items() if getattr(ctx, key) != value]
    return notes


@dataclass
class Imported:
    """The result of `import_tf`: state dicts of G and D, the mapping table, what was not used."""

    G: dict
    D: dict
    step: int
    layers: list[Layer]
    unused: dict[str, list[str]]
    provenance: dict


def _unused_kind(name: str) -> str | None:
    return next((kind for kind, pattern in UNUSED if pattern.fullmatch(name)), None)


def import_tf(path: str | os.PathLike, model_cfg, config_name: str = "the config", progress: bool = False) -> Imported:
    """Map the TensorFlow checkpoint `path` onto the networks of `model_cfg` (`config_name` names
    it in messages). Raises TFImportError naming the first variable that is missing, mis-shaped or
    unknown, before reading any value."""
    from .models import Discriminator, Generator

    bundle = TensorBundle(path)
    with torch.device("meta"):                       # the structure only: no memory, no initialisation
        G, D = Generator(model_cfg), Discriminator(model_cfg)
    layers = layers_of(G, D)
    entries = bundle.entries
    if not any(n.startswith((G_SCOPE + "/", D_SCOPE + "/")) for n in entries):
        sample = ", ".join(sorted(entries)[:3])
        raise TFImportError(f"{bundle.prefix} is not a HamGAN (TF-GAN) checkpoint: no variable under '{G_SCOPE}/' "
                            f"or '{D_SCOPE}/' (it holds {len(entries)} variables, e.g. {sample})")
    for layer in layers:                             # network order: the first mismatch is reported
        for var in layer.vars.values():
            var.found = next((n for n in var.names if n in entries), None)
            if var.found is None:
                raise TFImportError(f"{var.names[0]}: missing from {bundle.prefix.name}, but {config_name} has "
                                    f"{layer.net} {layer.what} ({var.target}): not the official HamGAN, or another "
                                    f"preset")
            have = entries[var.found].shape
            if tuple(have) != var.shape:
                raise TFImportError(f"{var.found}: shape {tuple(have)} in {bundle.prefix.name}, but {config_name} "
                                    f"makes {layer.net} {layer.what} expect {var.shape} (TF layout): another preset?")
    mapped = {var.found for layer in layers for var in layer.vars.values()}
    unused: dict[str, list[str]] = {}
    for name in sorted(entries):
        if name in mapped:
            continue
        kind = _unused_kind(name)
        if kind is None:
            raise TFImportError(f"{name}: a variable of {bundle.prefix.name} that the official HamGAN with "
                                f"{config_name} does not have (shape {entries[name].shape}); another model or preset?")
        unused.setdefault(kind, []).append(name)

    states = {"G": {}, "D": {}}
    for layer in tqdm(layers, desc="reading", unit="layer", disable=not progress, leave=False):
        values = {}
        for role, var in layer.vars.items():
            value = bundle.read(var.found)
            if value.dtype != np.float32:
                raise TFImportError(f"{var.found}: dtype {value.dtype}, the official variables are float32")
            values[role] = value
        states[layer.net].update(layer.convert(values))
    for net, module in (("G", G), ("D", D)):
        expected = module.state_dict()
        for key, value in expected.items():
            if key.endswith("num_batches_tracked"):
                states[net][key] = torch.zeros((), dtype=torch.long)
        assert states[net].keys() == expected.keys(), set(states[net]) ^ set(expected)
        for key, value in expected.items():
            assert states[net][key].shape == value.shape, (net, key, states[net][key].shape, value.shape)

    step = int(bundle.read("global_step")) if "global_step" in entries else _step_from_name(bundle.prefix)
    provenance = {"source": "tensorflow", "checkpoint": str(bundle.prefix.resolve()), "global_step": step,
                  "index_sha256": hashlib.sha256(bundle.index_path.read_bytes()).hexdigest(),
                  "mapped_variables": len(mapped), "unused_variables": {k: len(v) for k, v in unused.items()},
                  "imported": time.strftime("%Y-%m-%d %H:%M:%S %z"), "hamgan_version": __version__,
                  "notes": official_semantics_notes(model_cfg)}
    return Imported(states["G"], states["D"], step, layers, unused, provenance)


def _step_from_name(prefix: Path) -> int | None:
    match = re.search(r"-(\d+)$", prefix.name)
    return int(match.group(1)) if match else None


def mapping_table(result: Imported) -> str:
    """The --dry-run table: every TF variable, its shape, where it goes and how."""
    rows = [("shape", "hamgan", "conversion", "TensorFlow variable")]
    for layer in result.layers:
        for var in layer.vars.values():
            rows.append(("x".join(map(str, var.shape)) or "scalar", var.target, var.how or "-", var.found))
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    lines.append("")
    for kind, names in result.unused.items():
        lines.append(f"unused ({kind}): {len(names)}, e.g. {', '.join(names[:2])}")
    return "\n".join(lines) + "\n"

