"""Synthetic PyTorch checkpoints for the .pt reader tests (see README.md beside this file).

Run from this folder:  python3 make.py        (needs torch, numpy, safetensors)
Writes the *.pt files next to this script and `expected.safetensors` holding, for every tensor of
every file a reader must accept, the tensor made contiguous in its own dtype and then converted to
float32, named `<file stem>/<key path>` with nested dict keys joined by "/" (e.g. `zip_f32/a.weight`,
`nested/state_dict/x.weight`, `nested/optimizer/state/0/exp_avg`).

The hostile files (evil*, memo_bomb*) are raw pickle bytes written by hand; this script never
unpickles them with a real unpickler (it only disassembles them with pickletools, and checks that
torch.load(weights_only=True) refuses evil.pt). The torch zip files carry a random
`.data/serialization_id`, so they differ from run to run in those 40 bytes only (and in the zip
entries' CRC/offsets that depend on them); the tensors (and expected.safetensors' arrays) do not.
"""
import io, os, pickle, pickletools, struct, zipfile
import numpy as np
import torch
import safetensors
from safetensors.numpy import save_file

PWNED = "/tmp/combicam_pwned"
out = {}


def flatten(obj, prefix):
    """Every tensor in nested dicts/lists, keyed by its path joined with '/'."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}/{i}")


def save(obj, stem, legacy=False, expected=True):
    fname = f"{stem}.pt"
    torch.save(obj, fname, _use_new_zipfile_serialization=not legacy)
    back = torch.load(fname, weights_only=True)            # our own files: safe loader, round trip
    for (k, t), (k2, t2) in zip(flatten(obj, stem), flatten(back, stem)):
        assert k == k2 and t.dtype == t2.dtype and torch.equal(t, t2), k
    if expected:
        for k, t in flatten(obj, stem):
            out[k] = t.contiguous().to(torch.float32).numpy().copy()
    return fname


# 1, 2: the same small state dict, zip and legacy format.
torch.manual_seed(0)
sd = {
    "a.weight": torch.randn(3, 4),
    "a.bias": torch.randn(3),
    "bn.num_batches_tracked": torch.tensor(7),             # int64, 0-dim
    "b.running_var": torch.rand(5) + 0.5,
}
save(sd, "zip_f32")
save(sd, "legacy_f32", legacy=True)

# 3: other float dtypes.
torch.manual_seed(1)
dt = {
    "f64": torch.randn(3, 2, dtype=torch.float64),
    "f16": torch.randn(4).to(torch.float16),
    "bf16": torch.randn(2, 3).to(torch.bfloat16),
}
save(dt, "dtypes")
save(dt, "dtypes_legacy", legacy=True)

# 4: views: a transpose (non-contiguous strides), a slice (storage offset; the whole 20-element
# storage is saved), and four tensors sharing one 6-element storage.
torch.manual_seed(2)
x = torch.randn(3, 5)
big = torch.randn(20)
s = torch.randn(6)
views = {
    "x_t": x.t(),               # shape (5, 3), stride (1, 5), offset 0, storage 15
    "big_7_13": big[7:13],      # shape (6,), stride (1,), offset 7, storage 20
    "s": s,                     # shape (6,), storage 6
    "s1": s[:3],                # shape (3,), offset 0, same storage as s
    "s2": s[3:],                # shape (3,), offset 3, same storage
    "s_2x3": s.view(2, 3),      # shape (2, 3), stride (3, 1), same storage
}
assert not views["x_t"].is_contiguous()
save(views, "views")
save(views, "views_legacy", legacy=True)

# 5: a training checkpoint with the weights one level down.
torch.manual_seed(3)
nested = {
    "epoch": 3,
    "state_dict": {"x.weight": torch.randn(2, 2)},
    "optimizer": {
        "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(2, 2)}},
        "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "weight_decay": 0.0, "params": [0]}],
    },
}
save(nested, "nested")

# 8: no tensors at all.
save({"epoch": 1, "lr": 0.1}, "no_tensors", expected=False)

# 9: zip_f32.pt cut in half.
zf = open("zip_f32.pt", "rb").read()
open("truncated.pt", "wb").write(zf[: len(zf) // 2])

# 10: integer weights (a reader must refuse them as not float).
save({"a.weight": torch.arange(6).reshape(2, 3)}, "int_weights", expected=False)


def torch_like_zip(fname, pkl):
    """A zip laid out like torch.save's: uncompressed archive/data.pkl, byteorder, version."""
    with zipfile.ZipFile(fname, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/.format_version", b"1")
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/version", b"3\n")


def assert_no_global(pkl):
    ops = {op.name for op, _, _ in pickletools.genops(pkl)}
    assert not ops & {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}, ops


# 6: evil: {"a.weight": os.system("touch /tmp/combicam_pwned")} when unpickled for real.
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + PWNED,))


evil = pickle.dumps({"a.weight": Evil()}, protocol=2)      # pickling does not call os.system
assert b"system" in evil
open("evil_plain.pt", "wb").write(evil)
torch_like_zip("evil.pt", evil)
try:
    torch.load("evil.pt", weights_only=True)
    raise SystemExit("weights_only loader accepted evil.pt")
except pickle.UnpicklingError:
    pass
assert not os.path.exists(PWNED)

# 7: memo bomb: L0 = [], L_i = [L_{i-1}, L_{i-1}] for i = 1..50 via memo PUT/GET; the result is
# L50, a DAG of 51 lists, but a tree of 2^51 - 1 lists (2^50 references to L0) when expanded.
LEVELS = 50
b = bytearray(b"\x80\x02")                                 # PROTO 2
b += b"]" + b"q\x00"                                       # EMPTY_LIST, BINPUT 0
for i in range(1, LEVELS + 1):
    b += b"]" + b"(" + b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"e"   # EMPTY_LIST MARK BINGET BINGET APPENDS
    b += b"q" + bytes([i])                                 # BINPUT i
b += b"."                                                  # STOP
bomb = bytes(b)
assert_no_global(bomb)
L = pickle.loads(bomb)                                     # safe: no GLOBAL/REDUCE opcodes at all
for _ in range(LEVELS):
    assert len(L) == 2 and L[0] is L[1]
    L = L[0]
assert L == []
open("memo_bomb.pt", "wb").write(bomb)
torch_like_zip("memo_bomb_zip.pt", bomb)

assert not os.path.exists(PWNED)
save_file(out, "expected.safetensors", metadata={
    "torch": torch.__version__, "numpy": np.__version__, "safetensors": safetensors.__version__})
for f in sorted(os.listdir(".")):
    if f.endswith(".pt") or f == "expected.safetensors":
        print(f"{f:24s} {os.path.getsize(f):6d}")
print("wrote", len(out), "arrays")
