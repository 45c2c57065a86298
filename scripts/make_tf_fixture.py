"""Write a HamGAN checkpoint with TensorFlow's own saver, and what TensorFlow computes with it.

The networks are the official HamGAN's (Gsunshine/Enjoy-Hamburger, gan/HamGAN: the TF-GAN SAGAN
with the NMF Hamburger v1), rebuilt here layer by layer with the same variable scopes, so the
checkpoint has the official variable names and layouts: TF-GAN's outer 'Generator' /
'Discriminator' scopes, NHWC activations, HWIO kernels, (in, out) dense kernels, per-class BN
tables of shape (classes, 1, 1, C), spectral-norm u vectors, Adam slots and the global step.
The layers are TF-GAN's: its spectral normalisation (`equality_constrained=False` on the 3x3 and
skip convs, linears and D's embedding; exact on the Hamburger's 1x1 breads) and its TPU batch norm
(eps 1e-3, moving averages with decay 0.999). TF-GAN 2.1 installs beside current TensorFlow but
its package __init__ needs `tf.estimator` (removed in TF 2.16), so its two layer modules are
loaded from the installed package directly, without that __init__.

Every variable gets random values (kernels scaled so that among the "at most 1" layers and among
the exactly normalised breads some have a largest singular value below 1 and some above; BN
moving averages near the statistics the layers see, some variances small, where eps = 1e-3
matters). Then, on
fixed inputs: G in inference mode (BN moving averages, no power-iteration update) and D, with
the NMF bases fixed (given instead of drawn), outputs saved in `reference.npz` together with the
inputs and bases. `variables.json` records what TensorFlow reads back from the checkpoint: name,
dtype, shape and SHA-256 of every variable's bytes. `hamgan.toml` is the hamgan config of the
same networks.

Needs tensorflow, tf_keras and tensorflow-gan (not hamgan's requirements), e.g.
    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow tf_keras tensorflow-gan
    /tmp/tfvenv/bin/python scripts/make_tf_fixture.py --size tiny --out tests/fixtures/tf_hamgan_tiny
    /tmp/tfvenv/bin/python scripts/make_tf_fixture.py --size full --out /tmp/tf_hamgan_full   # ~1 GB
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")     # tf.compat.v1.layers needs Keras 2 (tf_keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

v1 = tf.compat.v1

# Network sizes. `g` / `d`: channels of G's 4x4 input then of each up-block output / of each
# D block output; `d_down`: which D blocks halve the resolution; `*_ham_after`: the (1-based)
# block a Hamburger follows; `ham`: (dim, rank, steps) of G's and D's Hamburgers.
SIZES = {
    "tiny": dict(resolution=32, z_dim=16, classes=5, ch=2, g_mult=[4, 4, 2, 1], d_mult=[1, 2, 4, 4],
                 d_down=[True, True, False, False], g_ham_after=2, d_ham_after=2,
                 g_ham=(6, 4, 6), d_ham=(5, 3, 6), batch=3, step=1234),
    "full": dict(resolution=128, z_dim=128, classes=1000, ch=64, g_mult=[16, 16, 8, 4, 2, 1],
                 d_mult=[1, 2, 4, 8, 16, 16], d_down=[True, True, True, True, True, False], g_ham_after=3,
                 d_ham_after=2, g_ham=(256, 32, 6), d_ham=(128, 16, 6), batch=2, step=1000000),
}


def load_tfgan_layers():
    """TF-GAN's spectral_normalization and tpu.normalization_ops modules, imported from the
    installed package without running its __init__ (see the module docstring)."""
    spec = importlib.util.find_spec("tensorflow_gan")
    if spec is None:
        sys.exit("tensorflow-gan is not installed in this Python: pip install tensorflow-gan")
    root = Path(spec.origin).parent
    for package in ("tensorflow_gan", "tensorflow_gan.python", "tensorflow_gan.python.features",
                    "tensorflow_gan.python.tpu"):
        module = types.ModuleType(package)
        module.__path__ = [str(root.joinpath(*package.split(".")[1:]))]
        sys.modules[package] = module
    from tensorflow_gan.python.features import spectral_normalization
    from tensorflow_gan.python.tpu import normalization_ops
    return spectral_normalization, normalization_ops


SN, NORM = load_tfgan_layers()
XAVIER = v1.keras.initializers.VarianceScaling(scale=1.0, mode="fan_avg", distribution="uniform")


# --------------------------------------------------------------------------- layers (official ops.py)


def sn_conv(x, channels, kernel, training, name):
    """3x3 / skip conv, spectral norm 'at most 1'; variables NAME/NAME/{kernel,bias}."""
    getter = SN.spectral_normalization_custom_getter(training=training, equality_constrained=False)
    with v1.variable_scope(name, custom_getter=getter):
        return v1.layers.conv2d(x, channels, kernel, padding="same", kernel_initializer=XAVIER, name=name)


def sn_dense(x, units, training, name):
    """Linear layer, spectral norm 'at most 1'; variables NAME/dense/{kernel,bias}."""
    getter = SN.spectral_normalization_custom_getter(training=training, equality_constrained=False)
    with v1.variable_scope(name, custom_getter=getter):
        return v1.layers.dense(x, units, kernel_initializer=XAVIER)


def sn_conv1x1(x, channels, training, name):
    """Bias-free 1x1 conv, exact spectral norm (the Hamburger's breads); variable NAME/weights."""
    with v1.variable_scope(name, custom_getter=SN.spectral_normalization_custom_getter(training=training)):
        w = v1.get_variable("weights", [1, 1, x.shape[-1], channels], initializer=XAVIER)
        return tf.nn.conv2d(x, w, strides=1, padding="SAME")


def sn_embedding(labels, classes, size, name):
    """D's class embedding: the (classes, size) table's transpose is normalised 'at most 1'."""
    with v1.variable_scope(name):
        table = v1.get_variable("embedding_map", [classes, size], initializer=XAVIER)
        normalised = SN.spectral_normalize(tf.transpose(table), equality_constrained=False)
        return tf.nn.embedding_lookup(tf.transpose(normalised), labels)


BN_INPUTS: list | None = None   # while a list: (variable scope of each BN, its input) in graph order


def batch_norm(x, training, onehot, name):
    if BN_INPUTS is not None:
        BN_INPUTS.append((f"{v1.get_variable_scope().name}/{name}", x))
    return NORM.batch_norm(x, training, onehot, name=name)


def upsample(x):
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)     # nearest neighbour, 2x


