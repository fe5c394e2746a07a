"""Deterministic weights formula shared with the Rust side (numpy only, no torch).

Every tensor value is a pure function of the tensor's full key and the flat
(row-major, 0-based) element index, so Rust and Python can build bit-identical
synthetic models without shipping weight files:

    fnv1a64(name): h = 0xcbf29ce484222325; for each utf-8 byte b: h ^= b; h *= 0x100000001b3 (mod 2^64)
    splitmix64(x): z = x + 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
                   z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)      (all mod 2^64)
    u(name, i)   = float64(splitmix64(fnv1a64(name) ^ i) >> 40) / 2**24                  (exact, in [0,1))
    value        = lo + (hi - lo) * u      (float64, plain mul/add, no FMA; then cast to the dtype)

(lo, hi) by key, first match wins (see `value_range`):
 1. *.running_mean                      (-0.1, 0.1)
 2. *.running_var                       (0.5, 1.5)
 3. *num_batches_tracked                left alone (int64 0)
 4. BatchNorm weight (1-D, module `_bn*` or `bnN`)  (0.5, 1.5)
 5. BatchNorm bias                      (-0.2, 0.2)
 6. 4-D conv weight (co,ci,kh,kw)       a = sqrt(3.0 / (ci*kh*kw)); (-a, a)
 7. 2-D `.weight` (Linear: visloc head matrix, timm classifier) (N,K): a = 4.0*sqrt(3.0/K); (-a, a)
 8. mvmf_head.mvmf.mus (2,N) float64    row = i // N; row 0: (-90, 90), row 1: (-180, 180)
 9. mvmf_head.mvmf.kappas (N)           (10, 1000)
10. anything else (biases, ...)         (-0.1, 0.1)

Run `python3 detweights.py` for a self-test that prints u("test", 0..4) and
(re)writes detweights_check.txt next to this file.
"""

import math
import os
import re

import numpy as np

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1

_BN_MODULE = re.compile(r"^(_bn\d*|bn\d+)$")


def fnv1a64(name: str) -> int:
    h = FNV_OFFSET
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def u(name: str, i: int) -> float:
    """Scalar reference implementation (pure Python ints)."""
    return float(splitmix64(fnv1a64(name) ^ i) >> 40) / 2.0**24


def _splitmix64_np(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def u_array(name: str, start: int, stop: int) -> np.ndarray:
    """u(name, i) for i in [start, stop) as float64 (vectorised)."""
    h = np.uint64(fnv1a64(name))
    idx = np.arange(start, stop, dtype=np.uint64)
    z = _splitmix64_np(idx ^ h)
    return (z >> np.uint64(40)).astype(np.float64) / 2.0**24


def is_bn_param(key: str, ndim: int) -> bool:
    parts = key.split(".")
    return ndim == 1 and len(parts) >= 2 and _BN_MODULE.match(parts[-2]) is not None


def value_range(key: str, shape):
    """(lo, hi) as float64 scalars, ('rows', [(lo,hi),...]) for mus, or None to skip."""
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if key.endswith(".running_mean"):
        return (-0.1, 0.1)
    if key.endswith(".running_var"):
        return (0.5, 1.5)
    if key.endswith("num_batches_tracked"):
        return None
    if key.endswith(".weight") and is_bn_param(key, ndim):
        return (0.5, 1.5)
    if key.endswith(".bias") and is_bn_param(key, ndim):
        return (-0.2, 0.2)
    if ndim == 4 and key.endswith(".weight"):
        _, ci, kh, kw = shape
        a = math.sqrt(3.0 / (ci * kh * kw))
        return (-a, a)
    if ndim == 2 and key.endswith(".weight"):
        a = 4.0 * math.sqrt(3.0 / shape[1])
        return (-a, a)
    if key == "mvmf_head.mvmf.mus":
        return ("rows", [(-90.0, 90.0), (-180.0, 180.0)])
    if key == "mvmf_head.mvmf.kappas":
        return (10.0, 1000.0)
    return (-0.1, 0.1)


def det_tensor(key: str, shape, dtype=np.float32, chunk: int = 1 << 23):
    """The deterministic tensor for `key` (numpy array of `shape`, `dtype`), or None to skip."""
    shape = tuple(int(s) for s in shape)
    r = value_range(key, shape)
    if r is None:
        return None
    n = int(np.prod(shape)) if shape else 1
    out = np.empty(n, dtype=dtype)
    if r[0] == "rows":
        rows = r[1]
        assert len(shape) == 2 and shape[0] == len(rows), (key, shape)
        ncol = shape[1]
        lo = np.repeat(np.array([p[0] for p in rows], dtype=np.float64), ncol)
        hi = np.repeat(np.array([p[1] for p in rows], dtype=np.float64), ncol)
        uu = u_array(key, 0, n)
        out[:] = (lo + (hi - lo) * uu).astype(dtype)
        return out.reshape(shape)
    lo, hi = np.float64(r[0]), np.float64(r[1])
    span = hi - lo
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        out[s:e] = (lo + span * u_array(key, s, e)).astype(dtype)
    return out.reshape(shape)


def input_tensor(shape, lo=-2.0, hi=2.0):
    """The synthetic input image: u("input", i) mapped to (lo, hi), float32."""
    n = int(np.prod(shape))
    return (np.float64(lo) + (np.float64(hi) - np.float64(lo)) * u_array("input", 0, n)).astype(
        np.float32
    ).reshape(shape)


def _self_test():
    vals = [u("test", i) for i in range(5)]
    vec = u_array("test", 0, 5)
    assert all(a == b for a, b in zip(vals, vec)), (vals, vec)
    # spot-check the vectorised path against the scalar one on a long key / large index
    k = "backbone._blocks.3._bn1.running_var"
    for i in (0, 1, 12345, 2**31 + 7):
        assert u_array(k, i, i + 1)[0] == u(k, i)
    for i, v in enumerate(vals):
        print(f'u("test", {i}) = {v!r}')
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "detweights_check.txt")
    with open(path, "w") as f:
        f.write("".join(repr(v) + "\n" for v in vals))
    print("wrote", path)


if __name__ == "__main__":
    _self_test()
