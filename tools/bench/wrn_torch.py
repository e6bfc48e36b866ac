"""Time forward + backward of the reference WideResNet in PyTorch on the CPU.

The counterpart of `cargo run --release -p ccssl-nn --example wrn_bench`: same model (pre-activation
WideResNet with LeakyReLU 0.1, BatchNorm momentum 0.001 and the projection head
fc1 -> LeakyReLU -> fc2 -> L2 normalise), same batch of random 32x32 images, same random output
gradients, same thread count. Prints the library versions, then `images/s <value>` last.

Usage: python tools/bench/wrn_torch.py [--threads 2] [--batch 160] [--depth 28] [--widen 2]
       [--iters 5] [--warmup 1]
"""

import argparse
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride, activate_before_residual):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=0.001)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.001)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.abr = activate_before_residual

    def forward(self, x):
        act = F.leaky_relu(self.bn1(x), 0.1)
        if self.equal:
            out = self.conv2(F.leaky_relu(self.bn2(self.conv1(act)), 0.1))
            return x + out
        source = act if self.abr else x
        out = self.conv2(F.leaky_relu(self.bn2(self.conv1(source)), 0.1))
        return self.convShortcut(source) + out


class WideResNet(nn.Module):
    def __init__(self, depth, widen, num_classes=10, proj_dim=64):
        super().__init__()
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        layers = []
        for stage in range(3):
            for i in range(n):
                cin = ch[stage] if i == 0 else ch[stage + 1]
                stride = (1 if stage == 0 else 2) if i == 0 else 1
                layers.append(Block(cin, ch[stage + 1], stride, stage == 0))
        self.blocks = nn.Sequential(*layers)
        self.bn1 = nn.BatchNorm2d(ch[3], momentum=0.001)
        self.fc = nn.Linear(ch[3], num_classes)
        self.fc1 = nn.Linear(ch[3], ch[3])
        self.fc2 = nn.Linear(ch[3], proj_dim)

    def forward(self, x):
        feat = F.leaky_relu(self.bn1(self.blocks(self.conv1(x))), 0.1)
        feat = F.adaptive_avg_pool2d(feat, 1).flatten(1)
        proj = self.fc2(F.leaky_relu(self.fc1(feat), 0.1))
        return self.fc(feat), F.normalize(proj, dim=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in [("threads", 2), ("batch", 160), ("depth", 28), ("widen", 2), ("iters", 5), ("warmup", 1)]:
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    torch.manual_seed(0)
    model = WideResNet(args.depth, args.widen).train()
    x = torch.randn(args.batch, 3, 32, 32)
    d_logits = torch.randn(args.batch, 10)
    d_proj = torch.randn(args.batch, 64)

    def step():
        model.zero_grad(set_to_none=False)
        logits, proj = model(x)
        torch.autograd.backward([logits, proj], [d_logits, d_proj])

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    mean = sum(times) / len(times)
    print(f"WRN-{args.depth}-{args.widen} batch {args.batch} threads {args.threads}: "
          f"mean {mean * 1e3:.1f} ms, best {min(times) * 1e3:.1f} ms per forward+backward")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"images/s {args.batch / mean:.1f}")


if __name__ == "__main__":
    main()