def downsample(x):
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def nmf(x, bases, steps):
    """x (B, D, N) -> its NMF reconstruction; `bases` (B, D, R): the starting bases (the official
    code draws them uniform in [0, 1) here). One-step gradient as the official code; it does not
    matter for the forward values."""
    x = tf.nn.relu(x)
    coef = tf.nn.softmax(tf.einsum("bdn,bdr->bnr", x, bases))
    for _ in range(steps):
        coef = coef * tf.einsum("bdn,bdr->bnr", x, bases) / (tf.einsum("bnk,bdk,bdr->bnr", coef, bases, bases) + 1e-6)
        bases = bases * tf.einsum("bdn,bnr->bdr", x, coef) / (tf.einsum("bdk,bnk,bnr->bdr", bases, coef, coef) + 1e-6)
    coef, bases = tf.stop_gradient(coef), tf.stop_gradient(bases)
    coef = coef * tf.einsum("bdn,bdr->bnr", x, bases) / (tf.einsum("bnk,bdk,bdr->bnr", coef, bases, bases) + 1e-6)
    return tf.einsum("bnr,bdr->bdn", coef, bases)


def hamburger(x, training, name, dim, rank, steps, bases=None, onehot=None):
    """Official Hamburger v1 (S = 1): lower bread, NMF, upper bread, [class BN], x + sigma * h."""
    with v1.variable_scope(name):
        b, h, w, c = x.shape.as_list()
        z = sn_conv1x1(x, dim, training, "sn_lower_bread")
        z = tf.reshape(tf.transpose(z, [0, 3, 1, 2]), [b, dim, h * w])
        if bases is None:
            bases = tf.random.uniform([b, dim, rank])
        z = nmf(z, bases, steps)
        z = tf.transpose(tf.reshape(z, [b, dim, h, w]), [0, 2, 3, 1])
        z = sn_conv1x1(z, c, training, "sn_upper_bread")
        if onehot is not None:
            z = batch_norm(z, training, onehot, "upper_bread_bn")
        sigma = v1.get_variable("sigma_ratio", [], initializer=v1.initializers.constant(0.0))
        return x + sigma * z


