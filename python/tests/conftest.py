"""Shared fixtures of the combicam test suite.

The suite compares the Python package with the command line bit for bit, so it needs the
command-line binary: $COMBICAM_BIN, else target/release/combicam-gpu under the repository
root (build it with `cargo build --release`). A missing binary fails the tests that need it,
with a message that says so; nothing is skipped.

Both sides run with the built-in EfficientNet-Lite0 (or explicit test weights) whatever the
caller's environment holds: $COMBICAM_WEIGHTS and $COMBICAM_DEVICE are cleared, and the
working directory is an empty folder (the default weights are looked up in ./weights/).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest

import combicam

# python/tests/conftest.py: the repository root is two levels above this folder
ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "tests" / "photos"
DEFAULT_BIN = ROOT / "target" / "release" / "combicam-gpu"

# what the command line decodes (README: JPEG, PNG, WebP, GIF, BMP, TIFF)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}

# environment variables that would make either side load other weights or another adapter
_ENV_CHOICES = ("COMBICAM_WEIGHTS", "COMBICAM_DEVICE")


def shipped_photos() -> list[Path]:
    """The test photos in tests/photos/, sorted (the README is not one)."""
    if not PHOTOS.is_dir():
        return []
    return sorted(p for p in PHOTOS.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


COFFEE = PHOTOS / "coffee.png"


# ----------------------------------------------------------------------------- safetensors


_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path: Path) -> tuple[Dict[str, np.ndarray], dict]:
    """The tensors and the metadata of a .safetensors file, parsed by hand: an 8-byte
    little-endian header length, a JSON header (dtype, shape, data_offsets relative to the
    end of the header), then the data."""
    data = Path(path).read_bytes()
    assert len(data) >= 8, f"{path}: {len(data)} bytes, too short for a safetensors file"
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data), f"{path}: header length {n} runs past the end of the file"
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    body = data[8 + n :]
    meta = header.pop("__metadata__", {}) or {}
    tensors: Dict[str, np.ndarray] = {}
    for name, info in header.items():
        dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        shape = tuple(info["shape"])
        start, end = info["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        assert 0 <= start <= end <= len(body), f"{path}: {name}'s data lies outside the file"
        assert end - start == count * dtype.itemsize, f"{path}: {name}'s size mismatches its shape"
        arr = np.frombuffer(body, dtype=dtype, count=count, offset=start).reshape(shape)
        tensors[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)
    return tensors, meta


# ----------------------------------------------------------------------------- comparisons


def raw_tensors_of(r) -> Dict[str, np.ndarray]:
    """An Explanation's arrays under the raw file's names: probs, logits, `<method>.NN` and
    the fused maps ("combicam", "<method>.fused")."""
    out: Dict[str, np.ndarray] = {"probs": r.probs, "logits": r.logits}
    for method, blocks in r.maps.items():
        for b, m in blocks.items():
            out[f"{method}.{b:02d}"] = m
    for name, m in r.fused_maps.items():
        out[name] = m
    return out


def assert_equal_tensors(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray], what: str):
    """Same names, dtypes, shapes and bits."""
    assert sorted(got) == sorted(want), f"{what}: tensor names differ"
    for k in sorted(want):
        g, w = np.asarray(got[k]), np.asarray(want[k])
        assert g.dtype == w.dtype, f"{what}: {k} is {g.dtype}, expected {w.dtype}"
        assert g.shape == w.shape, f"{what}: {k} has shape {g.shape}, expected {w.shape}"
        if not np.array_equal(g, w):
            diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
            pytest.fail(
                f"{what}: {k} differs at {int((g != w).sum())} of {g.size} values "
                f"(max |diff| {diff.max():.3g})"
            )


def assert_same_explanation(a, b, what: str = "explanations"):
    """Two Explanations with the same numbers bit for bit, and the same target."""
    assert_equal_tensors(raw_tensors_of(a), raw_tensors_of(b), what)
    assert np.array_equal(a.fused, b.fused), f"{what}: fused differs"
    assert a.input_size == b.input_size
    assert a.target.index == b.target.index


def assert_one_line_error(excinfo, *needles: str):
    """The message is one line (no newline), not empty, and names what it must."""
    msg = str(excinfo.value)
    assert msg.strip(), "empty error message"
    assert "\n" not in msg and "\r" not in msg, f"message has several lines: {msg!r}"
    low = msg.lower()
    for n in needles:
        assert n.lower() in low, f"message {msg!r} does not mention {n!r}"
    return msg


# ----------------------------------------------------------------------------- environment


@pytest.fixture(scope="session")
def repo_root() -> Path:
    assert (ROOT / "python" / "combicam").is_dir(), f"{ROOT} does not look like the repository"
    return ROOT


@pytest.fixture(scope="session")
def photos_dir(repo_root) -> Path:
    assert PHOTOS.is_dir(), f"the test photos are missing: {PHOTOS}"
    assert COFFEE.is_file(), f"the test photo is missing: {COFFEE}"
    return PHOTOS


@pytest.fixture(scope="session")
def neutral_dir(tmp_path_factory) -> Path:
    """An empty working directory: no ./weights/ to be picked up."""
    return tmp_path_factory.mktemp("cwd")


def clean_env() -> dict:
    env = dict(os.environ)
    for v in _ENV_CHOICES:
        env.pop(v, None)
    return env


def make_explainer(neutral: Path, **kwargs) -> "combicam.Explainer":
    """An Explainer built as the command line would choose its weights in an empty folder,
    without $COMBICAM_WEIGHTS or $COMBICAM_DEVICE."""
    with pytest.MonkeyPatch.context() as mp:
        for v in _ENV_CHOICES:
            mp.delenv(v, raising=False)
        mp.chdir(neutral)
        return combicam.Explainer(**kwargs)


@pytest.fixture(scope="session")
def explainer_factory(neutral_dir) -> Callable[..., "combicam.Explainer"]:
    return lambda **kw: make_explainer(neutral_dir, **kw)


@pytest.fixture(scope="module")
def builtin(neutral_dir):
    """The built-in ImageNet EfficientNet-Lite0."""
    ex = make_explainer(neutral_dir)
    assert ex.model["name"] == "efficientnet-lite0"
    assert ex.model["outputs"] == 1000
    return ex


@pytest.fixture(scope="module")
def b4(neutral_dir):
    """Deterministic random visloc B4 weights with 1000 cells."""
    ex = make_explainer(neutral_dir, test_weights="b4", cells=1000)
    assert ex.model["outputs"] == 1000
    return ex


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="session")
def cli_bin(repo_root) -> Path:
    """The command-line binary: $COMBICAM_BIN, else target/release/combicam-gpu."""
    given = os.environ.get("COMBICAM_BIN")
    path = Path(given) if given else DEFAULT_BIN
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not path.is_file():
        how = f"$COMBICAM_BIN={given!r}" if given else f"the default {DEFAULT_BIN}"
        pytest.fail(
            f"the combicam-gpu binary is missing ({how} is not a file): build it with "
            f"`cargo build --release` in {ROOT}, or point $COMBICAM_BIN at it",
            pytrace=False,
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"the combicam-gpu binary {path} is not executable", pytrace=False)
    return path


def cli_run(cli_bin: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    """The command line with `args`, in the folder `cwd` (made if needed), without
    $COMBICAM_WEIGHTS or $COMBICAM_DEVICE; a non-zero exit fails the test with its stderr."""
    cwd.mkdir(parents=True, exist_ok=True)
    argv = [str(cli_bin), *map(str, args)]
    p = subprocess.run(argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited with {p.returncode}:\n{p.stderr}\n{p.stdout}",
            pytrace=False,
        )
    return p


@pytest.fixture
def run_cli(cli_bin, tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """run_cli(*args): the command line in an empty folder under tmp_path."""
    return lambda *args: cli_run(cli_bin, *args, cwd=tmp_path / "cli-cwd")


@pytest.fixture
def cli_raw(run_cli, tmp_path) -> Callable[..., Dict[str, np.ndarray]]:
    """cli_raw(photo, *flags): run `explain PHOTO --out DIR --save-raw FLAGS` into a fresh
    folder under tmp_path and return the tensors of DIR/<stem>.cams.safetensors."""
    count = [0]

    def raw(photo: Path, *flags: str) -> Dict[str, np.ndarray]:
        count[0] += 1
        out = tmp_path / f"cli-out-{count[0]}"
        run_cli("explain", photo, "--out", out, "--save-raw", *flags)
        f = out / f"{Path(photo).stem}.cams.safetensors"
        assert f.is_file(), f"the command line wrote no {f.name}: {sorted(os.listdir(out))}"
        tensors, _meta = read_safetensors(f)
        return tensors

    return raw
