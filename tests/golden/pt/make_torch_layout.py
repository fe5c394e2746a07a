"""torch.save's zip container, byte for byte, for the reader tests in tests/checkpoint.rs.

Run from this folder:  /root/tv/bin/python make_torch_layout.py
(torch 2.15.0, efficientnet_pytorch 0.7.0, numpy; see README.md beside this file). Writes:

  layout.pt                 SMALL (below) saved by torch.save: tests/checkpoint.rs rebuilds this
                            file byte for byte with its own writer (pickle and serialization id taken
                            from the file), as it does every other zip file torch wrote here
  names/<name>              SMALL under awkward names: `efficientnet_backbone.pt` (the 21-byte
                            stem that zip 9.1-9.8.2 misread), `a.pt`, a 60-character name, one
                            with a space and one with non-ASCII characters (torch then names the
                            folder inside `archive`, as for a buffer)
  names_legacy/<name>       the same, _use_new_zipfile_serialization=False
  certh/                    CERTH's visloc folder written by torch.save: efficientnet_backbone.pt
                            (efficientnet_pytorch B0 state dict, `_fc` and the counters included),
                            mvmf_head.pt (500 cells, mus/kappas f64) and rrm_head.pt (hidden
                            4096), keys without prefix as CERTH ships them. Values: the formula
                            of ../detweights.py under the prefixed key (`backbone.`, `mvmf_head.`,
                            `rrm_head.`); a tensor of two or more dimensions is an
                            `as_strided(shape, (1,) * ndim)` view of a storage holding the first
                            sum(d - 1) + 1 formula values, so its element (i, j, ...) is formula
                            value i + j + ... (a full B0 would be 21 MB; this folder is ~0.6 MB)

The torch zip files differ from run to run in their random `.data/serialization_id` (40 bytes,
with its CRC); the Rust test takes it from the file.

  /root/tv/bin/python make_torch_layout.py --check DIR

checks archives our Rust writer wrote (COMBICAM_KEEP_PT=DIR cargo test --release --test all
checkpoint::sweep keeps a subset of the sweep there): Python's zipfile opens each one and finds
every CRC right, its records are the ones torch.save writes in torch's order, and
torch.load(weights_only=True) gives every tensor `t<k>` the sweep's values
((k * 131 + j * 7) % 1009 / 8 - 63, j the flat index).
"""
import os
import sys
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from detweights import det_tensor  # noqa: E402

RECORDS = ["data.pkl", ".format_version", ".storage_alignment", "byteorder"]


def small():
    """A dict a reader must get exactly; tests/checkpoint.rs builds the same values."""
    return {
        "a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.25 - 1.0,
        "a.bias": torch.arange(3, dtype=torch.float32) * 0.5,
        "empty": torch.zeros(0),                                  # a 0-byte storage
        "bn.num_batches_tracked": torch.tensor(7),                # int64, 0-dim
        "b.running_var": 1.0 + torch.arange(5, dtype=torch.float32) / 8,
        "mus": torch.arange(6, dtype=torch.float64).reshape(2, 3) / 4,
    }


def same(a, b, what):
    assert a.keys() == b.keys(), what
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (what, k)


def save(obj, path, legacy=False):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    same(obj, torch.load(path, weights_only=True), path)
    if not legacy:
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None, path
    print(f"{path:44s} {os.path.getsize(path):7d}")


def strided(full):
    """`full` (numpy) as stored here: 0-d and 1-d contiguous, more dimensions as an overlapping
    as_strided view of its first sum(d - 1) + 1 values."""
    t = torch.from_numpy(np.ascontiguousarray(full))
    if t.dim() < 2:
        return t.clone()
    n = sum(d - 1 for d in t.shape) + 1
    v = t.reshape(-1)[:n].clone().as_strided(t.shape, (1,) * t.dim())
    i = [d - 1 for d in t.shape]
    assert v[tuple(i)].item() == t.reshape(-1)[sum(i)].item()
    assert v.untyped_storage().nbytes() == n * t.element_size()
    return v


def formula_dict(prefix, shapes):
    out = {}
    for k, t in shapes.items():
        if not t.is_floating_point():
            out[k] = t.clone()                                    # num_batches_tracked
            continue
        np_dtype = np.float64 if t.dtype == torch.float64 else np.float32
        out[k] = strided(det_tensor(prefix + k, tuple(t.shape), np_dtype))
    return out


def certh():
    from efficientnet_pytorch import EfficientNet
    import torch.nn as nn

    d = "certh"
    bb = EfficientNet.from_name("efficientnet-b0").state_dict()
    save(formula_dict("backbone.", bb), os.path.join(d, "efficientnet_backbone.pt"))
    cells, dims, hidden = 500, 1280, 4096
    head = {
        "mixture_weights.seq_model.0.weight": torch.zeros(cells, dims),
        "mixture_weights.seq_model.0.bias": torch.zeros(cells),
        "mvmf.mus": torch.zeros(2, cells, dtype=torch.float64),
        "mvmf.kappas": torch.zeros(cells, dtype=torch.float64),
    }
    save(formula_dict("mvmf_head.", head), os.path.join(d, "mvmf_head.pt"))
    # the official RetrievalModule: LayerNorm, Residual(fc1, ReLU, fc2, LayerNorm)
    rrm = nn.Module()
    rrm.norm = nn.LayerNorm(dims)
    rrm.res = nn.Module()
    rrm.res.norm = nn.LayerNorm(dims)
    rrm.res.fc1 = nn.Linear(dims, hidden)
    rrm.res.fc2 = nn.Linear(hidden, dims)
    save(formula_dict("rrm_head.", rrm.state_dict()), os.path.join(d, "rrm_head.pt"))


NAMES = [
    "efficientnet_backbone.pt",
    "a.pt",
    "w" * 57 + ".pt",                                             # 60 characters
    "my weights.pt",
    "poids é✓.pt",
]


def check(folder):
    n = 0
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".pt"):
            continue
        path = os.path.join(folder, f)
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None, f"{f}: a CRC is wrong"
            names = z.namelist()
        stem = names[0].split("/")[0]
        data = [x for x in names if x.startswith(f"{stem}/data/")]
        want = [f"{stem}/{r}" for r in RECORDS] + data + [f"{stem}/version", f"{stem}/.data/serialization_id"]
        assert names == want, f"{f}: records {names}"
        sd = torch.load(path, weights_only=True)
        for k, t in sd.items():
            j = np.arange(t.numel(), dtype=np.int64)
            ti = int(k[1:])
            v = ((ti * 131 + j * 7) % 1009).astype(np.float32) / 8 - 63
            assert np.array_equal(t.reshape(-1).numpy(), v), f"{f}: {k}"
        print(f"{f[:40]:40s} OK  zipfile and torch.load read {len(sd)} tensors right")
        n += 1
    assert n, f"no .pt files in {folder}"
    print(f"{n} archives OK")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
        sys.exit()
    os.chdir(HERE)
    save(small(), "layout.pt")
    for n in NAMES:
        save(small(), os.path.join("names", n))
        save(small(), os.path.join("names_legacy", n), legacy=True)
    certh()
