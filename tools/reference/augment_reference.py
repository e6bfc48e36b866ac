#!/usr/bin/env python3
"""Write the Pillow / torchvision golden fixtures of the ccssl-augment tests.

Takes a dozen CIFAR-10 training images (records with exact official pixels), applies each
image op of the augmenter at fixed magnitudes with Pillow and torchvision, and writes

  stages/augment/tests/fixtures/pillow_ops.json    library versions, images, cases
  stages/augment/tests/fixtures/pillow_ops.bin.gz  input images, then every case's outputs

All images are 8-bit RGB in HWC order. Each case runs on three of the twelve images (two for the
RandAugment pool cases), rotating through them so every image is used, to keep the fixture small.

Usage (from the repository root, with Pillow, torchvision and numpy installed):
  python tools/reference/augment_reference.py [--cifar ../shared/data/cifar10]
"""

import argparse
import gzip
import json
import pathlib
import sys

import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms.functional as F
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from torchvision.transforms import InterpolationMode

# Records 0-3999 of data_batch_1.bin carry the exact official pixels.
RECORDS = [0, 1, 2, 3, 7, 42, 100, 512, 1000, 1999, 2500, 3999]
IMAGES_PER_CASE = 3
RECORD_BYTES = 3073
SIDE = 32


def f32(x):
    """Round to float32, as torchvision's sampled factors are."""
    return float(np.float32(x))


def load_images(cifar_dir):
    data = (cifar_dir / "data_batch_1.bin").read_bytes()
    images = []
    for record in RECORDS:
        start = record * RECORD_BYTES + 1
        planes = np.frombuffer(data[start : start + RECORD_BYTES - 1], dtype=np.uint8)
        images.append(Image.fromarray(planes.reshape(3, SIDE, SIDE).transpose(1, 2, 0).copy(), "RGB"))
    return images


def cutout(img, centre_x, centre_y, size):
    """FixMatch's CutoutAbs with its random centre fixed."""
    w, h = img.size
    x0 = int(max(0, centre_x - size / 2.0))
    y0 = int(max(0, centre_y - size / 2.0))
    x1 = int(min(w, x0 + size))
    y1 = int(min(h, y0 + size))
    out = img.copy()
    ImageDraw.Draw(out).rectangle((x0, y0, x1, y1), (127, 127, 127))
    return out


def weak(img, flip, pad, top, left):
    """RandomHorizontalFlip then RandomCrop(reflect padding) with the draws fixed."""
    if flip:
        img = F.hflip(img)
    img = F.pad(img, pad, padding_mode="reflect")
    return F.crop(img, top, left, SIDE, SIDE)


def jitter(img, order, b, c, s, h):
    """ColorJitter.forward with its drawn order and factors fixed."""
    steps = {
        0: lambda im: F.adjust_brightness(im, b),
        1: lambda im: F.adjust_contrast(im, c),
        2: lambda im: F.adjust_saturation(im, s),
        3: lambda im: F.adjust_hue(im, h),
    }
    for step in order:
        img = steps[step](img)
    return img


def pool_op(img, name, level, negate):
    """Apply one op of FixMatch's RandAugment pool at an integer level, its random sign fixed.

    The mappings restate `fixmatch_augment_pool` of the official CCSSL code
    (TencentYoutuResearch/Classification-SemiCLS, dataset/transforms/randaugment.py):
    float parameter `level * max / 10 + bias`, integer parameter `int(level * max / 10) + bias`.
    """
    sign = -1 if negate else 1
    factor = level * 0.9 / 10 + 0.05
    shear = sign * (level * 0.3 / 10)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return enhancer(name.lower())(img).enhance(factor)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Identity":
        return img
    if name == "Posterize":
        return ImageOps.posterize(img, int(level * 4 / 10) + 4)
    if name == "Rotate":
        return img.rotate(sign * int(level * 30 / 10))
    if name == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, shear, 0, 0, 1, 0))
    if name == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, shear, 1, 0))
    if name == "Solarize":
        return ImageOps.solarize(img, 256 - int(level * 256 / 10))
    if name == "TranslateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, int(shear * img.size[0]), 0, 1, 0))
    if name == "TranslateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, int(shear * img.size[1])))
    raise ValueError(name)


