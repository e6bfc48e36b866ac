#!/usr/bin/env python3
"""Throughput of the torchvision / Pillow equivalent of the ccssl unlabeled transform.

Each image goes through `Image.fromarray` and three views, each converted back to an HWC uint8
array as the Rust augmenter emits them. ToTensor and normalisation are left out on both sides.
- weak: RandomHorizontalFlip, RandomCrop 32 with reflect padding 4;
- strong: weak, then RandAugmentMC(2, 10) over the FixMatch pool and Cutout 16;
- contrast: RandomResizedCrop 32, RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4, 0.1) with
  p 0.8, RandomGrayscale p 0.2.

Usage: augment_bench.py CIFAR_BATCH_FILE [SECONDS]; runs until the process has used SECONDS of
CPU time, prints library versions to stderr, then `images_per_cpu_s <value>` and
`images_per_wall_s <value>`.
"""

import random
import sys
import time

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from torchvision import transforms as T


def enhance(cls):
    return lambda img, v: cls(img).enhance(v * 0.9 / 10 + 0.05)


def signed(v):
    return -v if random.random() < 0.5 else v


def affine(img, matrix):
    return img.transform(img.size, Image.AFFINE, matrix)


# The FixMatch pool with its magnitude mappings, level v in 1..9.
POOL = [
    lambda img, v: ImageOps.autocontrast(img),
    enhance(ImageEnhance.Brightness),
    enhance(ImageEnhance.Color),
    enhance(ImageEnhance.Contrast),
    lambda img, v: ImageOps.equalize(img),
    lambda img, v: img,
    lambda img, v: ImageOps.posterize(img, int(v * 4 / 10) + 4),
    lambda img, v: img.rotate(signed(int(v * 30 / 10))),
    enhance(ImageEnhance.Sharpness),
    lambda img, v: affine(img, (1, signed(v * 0.3 / 10), 0, 0, 1, 0)),
    lambda img, v: affine(img, (1, 0, 0, signed(v * 0.3 / 10), 1, 0)),
    lambda img, v: ImageOps.solarize(img, 256 - int(v * 256 / 10)),
    lambda img, v: affine(img, (1, 0, int(signed(v * 0.3 / 10) * img.size[0]), 0, 1, 0)),
    lambda img, v: affine(img, (1, 0, 0, 0, 1, int(signed(v * 0.3 / 10) * img.size[1]))),
]


def rand_augment_mc(img, n=2, m=10, cutout=16):
    for op in random.choices(POOL, k=n):
        v = np.random.randint(1, m)
        if random.random() < 0.5:
            img = op(img, v)
    w, h = img.size
    x0 = int(max(0, np.random.uniform(0, w) - cutout / 2.0))
    y0 = int(max(0, np.random.uniform(0, h) - cutout / 2.0))
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, int(min(w, x0 + cutout)), int(min(h, y0 + cutout))), (127, 127, 127))
    return img


def main():
    path = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    torch.set_num_threads(1)
    print(f"pillow {PIL.__version__} torchvision {torchvision.__version__} torch {torch.__version__} "
          f"numpy {np.__version__}", file=sys.stderr)
    raw = np.fromfile(path, dtype=np.uint8)
    records = min(raw.size // 3073, 4000)
    images = raw[: records * 3073].reshape(records, 3073)[:, 1:].reshape(records, 3, 32, 32).transpose(0, 2, 3, 1)
    images = np.ascontiguousarray(images)

    weak = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4, padding_mode="reflect")])
    strong = T.Compose([weak, rand_augment_mc])
    contrast = T.Compose([
        T.RandomResizedCrop(32),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ])

    done = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    while time.process_time() - cpu_start < seconds:
        for _ in range(64):
            img = Image.fromarray(images[done % records])
            views = [np.asarray(t(img)) for t in (weak, strong, contrast)]
            done += 1
    print(f"images_per_cpu_s {done / (time.process_time() - cpu_start):.1f}")
    print(f"images_per_wall_s {done / (time.perf_counter() - start):.1f}")


if __name__ == "__main__":
    main()
