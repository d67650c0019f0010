#!/usr/bin/env python3
"""Writes PIL reference crops for image preprocessing into Tests/QuantOpsTests/Fixtures/imagefolder/.

The transform is torchvision's standard evaluation transform on PIL images:
  Image.open(path).convert("RGB")
  Resize(S) with bilinear interpolation   (PIL's antialiased Image.resize((w, h), Image.BILINEAR))
  CenterCrop(C)

Resize to an int S (torchvision.transforms.functional._compute_resized_output_size, max_size None):
  short, long = (w, h) if w <= h else (h, w)
  new_short, new_long = S, int(S * long / short)          # float division, then truncation
  (new_w, new_h) = (new_short, new_long) if w <= h else (new_long, new_short)
and torchvision returns the image unchanged when (new_h, new_w) == (h, w) (PIL's resize to the
same size is a copy too, so the result is the same either way).

Center crop (torchvision.transforms.functional.center_crop, image at least C on both sides):
  top = int(round((new_h - C) / 2.0)); left = int(round((new_w - C) / 2.0))
Python's round() rounds halves to even: round(9.5) = 10, round(4.5) = 4.

Outputs (sha256 lines are `PATH WxH SHA256`, WxH the size after the resize, SHA256 of the CxCx3
uint8 HWC crop bytes):
  crops.sha256.txt    S = 256, C = 224, JPEGs of ../shared/data/imagenet-sample (paths relative
                      to it): the first 20 class folders (sorted), then the first 5 images
                      (sorted) whose shorter side is not 256, so that the resize does something
                      (every one of the first 20 already has a shorter side of 256). Its first
                      line is `decoded PATH WxH SHA256` for the first image: SHA-256 of the
                      full-size decoded RGB bytes (HWC), to tell a decoder mismatch from a resize
                      mismatch.
  decoded.sha256.txt  the same full-size decoded SHA-256 for every JPEG in crops.sha256.txt
                      (WxH the decoded size).
  first-crop.npy      the first image's crop, uint8 [224, 224, 3] HWC.
  *.png, png-crops.sha256.txt
                      small generated PNGs (RGB, grayscale + alpha, 4-bit palette) and their
                      crops with S = 32, C = 24 (paths relative to this folder).

Deterministic. Needs numpy and Pillow (pip install numpy pillow).
Usage: python3 scripts/make-imagefolder-reference.py [IMAGENET_SAMPLE_DIR]
  (default ../shared/data/imagenet-sample next to the repository, or $QSH_DATA/imagenet-sample)
"""

import hashlib
import os
import sys

import numpy as np
from PIL import Image, features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "QuantOpsTests", "Fixtures", "imagefolder")


def sample_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    data = os.environ.get("QSH_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))
    return os.path.join(data, "imagenet-sample")


def resized_size(w, h, size):
    """torchvision's output size for Resize(int size), as (width, height)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def eval_transform(img, size, crop):
    """Returns (resized (w, h), crop as uint8 HWC array) for a PIL image."""
    img = img.convert("RGB")
    w, h = img.size
    new_w, new_h = resized_size(w, h, size)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BILINEAR)
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    out = np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    assert out.shape == (crop, crop, 3)
    return (new_w, new_h), out


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def decoded(path):
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return f"{rgb.shape[1]}x{rgb.shape[0]}", sha(rgb)


def jpeg_list(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    paths = []
    for c in classes:
        files = sorted(f for f in os.listdir(os.path.join(root, c)) if f.lower().endswith((".jpeg", ".jpg")))
        paths += [f"{c}/{f}" for f in files]
    first = paths[:20]
    other = []
    for p in paths[20:]:
        with Image.open(os.path.join(root, p)) as img:
            if min(img.size) != 256:
                other.append(p)
        if len(other) == 5:
            break
    return first + other


def make_pngs():
    """Three small PNGs with deterministic content; returns their file names."""
    rng = np.random.default_rng(20240601)
    # RGB 40x30: gradients plus noise.
    y, x = np.mgrid[0:30, 0:40]
    rgb = np.stack([x * 6, y * 8, (x + y) * 3], -1) + rng.integers(0, 40, (30, 40, 3))
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(os.path.join(OUT, "rgb-40x30.png"))
    # Grayscale + alpha 17x23 (W x H); convert("RGB") drops the alpha channel.
    y, x = np.mgrid[0:23, 0:17]
    gray = np.clip(x * 13 + y * 5 + rng.integers(0, 30, (23, 17)), 0, 255).astype(np.uint8)
    alpha = rng.integers(0, 256, (23, 17)).astype(np.uint8)
    Image.fromarray(np.stack([gray, alpha], -1), "LA").save(os.path.join(OUT, "la-17x23.png"))
    # Palette 97x61 (W x H), 16 colours, written with 4 bits per pixel; shrinks with S = 32.
    y, x = np.mgrid[0:61, 0:97]
    index = ((x // 7 + y // 5) + rng.integers(0, 3, (61, 97))) % 16
    img = Image.fromarray(index.astype(np.uint8), "P")
    palette = rng.integers(0, 256, (16, 3)).astype(np.uint8)
    img.putpalette(palette.flatten().tolist())
    img.save(os.path.join(OUT, "palette-97x61.png"), bits=4)
    return ["rgb-40x30.png", "la-17x23.png", "palette-97x61.png"]


def main():
    root = sample_dir()
    os.makedirs(OUT, exist_ok=True)
    paths = jpeg_list(root)

    lines, decoded_lines = [], []
    for i, p in enumerate(paths):
        full = os.path.join(root, p)
        size, dsha = decoded(full)
        decoded_lines.append(f"{p} {size} {dsha}")
        if i == 0:
            lines.append(f"decoded {p} {size} {dsha}")
        with Image.open(full) as img:
            (w, h), crop = eval_transform(img, 256, 224)
        lines.append(f"{p} {w}x{h} {sha(crop)}")
        if i == 0:
            np.save(os.path.join(OUT, "first-crop.npy"), crop)
    with open(os.path.join(OUT, "crops.sha256.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(OUT, "decoded.sha256.txt"), "w") as f:
        f.write("\n".join(decoded_lines) + "\n")

    png_lines = []
    for name in make_pngs():
        with Image.open(os.path.join(OUT, name)) as img:
            mode = img.mode
            (w, h), crop = eval_transform(img, 32, 24)
        png_lines.append(f"{name} {w}x{h} {sha(crop)}")
        print(f"{name}: mode {mode}")
    with open(os.path.join(OUT, "png-crops.sha256.txt"), "w") as f:
        f.write("\n".join(png_lines) + "\n")

    print("\n".join(lines + png_lines))
    print(f"Pillow {Image.__version__}, JPEG: libjpeg-turbo {features.check_feature('libjpeg_turbo')} "
          f"version {features.version('jpg')}, zlib {features.version('zlib')}")


if __name__ == "__main__":
    main()