# --------------------------------------------------------------------------- networks (official G and D)


def generator(z, labels, s, training, bases=None):
    onehot = tf.one_hot(labels, s["classes"])
    chans = [s["ch"] * m for m in s["g_mult"]]
    with v1.variable_scope("generator", reuse=v1.AUTO_REUSE):
        h = tf.reshape(sn_dense(z, 4 * 4 * chans[0], training, "g_snh0"), [-1, 4, 4, chans[0]])
        for k, c in enumerate(chans[1:], start=1):
            with v1.variable_scope(f"g_block{k}"):
                skip = h
                h = tf.nn.relu(batch_norm(h, training, onehot, "cbn_0"))
                h = sn_conv(upsample(h), c, 3, training, "snconv1")
                h = tf.nn.relu(batch_norm(h, training, onehot, "cbn_1"))
                h = sn_conv(h, c, 3, training, "snconv2") + sn_conv(upsample(skip), c, 1, training, "snconv3")
            if k == s["g_ham_after"]:
                dim, rank, steps = s["g_ham"]
                h = hamburger(h, training, "g_ops", dim, rank, steps, bases, onehot)
        h = tf.nn.relu(batch_norm(h, training, None, "g_bn"))
        return tf.tanh(sn_conv(h, 3, 3, training, "g_snconv_last"))


def discriminator(x, labels, s, bases=None):
    """The official D builds its layers with training=True (power-iteration updates on every call)."""
    chans = [s["ch"] * m for m in s["d_mult"]]
    with v1.variable_scope("discriminator", reuse=v1.AUTO_REUSE):
        h = x
        for k, (c, down) in enumerate(zip(chans, s["d_down"]), start=1):
            first = k == 1
            with v1.variable_scope("d_optimized_block1" if first else f"d_block{k}"):
                skip = h
                r = h if first else tf.nn.relu(h)
                r = sn_conv(tf.nn.relu(sn_conv(r, c, 3, True, "sn_conv1")), c, 3, True, "sn_conv2")
                if down:
                    r = downsample(r)
                if first:
                    skip = sn_conv(downsample(skip), c, 1, True, "sn_conv3")
                elif down or skip.shape[-1] != c:
                    skip = sn_conv(skip, c, 1, True, "sn_conv3")
                    skip = downsample(skip) if down else skip
                h = r + skip
            if k == s["d_ham_after"]:
                dim, rank, steps = s["d_ham"]
                h = hamburger(h, True, "d_ops", dim, rank, steps, bases)
        pooled = tf.reduce_sum(tf.nn.relu(h), axis=[1, 2])
        out = sn_dense(pooled, 1, True, "d_sn_linear")
        out += tf.reduce_sum(pooled * sn_embedding(labels, s["classes"], chans[-1], "d_embedding"),
                             axis=1, keepdims=True)
        return out


# --------------------------------------------------------------------------- the fixture


