"""Writes a deterministic synthetic 450x300 (W x H) RGB "photo" as PNG.

Smooth colour gradients, a sky/ground split, a sun, a few polygons and stripes,
plus low-amplitude deterministic texture, so the network sees some structure.
No randomness from the environment: the same bytes on every machine (numpy + PIL).
Usage: python tests/golden/make_photo.py OUT.png
"""

import argparse
import sys

import numpy as np
from PIL import Image, ImageDraw

W, H = 450, 300


def make_photo() -> Image.Image:
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.zeros((H, W, 3), np.float64)
    horizon = 170 + 12 * np.sin(x / 37.0)
    sky = y < horizon
    t = y / H
    img[..., 0] = np.where(sky, 90 + 80 * t, 70 + 60 * np.sin(x / 53.0) ** 2)
    img[..., 1] = np.where(sky, 140 + 70 * t, 110 + 50 * np.cos(y / 19.0) ** 2)
    img[..., 2] = np.where(sky, 230 - 40 * t, 60 + 30 * (x / W))
    # deterministic texture
    img += 6 * np.sin(x * 0.9 + y * 0.35)[..., None] * np.array([1.0, 0.8, 0.6])
    img = np.clip(img, 0, 255).astype(np.uint8)
    im = Image.fromarray(img, "RGB")
    d = ImageDraw.Draw(im)
    d.ellipse((330, 25, 390, 85), fill=(250, 230, 120))  # sun
    d.polygon([(40, 200), (120, 95), (200, 200)], fill=(120, 110, 105))  # mountain / roof
    d.rectangle((60, 200, 180, 280), fill=(180, 60, 50))  # building
    for i in range(4):  # windows
        d.rectangle((72 + 28 * i, 215, 88 + 28 * i, 240), fill=(40, 40, 70))
    d.rectangle((240, 150, 262, 290), fill=(90, 60, 30))  # tree trunk
    d.ellipse((205, 90, 300, 175), fill=(30, 120, 40))  # tree crown
    for k in range(6):  # road stripes
        d.line((300 + 25 * k, 290, 320 + 25 * k, 250), fill=(235, 235, 235), width=4)
    return im


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output PNG path")
    args = ap.parse_args(argv)
    im = make_photo()
    im.save(args.out, format="PNG")
    print(f"wrote {args.out} ({im.size[0]}x{im.size[1]})")


if __name__ == "__main__":
    sys.exit(main())
