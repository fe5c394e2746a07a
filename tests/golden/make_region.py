"""Golden data for `--score region:KM`: the gradient of the probability mass within KM km of
the top cell's centre, by PyTorch autograd (tests/golden/region_b0.safetensors).

Model and input as b0_visloc.safetensors (efficientnet-b0 + visloc head, N = 500 cells with
the formula's random centres, input 3x67x45). Score S = Σ_{n: d(n, c) ≤ KM} p_n, c = argmax p,
d the haversine distance (R = 6371 km) between cell centres (mvmf.mus, degrees, float64).
Writes `input`, `probs`, `mass` (1), `inside` (N, 1.0/0.0), `grad.NN` = ∂S/∂(block NN output)
for every block, metadata km, target, cells_inside.
Usage: python tests/golden/make_region.py
"""

import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import detweights  # noqa: E402
from visloc_ref import build_visloc  # noqa: E402

KM = 2500.0
N = 500


def haversine_km(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.minimum(np.sqrt(a), 1.0))


def main():
    bb, head = build_visloc("efficientnet-b0", N)
    x = torch.from_numpy(detweights.input_tensor((1, 3, 67, 45)))
    acts = []

    def hook(_m, _i, out):
        out.retain_grad()
        acts.append(out)

    hooks = [b.register_forward_hook(hook) for b in bb._blocks]
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        fm = bb.extract_features(x)
        feats = F.adaptive_avg_pool2d(fm, 1).flatten(1)
        probs = torch.softmax(head(feats), dim=1)
        c = int(torch.argmax(probs[0]))
        mus = head.mvmf.mus.detach().numpy()
        d = haversine_km(mus[0, c], mus[1, c], mus[0], mus[1])
        inside = d <= KM
        # how close the nearest cell is to the boundary (float32 on the GPU decides it)
        margin = np.min(np.abs(d - KM))
        mass = probs[0][torch.from_numpy(inside)].sum()
        mass.backward()
    for h in hooks:
        h.remove()
    print(f"target {c}, {int(inside.sum())} of {N} cells within {KM} km, mass {mass.item():.6g}, "
          f"nearest centre to the boundary {margin:.3f} km away")
    t = {
        "input": x[0].detach().numpy().astype(np.float32),
        "probs": probs[0].detach().numpy().astype(np.float32),
        "mass": np.array([mass.item()], dtype=np.float32),
        "inside": inside.astype(np.float32),
    }
    for l, a in enumerate(acts):
        t[f"grad.{l:02d}"] = a.grad[0].numpy().astype(np.float32)
    meta = {"km": str(KM), "target": str(c), "cells_inside": str(int(inside.sum())),
            "num_classes": str(N), "generator": "make_region.py", "torch": torch.__version__}
    save_file(t, os.path.join(HERE, "region_b0.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
