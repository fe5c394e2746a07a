"""Compares our engine's Combi-CAM output with the PyTorch full-size reference.

Usage: python tests/golden/compare_full.py OURS.cams.safetensors DIR/reference.safetensors [--no-timing]
Prints, for `probs`, every `gradcam.NN` and `combicam`: max|ours-ref| / max|ref|
and the worst of them; whether the top-5 cell indices agree; max|p_ours - p_ref| / p_top.
Then times the PyTorch (CPU) B4 forward + backward at the reference's input size
(after one warm-up): the "PyTorch single-pass" reference timing.
Needs numpy, safetensors; the timing also needs torch and efficientnet_pytorch==0.7.0.
"""

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402


def rel_err(ours, ref):
    ours = ours.astype(np.float64)
    ref = ref.astype(np.float64)
    if ours.shape != ref.shape:
        return None
    d = np.abs(ours - ref).max() if ref.size else 0.0
    s = np.abs(ref).max() if ref.size else 0.0
    return float(d / s) if s > 0 else float(d)


def time_pytorch(ref_path, ref, repeats):
    import torch

    from full_reference import NUM_CELLS
    from visloc_ref import build_visloc, combicam

    x = torch.from_numpy(ref["input"])[None]
    bb, head = build_visloc("efficientnet-b4", NUM_CELLS)
    combicam(bb, head, x, keep_blocks=False)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        combicam(bb, head, x, keep_blocks=False)
        times.append(time.perf_counter() - t0)
    H, W = x.shape[2], x.shape[3]
    print(
        f"PyTorch single-pass (CPU, torch {torch.__version__}, {torch.get_num_threads()} threads), "
        f"B4 forward+backward+maps at {H}x{W}: best {min(times)*1e3:.0f} ms, median {sorted(times)[len(times)//2]*1e3:.0f} ms "
        f"over {repeats} runs"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description="Compare our Combi-CAM output with the PyTorch reference.")
    ap.add_argument("ours", help="our tool's .cams.safetensors (probs, logits, gradcam.NN, combicam)")
    ap.add_argument("ref", help="reference.safetensors written by full_reference.py")
    ap.add_argument("--no-timing", action="store_true", help="skip the PyTorch timing")
    ap.add_argument("--repeats", type=int, default=3, help="timed PyTorch runs (default 3)")
    args = ap.parse_args(argv)
    for p in (args.ours, args.ref):
        if not os.path.isfile(p):
            ap.error(f"no such file: {p}")
    ours = load_file(args.ours)
    ref = load_file(args.ref)
    with safe_open(args.ref, "np") as f:
        meta = f.metadata() or {}

    names = ["probs"] + sorted(k for k in ref if re.fullmatch(r"gradcam\.\d\d", k)) + ["combicam"]
    worst = (-1.0, None)
    bad = []
    for k in names:
        if k not in ours:
            print(f"{k:12s} MISSING in ours")
            bad.append(k)
            continue
        e = rel_err(ours[k], ref[k])
        if e is None:
            print(f"{k:12s} SHAPE MISMATCH ours {ours[k].shape} ref {ref[k].shape}")
            bad.append(k)
            continue
        print(f"{k:12s} {str(ref[k].shape):14s} max|ours-ref|/max|ref| = {e:.3e}")
        if e > worst[0]:
            worst = (e, k)
    print(f"worst: {worst[1]} {worst[0]:.3e}")
    if "probs" in ours and ours["probs"].shape == ref["probs"].shape:
        po, pr = ours["probs"].astype(np.float64), ref["probs"].astype(np.float64)
        to = np.argsort(-po, kind="stable")[:5]
        tr = np.argsort(-pr, kind="stable")[:5]
        print(f"top-5 ours {to.tolist()}  ref {tr.tolist()}  agree: {bool((to == tr).all())}"
              f" (top-1 agree: {bool(to[0] == tr[0])}, ref target {meta.get('target')})")
        print(f"max|p_ours - p_ref| / p_top = {np.abs(po - pr).max() / pr.max():.3e}")
    if bad:
        print("problems:", ", ".join(bad))
    if not args.no_timing:
        time_pytorch(args.ref, ref, args.repeats)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
