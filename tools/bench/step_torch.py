#!/usr/bin/env python3
"""Time the full CCSSL training step in PyTorch (CPU, float32), the counterpart of
`ccssl bench step`.

The model is the WideResNet with projection head of tools/reference/nn_reference.py (reference
layer names and initialisation). The batch is the same: B labeled weak views plus mu * B
unlabeled images with weak, strong and contrast views, in one concatenated forward. So are the
losses (Lx, masked Lu with threshold 0.95, soft SupCon Lc) and SGD (Nesterov, weight decay
0.001 except on biases and BatchNorm). The u8 -> float normalisation is timed too, as
ours is. Prints the torch version, step times, peak resident memory (VmHWM) and, as the last
line, `images_per_second N`.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from nn_reference import (  # noqa: E402
    CIFAR10_MEAN, CIFAR10_STD, WideResNet, contrastive_loss, no_decay)


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def normalise(images, mean, std):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    if mean is not None:
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x


def train_step(model, opt, views, labels, batch, threshold=0.95):
    inputs = torch.cat([normalise(views[0], CIFAR10_MEAN, CIFAR10_STD),
                        normalise(views[1], CIFAR10_MEAN, CIFAR10_STD),
                        normalise(views[2], CIFAR10_MEAN, CIFAR10_STD),
                        normalise(views[3], None, None)])
    logits, proj = model(inputs)
    logits_w, logits_s, _ = logits[batch:].chunk(3)
    _, proj_s, proj_c = proj[batch:].chunk(3)
    lx = F.cross_entropy(logits[:batch], labels)
    max_probs, pseudo = torch.softmax(logits_w.detach(), dim=-1).max(dim=-1)
    mask = (max_probs >= threshold).float()
    lu = (F.cross_entropy(logits_s, pseudo, reduction="none") * mask).mean()
    lc = contrastive_loss(torch.stack([proj_s, proj_c], dim=1), max_probs, pseudo, "all", None)
    loss = lx + lu + lc
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="wrn-28-2", help="wrn-DEPTH-WIDEN")
    parser.add_argument("--batch", type=int, default=16, help="labeled images per step")
    parser.add_argument("--mu", type=int, default=3, help="unlabeled images per labeled one")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before")
    args = parser.parse_args()

    _, depth, widen = args.model.split("-")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = WideResNet(int(depth), int(widen)).train()
    groups = [
        {"params": [p for k, p in model.named_parameters() if not no_decay(k)],
         "weight_decay": 0.001},
        {"params": [p for k, p in model.named_parameters() if no_decay(k)], "weight_decay": 0.0},
    ]
    opt = torch.optim.SGD(groups, lr=0.03, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(0)
    n = args.batch * args.mu
    views = [rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
             for count in (args.batch, n, n, n)]
    labels = torch.arange(args.batch) % 10
    images_per_step = args.batch * (1 + 3 * args.mu)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}, "
          f"batch {args.batch}, mu {args.mu}: {images_per_step} images/step")
    for _ in range(args.warmup):
        train_step(model, opt, views, labels, args.batch)
    times = []
    started = time.perf_counter()
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = train_step(model, opt, views, labels, args.batch)
        times.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    times.sort()
    print(f"step time: median {times[len(times) // 2]:.3f} s, min {times[0]:.3f} s, "
          f"max {times[-1]:.3f} s; last loss {loss:.4f}")
    print(f"peak_rss_mib {peak_rss_mib():.1f}")
    print(f"images_per_second {images_per_step * args.steps / elapsed:.2f}")


if __name__ == "__main__":
    main()
