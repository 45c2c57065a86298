"""macOS and Windows (issue 13): no Unix-only module is imported at module level, and the parts
that start processes work when processes are spawned rather than forked."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIX_ONLY = ("fcntl", "resource", "termios", "pwd", "grp")

SCRIPT = textwrap.dedent("""
    import importlib, multiprocessing, os, pkgutil, sys

    # third-party packages first: what they import on this platform is their business
    import numpy, PIL.Image, scipy.linalg, torch, torchvision, tqdm, torch.utils.tensorboard  # noqa

    class Unavailable:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (made unavailable)")

    BLOCKED = set(sys.argv[1].split(","))
    for name in BLOCKED:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, Unavailable())

    if __name__ == "__main__":
        import hamgan
        names = [m.name for m in pkgutil.walk_packages(hamgan.__path__, "hamgan.") if m.name != "hamgan.__main__"]
        for name in names:
            importlib.import_module(name)
        assert not BLOCKED & set(sys.modules), BLOCKED & set(sys.modules)

        multiprocessing.set_start_method("spawn", force=True)       # as on macOS and Windows
        from PIL import Image
        from hamgan.data import ShapesDataset, build_loader, prepare
        from hamgan.runlock import RunLock
        out = sys.argv[2]
        loader = build_loader(ShapesDataset(32, n_classes=3, size=12), 4, seed=0, workers=1, pin_memory=False)
        images, labels = next(loader)
        assert images.shape == (4, 3, 32, 32)
        for c in ("a", "b"):
            os.makedirs(f"{out}/src/{c}")
            for i in range(3):
                Image.new("RGB", (20, 20), (80 * i, 0, 0)).save(f"{out}/src/{c}/{i}.png")
        with RunLock(out, "portability test"):
            pass
        manifest = prepare(f"{out}/src", f"{out}/store", size=8, workers=2, progress=False)
        assert manifest["count"] == 6, manifest
        print(f"imported {len(names)} modules")
""")


def test_every_module_imports_without_unix_only_modules_and_nothing_needs_fork(tmp_path):
    script = tmp_path / "portable.py"
    script.write_text(SCRIPT)
    r = subprocess.run([sys.executable, str(script), ",".join(UNIX_ONLY), str(tmp_path)], cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "imported" in r.stdout and int(r.stdout.split()[1]) > 40
