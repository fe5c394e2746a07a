"""Full-size PyTorch reference for one real image (run by hand, not in CI).

Loads an image with PIL (RGB), applies the visloc inference preprocessing
(torchvision Resize(300), ToTensor, Normalize ImageNet mean/std), builds
efficientnet-b4 (efficientnet_pytorch 0.7.0) + visloc head with N=31145 cells
from the deterministic weights formula (detweights.py), runs Combi-CAM in one
forward + one backward, and writes DIR/reference.safetensors with
`input` (3,H,W), `logits` (N), `probs` (N), `gradcam.00`..`gradcam.31` (h_l,w_l),
`combicam` (H,W). Prints the top-5 cells.
Usage: python tests/golden/full_reference.py --image PATH --out DIR
Needs torch, torchvision, efficientnet_pytorch==0.7.0, safetensors, numpy, pillow.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

NUM_CELLS = 31145


def preprocess(path: str) -> torch.Tensor:
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose(
        [
            transforms.Resize(300),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    return tf(Image.open(path).convert("RGB"))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Full-size PyTorch Combi-CAM reference (B4 + visloc head, formula weights).")
    ap.add_argument("--image", required=True, help="input image (any PIL-readable format)")
    ap.add_argument("--out", required=True, help="output directory (reference.safetensors goes there)")
    args = ap.parse_args(argv)

    from safetensors.numpy import save_file

    from visloc_ref import build_visloc, combicam

    if not os.path.isfile(args.image):
        ap.error(f"no such image: {args.image}")
    os.makedirs(args.out, exist_ok=True)
    x = preprocess(args.image)
    H, W = x.shape[1], x.shape[2]
    print(f"input tensor 3x{H}x{W}")
    t0 = time.perf_counter()
    bb, head = build_visloc("efficientnet-b4", NUM_CELLS)
    print(f"built model in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    r = combicam(bb, head, x[None], keep_blocks=False)
    print(f"forward+backward+maps in {time.perf_counter() - t0:.2f} s")
    probs = r["probs"]
    top = torch.topk(probs, 5)
    print("top-5 cells:")
    for p, i in zip(top.values.tolist(), top.indices.tolist()):
        print(f"  cell {i:6d}  p = {p:.6g}")

    def f32(t):
        return np.ascontiguousarray(t.detach().numpy().astype(np.float32))

    out = {"input": f32(x), "logits": f32(r["logits"]), "probs": f32(probs), "combicam": f32(r["combicam"])}
    for l in range(r["nblocks"]):
        out[f"gradcam.{l:02d}"] = f32(r[f"gradcam.{l:02d}"])
    meta = {
        "model": "efficientnet-b4+visloc_head",
        "height": str(H),
        "width": str(W),
        "num_classes": str(NUM_CELLS),
        "target": str(r["target"]),
        "generator": "full_reference.py",
        "image": os.path.basename(args.image),
        "torch": torch.__version__,
    }
    path = os.path.join(args.out, "reference.safetensors")
    save_file(out, path, metadata=meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
