"""Carry the binaries to a lent GPU machine without the Lite0 weights they embed.

The release binary and the test binary each embed the built-in Lite0 model (18.8 MB of f32,
OUT_DIR/builtin-lite0.safetensors, made by src/build.rs from the .pth the repository ships).
That copy is most of what benches/device.sh must carry, while the .pth travels anyway. So:

    python3 device_blob.py cut BLOB MANIFEST BIN...   # here: zero the blob in each BIN
    python3 device_blob.py put PTH MANIFEST           # there: rebuild it from the .pth, put it back

`cut` records the blob's safetensors header (a few KB), its offset in every binary and each
binary's SHA-256; `put` rebuilds the tensor data from the .pth with torch, in the header's
order, writes it back and checks every SHA-256, so a binary that comes back differs in nothing.
"""

import hashlib
import json
import os
import struct
import sys


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cut(blob_path, manifest, bins):
    blob = open(blob_path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    entries = []
    for b in bins:
        digest = sha(b)
        data = bytearray(open(b, "rb").read())
        at = data.find(blob)
        if at < 0 or data.find(blob, at + 1) >= 0:
            sys.exit(f"error: {b} does not hold the built-in model exactly once")
        data[at:at + len(blob)] = bytes(len(blob))
        with open(b, "wb") as f:
            f.write(data)
        entries.append({"path": b, "offset": at, "sha256": digest})
    with open(manifest, "w") as f:
        json.dump({"header": blob[:8 + n].hex(), "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                   "binaries": entries}, f)


def put(pth, manifest):
    import torch

    m = json.load(open(manifest))
    header = bytes.fromhex(m["header"])
    meta = json.loads(header[8:])
    sd = torch.load(pth, map_location="cpu", weights_only=True)
    tensors = sorted(((k, v) for k, v in meta.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0])
    parts = [header]
    for name, info in tensors:
        t = sd[name].contiguous().to(torch.float32)
        parts.append(t.numpy().astype("<f4").tobytes())
    blob = b"".join(parts)
    if len(blob) != m["size"] or hashlib.sha256(blob).hexdigest() != m["sha256"]:
        sys.exit(f"error: the model rebuilt from {pth} differs from the embedded one")
    for e in m["binaries"]:
        with open(e["path"], "r+b") as f:
            f.seek(e["offset"])
            f.write(blob)
        if sha(e["path"]) != e["sha256"]:
            sys.exit(f"error: {e['path']} differs from the binary that was packed")
    print(f"put the built-in model back into {len(m['binaries'])} binaries")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "cut":
        cut(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "put":
        put(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
