"""Golden data for tests/preprocess.rs: small images and what PIL/torchvision make of them.

Run from this folder:  python3 make.py
Needs Pillow, numpy, torch, torchvision and safetensors. Writes the test images next to this
script and `expected.safetensors` with, per case NAME:
  NAME.src          U8  (H, W, 3)  Image.open(f).convert("RGB")  (EXIF orientation applied where noted)
  NAME.s{S}.resized U8  (h, w, 3)  torchvision Resize(S) on that PIL image
  NAME.s{S}.tensor  F32 (3, h, w)  ... then ToTensor + Normalize(ImageNet)
and, for the synthetic pattern (no file; the Rust test rebuilds it with the same formula),
  pattern.WxH.to.wxh U8 (h, w, 3)  pattern(W, H).resize((w, h), Image.BILINEAR)
"""
import io, struct, zlib
import numpy as np
import PIL
from PIL import Image, ImageOps
import torch, torchvision
from torchvision import transforms
from safetensors.numpy import save_file

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
rs = np.random.RandomState(1234)
out = {}


def png16(arr, ctype):
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def case(name, fname, sizes, tensor_sizes=(), exif_transpose=False):
    im = Image.open(fname)
    if exif_transpose:
        im = ImageOps.exif_transpose(im)
    rgb = im.convert("RGB")
    out[f"{name}.src"] = np.asarray(rgb, dtype=np.uint8).copy()
    for s in sizes:
        r = transforms.Resize(s)(rgb)
        out[f"{name}.s{s}.resized"] = np.asarray(r, dtype=np.uint8).copy()
        if s in tensor_sizes:
            t = transforms.Compose([transforms.Resize(s), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])(rgb)
            out[f"{name}.s{s}.tensor"] = t.numpy().astype(np.float32).copy()


# RGB noise PNG: downscale and upscale (the Rust test also checks the no-op Resize(37)).
Image.fromarray(rs.randint(0, 256, (53, 37, 3)).astype(np.uint8)).save("rgb_noise_37x53.png")
case("rgb_noise", "rgb_noise_37x53.png", [29, 50], tensor_sizes=[29])

# A smooth-plus-noise photo-like JPEG (4:2:0), odd size.
yy, xx = np.mgrid[0:49, 0:65]
photo = np.stack([xx * 3.5, yy * 4.5, (xx + yy) * 2.0], -1) + rs.normal(0, 12, (49, 65, 3))
Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save("photo_65x49.jpg", quality=90)
case("photo_jpg", "photo_65x49.jpg", [29], tensor_sizes=[29])

# EXIF orientation 6 (rotate 90° clockwise to display): stored 24 wide x 16 high.
ex = Image.Exif(); ex[0x0112] = 6
Image.fromarray(rs.randint(0, 256, (16, 24, 3)).astype(np.uint8)).save("exif6_24x16.jpg", quality=95, exif=ex.tobytes())
case("exif6", "exif6_24x16.jpg", [11], exif_transpose=True)

# Greyscale, grey+alpha, RGBA (alpha must be dropped, not blended), palette, 1-bit.
Image.fromarray(rs.randint(0, 256, (31, 45)).astype(np.uint8), "L").save("gray_45x31.png")
case("gray", "gray_45x31.png", [29])
Image.fromarray(rs.randint(0, 256, (21, 17, 2)).astype(np.uint8), "LA").save("la_17x21.png")
case("la", "la_17x21.png", [13])
Image.fromarray(rs.randint(0, 256, (33, 40, 4)).astype(np.uint8), "RGBA").save("rgba_40x33.png")
case("rgba", "rgba_40x33.png", [29])
pal = Image.fromarray(rs.randint(0, 256, (22, 30, 3)).astype(np.uint8)).quantize(16)
pal.save("palette_30x22.png", transparency=3)
case("palette", "palette_30x22.png", [15])
Image.fromarray(rs.randint(0, 2, (14, 19)).astype(bool)).save("bilevel_19x14.png")
case("bilevel", "bilevel_19x14.png", [9])

# 16 bits: greyscale (Pillow mode I;16: clipped at 255), RGB (high byte).
g16 = rs.randint(0, 600, (35, 23)).astype(np.uint16)
g16[0, :4] = [0, 255, 256, 65535]
open("gray16_23x35.png", "wb").write(png16(g16, 0))
case("gray16", "gray16_23x35.png", [29])
open("rgb16_20x14.png", "wb").write(png16(rs.randint(0, 65536, (14, 20, 3)).astype(np.uint16), 2))
case("rgb16", "rgb16_20x14.png", [9])

# Other containers, lossless so any decoder must agree.
small = rs.randint(0, 256, (15, 20, 3)).astype(np.uint8)
Image.fromarray(small).save("small_20x15.webp", lossless=True)
case("webp", "small_20x15.webp", [9])
Image.fromarray(small).save("small_20x15.bmp")
case("bmp", "small_20x15.bmp", [9])
Image.fromarray(small).save("small_20x15.tiff")
case("tiff", "small_20x15.tiff", [9])
Image.fromarray(small).quantize(32).save("small_20x15.gif")
case("gif", "small_20x15.gif", [9])


# Synthetic pattern resized to many sizes (exercises scale factors, up and down, one axis only).
def pattern(w, h):
    y, x, c = np.mgrid[0:h, 0:w, 0:3].astype(np.int64)
    return ((x * x * 31 + y * 17 + c * 101 + x * y * 7 + (y * y * 13) % 97) % 256).astype(np.uint8)

for (W, H), targets in {
    (60, 40): [(40, 26), (30, 20), (59, 39), (61, 41), (7, 5), (1, 1), (60, 27), (40, 40), (70, 47)],
    (76, 50): [(50, 33), (76, 3), (2, 50)],
    (33, 17): [(66, 34), (5, 60)],
}.items():
    src = Image.fromarray(pattern(W, H))
    for (w, h) in targets:
        out[f"pattern.{W}x{H}.to.{w}x{h}"] = np.asarray(src.resize((w, h), Image.BILINEAR), dtype=np.uint8).copy()

save_file(out, "expected.safetensors", metadata={"pillow": PIL.__version__, "torchvision": torchvision.__version__, "torch": torch.__version__})
print("wrote", len(out), "arrays")