POOL = ["AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "Identity", "Posterize",
        "Rotate", "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateX", "TranslateY"]


def enhancer(name):
    return {
        "brightness": ImageEnhance.Brightness,
        "color": ImageEnhance.Color,
        "contrast": ImageEnhance.Contrast,
        "sharpness": ImageEnhance.Sharpness,
    }[name]


def build_cases():
    """(name, op, params, function of a PIL image) for every case."""
    cases = [
        ("autocontrast", "autocontrast", {}, ImageOps.autocontrast),
        ("equalize", "equalize", {}, ImageOps.equalize),
        ("invert", "invert", {}, ImageOps.invert),
        ("grayscale", "grayscale", {}, lambda im: F.rgb_to_grayscale(im, num_output_channels=3)),
        ("flip", "flip", {}, F.hflip),
    ]
    for bits in [1, 4, 6, 7]:
        cases.append((f"posterize_{bits}", "posterize", {"bits": bits}, lambda im, b=bits: ImageOps.posterize(im, b)))
    for threshold in [26, 128, 205, 256]:
        cases.append((f"solarize_{threshold}", "solarize", {"threshold": threshold},
                      lambda im, t=threshold: ImageOps.solarize(im, t)))
    for op in ["brightness", "color", "contrast", "sharpness"]:
        for factor in [0.0, 0.14, 0.59, 0.95, 1.4, 1.9]:
            factor = f32(factor)
            cases.append((f"{op}_{factor:.2f}", op, {"factor": factor},
                          lambda im, o=op, fa=factor: enhancer(o)(im).enhance(fa)))
    for degrees in [3, -9, 15, 27, -30, 90, 180]:
        cases.append((f"rotate_{degrees}", "rotate", {"degrees": degrees}, lambda im, d=degrees: im.rotate(d)))
    for axis, matrix in [("x", lambda v: (1, v, 0, 0, 1, 0)), ("y", lambda v: (1, 0, 0, v, 1, 0))]:
        for factor in [0.03, -0.15, 0.27]:
            cases.append((f"shear_{axis}_{factor}", f"shear_{axis}", {"factor": factor},
                          lambda im, m=matrix(factor): im.transform(im.size, Image.AFFINE, m)))
    for axis, matrix in [("x", lambda p: (1, 0, p, 0, 1, 0)), ("y", lambda p: (1, 0, 0, 0, 1, p))]:
        for pixels in [-3, 9]:
            cases.append((f"translate_{axis}_{pixels}", f"translate_{axis}", {"pixels": pixels},
                          lambda im, m=matrix(pixels): im.transform(im.size, Image.AFFINE, m)))
    for cx, cy in [(0.0, 0.0), (31.9, 31.9), (15.5, 7.2), (3.7, 28.1)]:
        cases.append((f"cutout_{cx}_{cy}", "cutout", {"centre_x": cx, "centre_y": cy, "size": 16},
                      lambda im, x=cx, y=cy: cutout(im, x, y, 16)))
    for flip, top, left in [(False, 0, 0), (True, 8, 3), (True, 4, 4), (False, 1, 7)]:
        cases.append((f"weak_{flip}_{top}_{left}", "flip_pad_crop",
                      {"flip": flip, "pad": 4, "top": top, "left": left},
                      lambda im, a=(flip, 4, top, left): weak(im, *a)))
    for w, h in [(20, 20), (48, 40), (13, 29)]:
        cases.append((f"resize_{w}x{h}", "resize", {"width": w, "height": h},
                      lambda im, s=[h, w]: F.resize(im, s, InterpolationMode.BILINEAR)))
    for top, left, h, w in [(5, 3, 10, 14), (0, 0, 32, 20), (10, 8, 6, 6), (2, 1, 30, 25), (0, 12, 19, 19)]:
        cases.append((f"resized_crop_{top}_{left}_{h}_{w}", "resized_crop",
                      {"top": top, "left": left, "height": h, "width": w},
                      lambda im, a=(top, left, h, w): F.resized_crop(im, *a, [SIDE, SIDE],
                                                                     InterpolationMode.BILINEAR)))
    for hue in [-0.5, -0.1, -0.03, 0.0, 0.05, 0.1, 0.37]:
        hue = f32(hue)
        cases.append((f"hue_{hue:.2f}", "hue", {"factor": hue}, lambda im, h=hue: F.adjust_hue(im, h)))
    for order, b, c, s, h in [
        ([0, 1, 2, 3], 0.6, 1.4, 1.1, 0.1),
        ([3, 2, 1, 0], 1.25, 0.7, 0.63, -0.08),
        ([1, 3, 0, 2], 0.93, 1.17, 1.39, 0.02),
    ]:
        b, c, s, h = f32(b), f32(c), f32(s), f32(h)
        cases.append((f"jitter_{''.join(map(str, order))}", "jitter",
                      {"order": order, "brightness": b, "contrast": c, "saturation": s, "hue": h},
                      lambda im, a=(order, b, c, s, h): jitter(im, *a)))
    for index, name in enumerate(POOL):
        for level in [1, 5, 9]:
            negate = (index + level // 4) % 2 == 1
            cases.append((f"pool_{name}_{level}{'_neg' if negate else ''}", "pool",
                          {"index": index, "name": name, "level": level, "negate": negate},
                          lambda im, a=(name, level, negate): pool_op(im, *a)))
    return cases


def main():
    root = pathlib.Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=pathlib.Path, default=root / ".." / "shared" / "data" / "cifar10",
                        help="directory containing data_batch_1.bin")
    parser.add_argument("--out", type=pathlib.Path, default=root / "stages" / "augment" / "tests" / "fixtures")
    args = parser.parse_args()

    versions = {"pillow": PIL.__version__, "torchvision": torchvision.__version__,
                "torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    print("versions:", versions)
    images = load_images(args.cifar)
    blob = bytearray()
    for img in images:
        blob += np.asarray(img, dtype=np.uint8).tobytes()

    manifest_cases = []
    cases = build_cases()
    for k, (name, op, params, fn) in enumerate(cases):
        per_case = 2 if op == "pool" else IMAGES_PER_CASE
        chosen = [(k * IMAGES_PER_CASE + j) % len(images) for j in range(per_case)]
        outputs = [np.asarray(fn(images[i]).convert("RGB"), dtype=np.uint8) for i in chosen]
        out_h, out_w = outputs[0].shape[:2]
        manifest_cases.append({"name": name, "op": op, "params": params, "images": chosen,
                               "out_width": out_w, "out_height": out_h, "offset": len(blob)})
        for out in outputs:
            blob += out.tobytes()

    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": "tools/reference/augment_reference.py",
        "versions": versions,
        "source": "CIFAR-10 data_batch_1.bin, records with exact official pixels",
        "records": RECORDS,
        "width": SIDE,
        "height": SIDE,
        "cases": manifest_cases,
    }
    # One case per line keeps the manifest short and its diffs readable.
    text = json.dumps({k: v for k, v in manifest.items() if k != "cases"}, indent=1)[:-2]
    text += ',\n "cases": [\n' + ",\n".join("  " + json.dumps(c) for c in manifest_cases) + "\n ]\n}\n"
    json.loads(text)
    (args.out / "pillow_ops.json").write_text(text)
    with open(args.out / "pillow_ops.bin.gz", "wb") as raw:
        # mtime 0 keeps the file byte-identical across runs.
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
            gz.write(bytes(blob))
    print(f"wrote {len(cases)} cases, {len(blob)} bytes before compression, to {args.out}")


if __name__ == "__main__":
    main()