def random_value(var, rng):
    """A random value for a model variable, by its role (see the module docstring)."""
    name, shape = var.name, var.shape.as_list()
    if name.endswith(("/kernel:0", "/weights:0", "/embedding_map:0")):
        fan = float(np.prod(shape[:-1]) + shape[-1])
        # Xavier uniform times a factor: random for the "at most 1" layers, fixed for the exactly
        # normalised breads so that both sides of sigma = 1 occur among them too
        scale = {"sn_lower_bread": 0.3, "sn_upper_bread": 3.0}.get(name.split("/")[-2],
                                                                   np.exp(rng.uniform(np.log(0.3), np.log(4.0))))
        return rng.uniform(-1, 1, shape) * np.sqrt(6.0 / fan) * scale
    if name.endswith("spectral_norm_u:0"):
        return rng.standard_normal(shape)
    if name.endswith("/gamma:0"):
        return rng.uniform(0.5, 1.5, shape)
    if name.endswith(("/beta:0", "/bias:0", "/moving_mean:0")):
        return rng.uniform(-0.3, 0.3, shape)
    if name.endswith("/moving_variance:0"):
        return np.ones(shape)      # set from the activations by `calibrate_batch_norms`
    if name.endswith("sigma_ratio:0"):
        return rng.uniform(0.5, 1.5, shape)
    raise ValueError(f"no rule for {name}")


def calibrate_batch_norms(sess, bn_inputs, rng):
    """Moving averages near the statistics the inference graph's BNs actually see, layer by layer
    (else activations grow without bound through the blocks and tanh saturates): mean + noise,
    variance x a factor in [0.05, 2], so that some variances are small and eps = 1e-3 matters."""
    for scope, x in bn_inputs:
        value = sess.run(x)
        mean, var = value.mean(axis=(0, 1, 2)), value.var(axis=(0, 1, 2))
        moving = {v.name: v for v in v1.global_variables() if v.name.startswith(scope + "/moving_")}
        moving[f"{scope}/moving_mean:0"].load(mean + rng.normal(0, 0.2, mean.shape) * np.sqrt(var), sess)
        moving[f"{scope}/moving_variance:0"].load(var * np.exp(rng.uniform(np.log(0.05), np.log(2.0), var.shape)),
                                                    sess)


