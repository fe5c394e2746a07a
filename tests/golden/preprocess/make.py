"""Golden data for tests/preprocess.rs: small images and what PIL/torchvision make of them.

Run from this folder:  python3 make.py
Needs Pillow, numpy, torch, torchvision and safetensors. Writes the test images next to this
script and `expected.safetensors` with, per case NAME:
  NAME.src          U8  (H, W, 3)  Image.open(f).convert("RGB")  (EXIF orientation applied where noted)
  NAME.s{S}.resized U8  (h, w, 3)  torchvision Resize(S) on that PIL image
  NAME.s{S}.tensor  F32 (3, h, w)  ... then ToTensor + Normalize(ImageNet)
and, for the synthetic pattern (no file; the Rust test rebuilds it with the same formula),
  pattern.WxH.to.wxh U8 (h, w, 3)  pattern(W, H).resize((w, h), Image.BILINEAR)

JPEG corpus for bit-exact decoding (files jpeg_<what>_<W>x<H>.jpg, W x H as stored; photo-like
content: downscaled crops of skimage.data.chelsea()/coffee() plus Gaussian noise, from its own
RandomState(2024) so the cases above keep their bytes). Case name, file, what it exercises:
  jpeg444              jpeg_444_61x47.jpg              baseline, subsampling 4:4:4 (all 1x1)
  jpeg422              jpeg_422_53x39.jpg              baseline, 4:2:2 (Y 2x1)
  jpeg420              jpeg_420_45x33.jpg              baseline, 4:2:0 (Y 2x2)
  jpeg420_oddw         jpeg_420oddw_35x26.jpg          4:2:0, odd width, even height
  jpeg_progressive     jpeg_progressive_57x43.jpg      progressive (SOF2), 4:2:0
  jpeg_progressive444  jpeg_progressive444_43x29.jpg   progressive, 4:4:4
  jpeg_restart_blocks  jpeg_restart_blocks_51x37.jpg   baseline 4:2:0, DRI every 3 MCUs (restart_marker_blocks=3)
  jpeg_restart_rows    jpeg_restart_rows_51x37.jpg     baseline 4:4:4, DRI every MCU row (restart_marker_rows=1)
  jpeg_progressive_restart jpeg_progressive_restart_51x37.jpg  progressive 4:2:0 with DRI every 2 MCUs
  jpeg_gray            jpeg_gray_37x29.jpg             1 component (PIL mode L)
  jpeg_cmyk            jpeg_cmyk_41x31.jpg             4 components, Adobe APP14 transform 0 (Pillow writer: inverted CMYK)
  jpeg_cmyk_noadobe    jpeg_cmyk_noadobe_41x31.jpg     the same stream with the APP14 segment cut out
  jpeg_ycck            jpeg_ycck_41x31.jpg             4 components, Adobe transform 2 = YCCK, Y/K 2x2 (libjpeg-turbo via simplejpeg)
  jpeg_exif3           jpeg_exif3_24x16.jpg            EXIF orientation 3 (rotate 180), exif_transpose applied
  jpeg_exif8           jpeg_exif8_24x16.jpg            EXIF orientation 8 (rotate 90 ccw to display), exif_transpose applied
  jpeg_1x1             jpeg_1x1_1x1.jpg                1x1, 4:2:0
  jpeg_7x5             jpeg_7x5_7x5.jpg                7x5, 4:2:0
Every case has NAME.src and one or more NAME.s{S}.resized; jpeg444, jpeg420 and jpeg_cmyk also a .tensor.
Pillow reads every 4-component JPEG as raw mode "CMYK;I" (inverted, whatever the APP14 marker says)
and converts CMYK to RGB as R = round((255 - C) * (255 - K) / 255) (same for G/M, B/Y).
Extra needs for the JPEG corpus: scikit-image (the photos) and simplejpeg (the YCCK file).
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


# ---- JPEG corpus (own random state: everything above keeps its bytes) ----
import skimage, skimage.data, simplejpeg, safetensors

rj = np.random.RandomState(2024)
CHELSEA, COFFEE = skimage.data.chelsea(), skimage.data.coffee()


def photo(src, box, w, h, sigma=6.0):
    """A crop of a photo, downscaled to w x h, plus noise (so chroma varies from pixel to pixel)."""
    im = Image.fromarray(src).crop(box).resize((w, h), Image.LANCZOS)
    a = np.asarray(im, dtype=np.float64) + rj.normal(0, sigma, (h, w, 3))
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


for sub, (w, h), box, s in [("444", (61, 47), (60, 20, 360, 251), 29),
                            ("422", (53, 39), (100, 0, 424, 238), 29),
                            ("420", (45, 33), (150, 60, 450, 280), 21)]:
    f = f"jpeg_{sub}_{w}x{h}.jpg"
    Image.fromarray(photo(CHELSEA, box, w, h)).save(f, quality=88, subsampling={"444": 0, "422": 1, "420": 2}[sub])
    case(f"jpeg{sub}", f, [s, 60], tensor_sizes=[s] if sub != "422" else [])
Image.fromarray(photo(COFFEE, (0, 0, 560, 416), 35, 26)).save("jpeg_420oddw_35x26.jpg", quality=85, subsampling=2)
case("jpeg420_oddw", "jpeg_420oddw_35x26.jpg", [19])

Image.fromarray(photo(COFFEE, (40, 30, 600, 452), 57, 43)).save("jpeg_progressive_57x43.jpg", quality=85, progressive=True)
case("jpeg_progressive", "jpeg_progressive_57x43.jpg", [29])
Image.fromarray(photo(CHELSEA, (0, 0, 451, 300), 43, 29)).save("jpeg_progressive444_43x29.jpg", quality=92, progressive=True, subsampling=0)
case("jpeg_progressive444", "jpeg_progressive444_43x29.jpg", [21])

rst = photo(COFFEE, (200, 50, 600, 340), 51, 37)
Image.fromarray(rst).save("jpeg_restart_blocks_51x37.jpg", quality=85, subsampling=2, restart_marker_blocks=3)
case("jpeg_restart_blocks", "jpeg_restart_blocks_51x37.jpg", [29])
Image.fromarray(rst).save("jpeg_restart_rows_51x37.jpg", quality=85, subsampling=0, restart_marker_rows=1)
case("jpeg_restart_rows", "jpeg_restart_rows_51x37.jpg", [29])
Image.fromarray(rst).save("jpeg_progressive_restart_51x37.jpg", quality=85, subsampling=2, progressive=True, restart_marker_blocks=2)
case("jpeg_progressive_restart", "jpeg_progressive_restart_51x37.jpg", [29])

gray = np.asarray(Image.fromarray(photo(CHELSEA, (120, 40, 420, 275), 37, 29)).convert("L"))
Image.fromarray(gray, "L").save("jpeg_gray_37x29.jpg", quality=90)
case("jpeg_gray", "jpeg_gray_37x29.jpg", [21])

# CMYK: ink values with a real K channel (K = 0.8 * (255 - max(R, G, B)), C/M/Y the rest).
rgb = photo(CHELSEA, (30, 10, 440, 300), 41, 31, sigma=10.0).astype(np.float64)
k = 0.8 * (255 - rgb.max(-1, keepdims=True))
cmy = np.clip((255 - rgb - k) * 255 / np.maximum(255 - k, 1), 0, 255)
ink = np.clip(np.round(np.concatenate([cmy, k], -1)), 0, 255).astype(np.uint8)
Image.fromarray(ink, "CMYK").save("jpeg_cmyk_41x31.jpg", quality=90)   # Pillow stores 255 - ink, APP14 transform 0
case("jpeg_cmyk", "jpeg_cmyk_41x31.jpg", [21], tensor_sizes=[21])
data = open("jpeg_cmyk_41x31.jpg", "rb").read()
i = data.index(b"\xff\xee")                                             # APP14 "Adobe" segment
assert data[i + 4:i + 9] == b"Adobe"
open("jpeg_cmyk_noadobe_41x31.jpg", "wb").write(data[:i] + data[i + 2 + struct.unpack(">H", data[i + 2:i + 4])[0]:])
case("jpeg_cmyk_noadobe", "jpeg_cmyk_noadobe_41x31.jpg", [21])
# YCCK: libjpeg-turbo (TurboJPEG) converts CMYK input to YCCK; given 255 - ink, the decoded CMYK
# (before Pillow's inversion) is 255 - ink again, like the Adobe file above.
open("jpeg_ycck_41x31.jpg", "wb").write(simplejpeg.encode_jpeg(255 - ink, 90, "CMYK", "420"))
case("jpeg_ycck", "jpeg_ycck_41x31.jpg", [21])

for o, box in ((3, (300, 40, 540, 200)), (8, (60, 150, 300, 310))):
    ex = Image.Exif(); ex[0x0112] = o
    Image.fromarray(photo(COFFEE, box, 24, 16)).save(f"jpeg_exif{o}_24x16.jpg", quality=92, exif=ex.tobytes())
    case(f"jpeg_exif{o}", f"jpeg_exif{o}_24x16.jpg", [11], exif_transpose=True)

Image.fromarray(photo(CHELSEA, (200, 100, 210, 110), 1, 1)).save("jpeg_1x1_1x1.jpg", quality=90)
case("jpeg_1x1", "jpeg_1x1_1x1.jpg", [1, 3])
Image.fromarray(photo(COFFEE, (300, 200, 370, 250), 7, 5)).save("jpeg_7x5_7x5.jpg", quality=90)
case("jpeg_7x5", "jpeg_7x5_7x5.jpg", [3, 9])

save_file(out, "expected.safetensors", metadata={
    "pillow": PIL.__version__, "torchvision": torchvision.__version__, "torch": torch.__version__,
    "numpy": np.__version__, "safetensors": safetensors.__version__, "scikit-image": skimage.__version__,
    "simplejpeg": simplejpeg.__version__})
print("wrote", len(out), "arrays")
