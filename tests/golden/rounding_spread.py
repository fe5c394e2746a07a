"""How far float32 PyTorch moves pytorch-grad-cam's Grad-CAM of the trained Lite0 against
itself: a diagnostic, not a golden (it writes nothing).

The Lite0 goldens compare our maps with pytorch-grad-cam's within 1e-3 of each map's peak.
This prints, for blocks 2, 5 and 10 of the coffee photo (as make_finer.py's Grad-CAM, the
probability score), the largest difference from the plain float32 run, over the map's peak,
when only the arithmetic changes:
  - no-onednn: the same model with PyTorch's oneDNN convolutions off (another order of sums);
  - input·(1 + s·N(0,1)), s = 1e-7 and 1e-6: the input moved by about one and ten float32 ulps;
  - float64: the whole run in double precision.

Measured 2026-12-04 (torch 2.15 CPU, 2-core Xeon VM):
  block 2:  peak 4.0e-4   no-onednn 4.6e-4   1e-7: 1.5e-4   1e-6: 1.6e-3   float64 1.2e-4
  block 5:  peak 1.8e-3   no-onednn 8.0e-4   1e-7: 7.9e-4   1e-6: 1.2e-3   float64 3.3e-6
  block 10: peak 3.1e-3   no-onednn 2.4e-6   1e-7: 4.0e-6   1e-6: 5.1e-4   float64 2.6e-6
So at blocks 2 and 5 a float32 run that sums in another order, PyTorch's own included, lands
up to ~1e-3 of the peak away (ReLU6's kinks: a pre-activation within rounding of 0 or 6 switches
its gradient on or off), while block 10 is steady to 1e-5.

Needs what make_finer.py needs. Run: python tests/golden/rounding_spread.py
"""

import os
import sys

import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee  # noqa: E402
from make_finer import gradcam_map  # noqa: E402


def main():
    torch.manual_seed(0)
    x, net, _, c = coffee()
    target = ClassifierOutputSoftmaxTarget(c)

    def grad_cam(model, inp, l):
        return gradcam_map(model, inp.clone().requires_grad_(True), model._blocks[l], target)

    for l in [2, 5, 10]:
        base = grad_cam(net, x, l)
        peak = np.abs(base).max()
        runs = {}
        with torch.backends.mkldnn.flags(enabled=False):
            runs["no-onednn"] = grad_cam(net, x, l)
        for s in [1e-7, 1e-6]:
            runs[f"input·(1+{s:g}·N)"] = grad_cam(net, x * (1 + s * torch.randn_like(x)), l)
        runs["float64"] = grad_cam(net.double(), x.double(), l).astype(np.float32)
        net.float()
        spread = "  ".join(f"{k} {np.abs(v - base).max() / peak:.1e}" for k, v in runs.items())
        print(f"block {l}: peak {peak:.1e}  {spread}")


if __name__ == "__main__":
    main()