def hamgan_toml(s) -> str:
    """The hamgan config of networks `s` (the paper's semantics are hamgan's defaults)."""
    if s is SIZES["full"]:
        return "# the official HamGAN networks are hamgan's defaults\nname = \"tf_fixture_full\"\n"
    g_at = 4 * 2 ** s["g_ham_after"]
    d_at = s["resolution"] // 2 ** sum(s["d_down"][:s["d_ham_after"]])
    (gd, gr, gk), (dd, dr, dk) = s["g_ham"], s["d_ham"]
    return "\n".join([
        "# written by scripts/make_tf_fixture.py: the networks of the TensorFlow fixture beside it",
        'name = "tf_fixture_tiny"', "",
        "[model]", f"resolution = {s['resolution']}", f"n_classes = {s['classes']}", f"z_dim = {s['z_dim']}", "",
        "[model.G]", f"ch = {s['ch']}", f"multipliers = {s['g_mult']}",
        f"context = [{{ at = {g_at}, dim = {gd}, rank = {gr}, steps = {gk} }}]", "",
        "[model.D]", f"ch = {s['ch']}", f"multipliers = {s['d_mult']}",
        f"context = [{{ at = {d_at}, dim = {dd}, rank = {dr}, steps = {dk} }}]", ""])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--out", required=True, help="folder to write into")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    s, out = SIZES[args.size], Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    v1.disable_eager_execution()
    tf.random.set_seed(args.seed)
    b, res = s["batch"], s["resolution"]

    # Training graph as TF-GAN's GAN estimator builds it: it creates the Adam slots and step.
    z = tf.random.normal([b, s["z_dim"]])
    labels = tf.random.uniform([b], 0, s["classes"], dtype=tf.int32)
    real = tf.random.uniform([b, res, res, 3], -1, 1)
    with v1.variable_scope("Generator", reuse=v1.AUTO_REUSE) as g_scope:
        fake = generator(z, labels, s, training=True)
    with v1.variable_scope("Discriminator", reuse=v1.AUTO_REUSE) as d_scope:
        d_fake = discriminator(fake, labels, s)
    with v1.variable_scope(d_scope, reuse=True):
        d_real = discriminator(real, labels, s)
    g_vars = v1.trainable_variables(g_scope.name)
    d_vars = v1.trainable_variables(d_scope.name)
    step = v1.train.get_or_create_global_step()
    d_loss = tf.reduce_mean(tf.nn.relu(1 - d_real)) + tf.reduce_mean(tf.nn.relu(1 + d_fake))
    g_loss = -tf.reduce_mean(d_fake)
    v1.train.AdamOptimizer(4e-4, 0.0).minimize(d_loss, var_list=d_vars)
    v1.train.AdamOptimizer(1e-4, 0.0).minimize(g_loss, var_list=g_vars, global_step=step)

    # Evaluation graph on fixed inputs and bases.
    (gd, gr, _), (dd, dr, _) = s["g_ham"], s["d_ham"]
    fixed = {
        "z": rng.standard_normal((b, s["z_dim"])).astype(np.float32),
        "y": rng.integers(0, s["classes"], b).astype(np.int64),
        "g_bases": rng.uniform(0, 1, (b, gd, gr)).astype(np.float32),
        "x": rng.uniform(-1, 1, (b, res, res, 3)).astype(np.float32),
        "d_bases": rng.uniform(0, 1, (b, dd, dr)).astype(np.float32),
    }
    global BN_INPUTS
    BN_INPUTS = []
    with v1.variable_scope("Generator", reuse=True):
        g_out = generator(tf.constant(fixed["z"]), tf.constant(fixed["y"]), s, training=False,
                          bases=tf.constant(fixed["g_bases"]))
    with v1.variable_scope("Discriminator", reuse=True):
        d_out = discriminator(tf.constant(fixed["x"]), tf.constant(fixed["y"]), s, bases=tf.constant(fixed["d_bases"]))

    prefix = out / f"model.ckpt-{s['step']}"
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for var in v1.global_variables():
            if var.name.startswith(("Generator/", "Discriminator/")) and "/Adam" not in var.name:
                var.load(random_value(var, rng).astype(var.dtype.as_numpy_dtype), sess)
        calibrate_batch_norms(sess, BN_INPUTS, rng)
        step.load(s["step"], sess)
        saved = v1.train.Saver(max_to_keep=None).save(sess, str(out / "model.ckpt"), global_step=step,
                                                      write_meta_graph=False)
        assert saved == str(prefix), saved
        # G first: D's power-iteration updates (training=True, as in the official D) touch only
        # D's u vectors, after the checkpoint was written; its output uses the updated u.
        g_images, d_scores = sess.run([g_out, d_out])

    reader = tf.train.load_checkpoint(str(prefix))
    dtypes = reader.get_variable_to_dtype_map()
    manifest = {}
    for name, shape in sorted(reader.get_variable_to_shape_map().items()):
        value = np.ascontiguousarray(reader.get_tensor(name))
        manifest[name] = {"dtype": dtypes[name].name, "shape": list(shape),
                          "sha256": hashlib.sha256(value.tobytes()).hexdigest()}
    (out / "variables.json").write_text(json.dumps(manifest, separators=(",", ":")) + "\n")
    np.savez(out / "reference.npz", **fixed, g_images=g_images, d_scores=d_scores)
    (out / "hamgan.toml").write_text(hamgan_toml(s))
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {prefix}.index/.data-*, variables.json ({len(manifest)} variables), reference.npz, "
          f"hamgan.toml to {out} ({total / 1e3:.0f} kB); G output: "
          f"{(np.abs(g_images) > 0.99).mean():.1%} saturated (|x| > 0.99), "
          f"D scores {d_scores.ravel().round(4).tolist()}")


if __name__ == "__main__":
    main()
