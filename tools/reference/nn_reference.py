#!/usr/bin/env python3
"""Write the PyTorch reference fixtures that the ccssl-nn and ccssl-step tests compare against.

Run from the repository root with the project's Python environment:

    python tools/reference/nn_reference.py

It writes stages/nn/tests/fixtures/{ops,loss,sgd,wrn,step,fixmatch_step}.safetensors, plus the initial model
states wrn_weights.safetensors and step_weights.safetensors (exactly the PyTorch state_dict, so
the Rust model loads them by name). Every computation runs
in float64 on float32-representable inputs and is stored as float32, so the fixtures are
closer to the exact values than a float32 PyTorch run would be. Each file records the torch
and numpy versions and this script's path in its safetensors metadata.

The WideResNet below mirrors `models/wideresnet.py` of TencentYoutuResearch/Classification-SemiCLS
in parameter names, block wiring and projection head. The contrastive loss mirrors its
`loss/soft_supconloss.py` (diagonal score weight 1) and the option handling of its
`trainer/fixmatch_ccssl.py`.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "stages", "nn", "tests", "fixtures")
SLOPE = 0.1
BN_MOMENTUM = 0.001
BN_EPS = 1e-5
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


def versions():
    return {
        "generator": "tools/reference/nn_reference.py",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def write_safetensors(path, tensors, metadata):
    """Write a safetensors file (8-byte little-endian header size, JSON header, raw data)."""
    dtypes = {np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("uint8"): "U8"}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        value = tensors[name]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            value = value.float() if value.is_floating_point() else value
            value = value.numpy()
        array = np.asarray(value).copy(order="C")  # ascontiguousarray would make 0-d arrays 1-d
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        blob = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": dtypes[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)
    print(f"wrote {path}: {len(tensors)} tensors, {8 + len(encoded) + offset} bytes")


def f32_randn(generator, *shape, scale=1.0):
    """Normal values rounded to float32, returned as float64 for exact double arithmetic."""
    return (torch.randn(*shape, generator=generator) * scale).float().double()


def grads_of(output, inputs, generator):
    """Backpropagate a fixed random upstream gradient; return (upstream, [grad of each input])."""
    upstream = f32_randn(generator, *output.shape)
    grads = torch.autograd.grad(output, inputs, upstream, allow_unused=True)
    return upstream, [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


# ---------------------------------------------------------------- per-op fixtures


def conv_case(t, g, name, in_ch, out_ch, kernel, stride, padding, size):
    x = f32_randn(g, 2, in_ch, size, size).requires_grad_()
    w = f32_randn(g, out_ch, in_ch, kernel, kernel, scale=0.3).requires_grad_()
    y = F.conv2d(x, w, stride=stride, padding=padding)
    dy, (dx, dw) = grads_of(y, [x, w], g)
    t.update({f"{name}.input": x, f"{name}.weight": w, f"{name}.output": y,
              f"{name}.d_output": dy, f"{name}.d_input": dx, f"{name}.d_weight": dw})
    return {f"{name}.stride": stride, f"{name}.padding": padding}


def batchnorm_case(t, g, name, leaky):
    x = (f32_randn(g, 4, 3, 5, 5, scale=2.0) + 0.5).requires_grad_()
    w = (f32_randn(g, 3, scale=0.5) + 1.0).requires_grad_()
    b = f32_randn(g, 3, scale=0.5).requires_grad_()
    running_mean = f32_randn(g, 3, scale=0.1)
    running_var = f32_randn(g, 3, scale=0.1).abs() + 0.9
    t[f"{name}.running_mean"] = running_mean.clone()
    t[f"{name}.running_var"] = running_var.clone()
    y = F.batch_norm(x, running_mean, running_var, w, b, True, BN_MOMENTUM, BN_EPS)
    if leaky:
        y = F.leaky_relu(y, SLOPE)
    dy, (dx, dw, db) = grads_of(y, [x, w, b], g)
    t.update({f"{name}.input": x, f"{name}.weight": w, f"{name}.bias": b, f"{name}.output": y,
              f"{name}.d_output": dy, f"{name}.d_input": dx, f"{name}.d_weight": dw,
              f"{name}.d_bias": db, f"{name}.running_mean_after": running_mean,
              f"{name}.running_var_after": running_var})
    eval_y = F.batch_norm(x, running_mean, running_var, w, b, False, BN_MOMENTUM, BN_EPS)
    if leaky:
        eval_y = F.leaky_relu(eval_y, SLOPE)
    t[f"{name}.eval_output"] = eval_y


def op_fixtures():
    g = torch.Generator().manual_seed(1)
    t, meta = {}, versions()
    meta.update(conv_case(t, g, "conv3x3_s1", 4, 5, 3, 1, 1, 6))
    meta.update(conv_case(t, g, "conv3x3_s2", 4, 5, 3, 2, 1, 7))
    meta.update(conv_case(t, g, "conv1x1_s2", 4, 5, 1, 2, 0, 6))
    batchnorm_case(t, g, "bn", leaky=False)
    batchnorm_case(t, g, "bn_leaky", leaky=True)

    x = f32_randn(g, 4, 6).requires_grad_()
    w = f32_randn(g, 5, 6, scale=0.4).requires_grad_()
    b = f32_randn(g, 5, scale=0.1).requires_grad_()
    y = F.linear(x, w, b)
    dy, (dx, dw, db) = grads_of(y, [x, w, b], g)
    t.update({"linear.input": x, "linear.weight": w, "linear.bias": b, "linear.output": y,
              "linear.d_output": dy, "linear.d_input": dx, "linear.d_weight": dw,
              "linear.d_bias": db})

    x = f32_randn(g, 3, 7).requires_grad_()
    y = F.leaky_relu(x, SLOPE)
    dy, (dx,) = grads_of(y, [x], g)
    t.update({"leaky.input": x, "leaky.output": y, "leaky.d_output": dy, "leaky.d_input": dx})

    x = f32_randn(g, 2, 3, 4, 4).requires_grad_()
    y = F.adaptive_avg_pool2d(x, 1).flatten(1)
    dy, (dx,) = grads_of(y, [x], g)
    t.update({"pool.input": x, "pool.output": y, "pool.d_output": dy, "pool.d_input": dx})

    x = f32_randn(g, 4, 8).requires_grad_()
    y = x / x.pow(2).sum(1, keepdim=True).pow(0.5)
    dy, (dx,) = grads_of(y, [x], g)
    t.update({"l2norm.input": x, "l2norm.output": y, "l2norm.d_output": dy,
              "l2norm.d_input": dx})

    meta.update({"leaky_slope": SLOPE, "bn_momentum": BN_MOMENTUM, "bn_eps": BN_EPS})
    write_safetensors(os.path.join(OUT_DIR, "ops.safetensors"), t, meta)


# ---------------------------------------------------------------- losses


def soft_supcon(features, max_probs, labels, temperature, base_temperature, select=None):
    """Per-anchor soft SupCon loss, shape [views, n]; features are [n, views, dim]."""
    n, views = features.shape[0], features.shape[1]
    same = (labels.view(-1, 1) == labels.view(1, -1)).to(features.dtype)
    score = max_probs.view(-1, 1) * max_probs.view(1, -1)
    score = score.clone()
    score.fill_diagonal_(1.0)
    weight = same * score
    if select is not None:
        weight = weight * select
    anchors = torch.cat(torch.unbind(features, dim=1), dim=0)
    sim = anchors @ anchors.T / temperature
    sim = sim - sim.max(dim=1, keepdim=True).values.detach()
    not_self = 1.0 - torch.eye(views * n, dtype=sim.dtype)
    weight = weight.repeat(views, views) * not_self
    log_prob = sim - torch.log((torch.exp(sim) * not_self).sum(1, keepdim=True))
    mean_log_prob = (weight * log_prob).sum(1) / weight.sum(1)
    return (-(temperature / base_temperature) * mean_log_prob).view(views, n)


def left_out_select(max_probs, threshold):
    """Pairs of distinct samples count only when both reach the threshold; i == j always."""
    confident = max_probs >= threshold
    select = (confident.view(-1, 1) & confident.view(1, -1)).to(max_probs.dtype)
    return torch.maximum(select, torch.eye(len(max_probs), dtype=select.dtype))


def contrastive_loss(features, max_probs, labels, anchors, threshold, temperature=0.07):
    """The contrastive term as the CCSSL trainer computes it for each anchor option."""
    if anchors == "left_out":
        select = left_out_select(max_probs, threshold)
        return soft_supcon(features, max_probs, labels, temperature, 0.07, select).mean()
    per_anchor = soft_supcon(features, max_probs, labels, temperature, 0.07)
    if anchors == "threshold":
        return (per_anchor * (max_probs >= threshold).to(per_anchor.dtype)).mean()
    return per_anchor.mean()


def loss_fixtures():
    g = torch.Generator().manual_seed(2)
    t, meta = {}, versions()

    logits = f32_randn(g, 6, 5, scale=2.0).requires_grad_()
    labels = torch.randint(0, 5, (6,), generator=g)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    ce = F.cross_entropy(logits, labels)
    (d_ce,) = torch.autograd.grad(ce, logits)
    masked = (F.cross_entropy(logits, labels, reduction="none") * mask).mean()
    (d_masked,) = torch.autograd.grad(masked, logits)
    probs = torch.softmax(logits.detach(), dim=-1)
    max_probs, pseudo = probs.max(dim=-1)
    t.update({"ce.logits": logits, "ce.labels": labels, "ce.mask": mask,
              "ce.loss": ce.view(1), "ce.d_logits": d_ce, "ce.masked_loss": masked.view(1),
              "ce.masked_d_logits": d_masked, "ce.softmax": probs, "ce.max_probs": max_probs,
              "ce.pseudo_labels": pseudo})

    n, dim = 8, 16
    raw = f32_randn(g, n, 2, dim)
    features = (raw / raw.norm(dim=-1, keepdim=True)).float().double().requires_grad_()
    con_labels = torch.randint(0, 3, (n,), generator=g)
    con_probs = (torch.rand(n, generator=g) * 0.5 + 0.5).float().double()
    threshold = 0.8
    t.update({"supcon.features": features, "supcon.labels": con_labels,
              "supcon.max_probs": con_probs})
    for anchors in ["all", "threshold", "left_out"]:
        value = contrastive_loss(features, con_probs, con_labels, anchors, threshold)
        (grad,) = torch.autograd.grad(value, features)
        t[f"supcon.{anchors}.loss"] = value.view(1)
        t[f"supcon.{anchors}.d_features"] = grad
    meta.update({"supcon_threshold": threshold, "supcon_temperature": 0.07,
                 "supcon_base_temperature": 0.07})
    write_safetensors(os.path.join(OUT_DIR, "loss.safetensors"), t, meta)


# ---------------------------------------------------------------- SGD


def no_decay(name):
    """Parameter groups of the official optimizer builder: no weight decay on bias and BN."""
    return "bias" in name or "bn" in name


def sgd_fixtures():
    g = torch.Generator().manual_seed(3)
    shapes = {"conv.weight": (4, 3, 3, 3), "bn.weight": (4,), "bn.bias": (4,),
              "fc.weight": (3, 4), "fc.bias": (3,)}
    params = {k: nn.Parameter(f32_randn(g, *s)) for k, s in shapes.items()}
    lr, momentum, weight_decay = 0.1, 0.9, 0.01
    groups = [
        {"params": [p for k, p in params.items() if not no_decay(k)], "weight_decay": weight_decay},
        {"params": [p for k, p in params.items() if no_decay(k)], "weight_decay": 0.0},
    ]
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    t, meta = {}, versions()
    for k, p in params.items():
        t[f"initial.{k}"] = p.detach().clone()
    for step in (1, 2):
        for k, p in params.items():
            p.grad = f32_randn(g, *p.shape)
            t[f"grad{step}.{k}"] = p.grad.clone()
        opt.step()
        for k, p in params.items():
            t[f"after{step}.{k}"] = p.detach().clone()
    meta.update({"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": True})
    write_safetensors(os.path.join(OUT_DIR, "sgd.safetensors"), t, meta)


# ---------------------------------------------------------------- WideResNet


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, activate_before_residual):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=BN_MOMENTUM)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.activate_before_residual = activate_before_residual
        if not self.equal:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        act = F.leaky_relu(self.bn1(x), SLOPE)
        if not self.equal and self.activate_before_residual:
            # The activated input feeds both the convolution and the shortcut.
            x = act
        # With unequal widths and no pre-activation the block convolves the raw input, so bn1
        # only updates its running statistics and gets no gradient (as the reference model).
        out = self.conv1(act if self.equal else x)
        out = self.conv2(F.leaky_relu(self.bn2(out), SLOPE))
        return (x if self.equal else self.convShortcut(x)) + out


class NetworkBlock(nn.Module):
    def __init__(self, count, in_planes, out_planes, stride, activate_before_residual=False):
        super().__init__()
        self.layer = nn.Sequential(*[
            BasicBlock(in_planes if i == 0 else out_planes, out_planes,
                       stride if i == 0 else 1, activate_before_residual)
            for i in range(count)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, widen, num_classes=10, proj_dim=64):
        super().__init__()
        channels = [16, 16 * widen, 32 * widen, 64 * widen]
        count = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, channels[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(count, channels[0], channels[1], 1, True)
        self.block2 = NetworkBlock(count, channels[1], channels[2], 2)
        self.block3 = NetworkBlock(count, channels[2], channels[3], 2)
        self.bn1 = nn.BatchNorm2d(channels[3], momentum=BN_MOMENTUM)
        self.fc = nn.Linear(channels[3], num_classes)
        self.fc1 = nn.Linear(channels[3], channels[3])
        self.fc2 = nn.Linear(channels[3], proj_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        feat = self.block3(self.block2(self.block1(self.conv1(x))))
        feat = F.adaptive_avg_pool2d(F.leaky_relu(self.bn1(feat), SLOPE), 1).flatten(1)
        proj = self.fc2(F.leaky_relu(self.fc1(feat), SLOPE))
        proj = proj / proj.pow(2).sum(1, keepdim=True).pow(0.5)
        return self.fc(feat), proj


def state_tensors(model, prefix=""):
    """Parameters and BatchNorm buffers by PyTorch name (num_batches_tracked left out)."""
    return {prefix + k: v.detach().clone() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def write_weights(model, name):
    """Write the whole state_dict (num_batches_tracked included) as a loadable checkpoint."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(OUT_DIR, name), state, versions())


def wrn_fixtures():
    torch.manual_seed(4)
    model = WideResNet(10, 2)
    write_weights(model, "wrn_weights.safetensors")
    t, meta = {}, versions()
    model = model.double().train()
    g = torch.Generator().manual_seed(5)
    x = f32_randn(g, 8, 3, 32, 32)
    logits, proj = model(x)
    d_logits, d_proj = f32_randn(g, *logits.shape), f32_randn(g, *proj.shape)
    names = [k for k, _ in model.named_parameters()]
    grads = torch.autograd.grad([logits, proj], list(model.parameters()), [d_logits, d_proj],
                                allow_unused=True)
    unused = [k for k, gr in zip(names, grads) if gr is None]
    for k, p, gr in zip(names, model.parameters(), grads):
        t[f"grad.{k}"] = torch.zeros_like(p) if gr is None else gr
    t.update({"input": x, "logits": logits, "projections": proj, "d_logits": d_logits,
              "d_projections": d_proj})
    t.update({k: v for k, v in state_tensors(model, "after.").items() if "running" in k})
    model.eval()
    with torch.no_grad():
        eval_logits, eval_proj = model(x)
    t.update({"eval.logits": eval_logits, "eval.projections": eval_proj})
    meta.update({"depth": 10, "widen": 2, "num_classes": 10, "proj_dim": 64,
                 "parameters_without_gradient": ",".join(unused)})
    print("parameters without gradient:", unused)
    write_safetensors(os.path.join(OUT_DIR, "wrn.safetensors"), t, meta)


# ---------------------------------------------------------------- one CCSSL step


def to_input(images, mean, std):
    """u8 NHWC images to float64 NCHW, divided by 255 and optionally normalised."""
    x = torch.from_numpy(images).double().permute(0, 3, 1, 2) / 255.0
    if mean is not None:
        x = (x - torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)) / torch.tensor(
            std, dtype=x.dtype).view(1, 3, 1, 1)
    return x


def cosine_factor(step, total_steps):
    return max(0.0, math.cos(math.pi * 7.0 * step / (16.0 * total_steps)))


def median_split(confidences):
    """A threshold between the two middle values, so half of an even count reaches it."""
    ordered = confidences.sort(descending=True).values
    half = len(ordered) // 2
    return float((ordered[half - 1] + ordered[half]) / 2)


def step_fixtures():
    torch.manual_seed(6)
    model = WideResNet(10, 1)
    write_weights(model, "step_weights.safetensors")
    t, meta = {}, versions()
    model = model.double().train()
    rng = np.random.default_rng(7)
    batch, mu, size = 4, 2, 32
    n = batch * mu
    images = {name: rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
              for name, count in [("labeled_weak", batch), ("unlabeled_weak", n),
                                  ("unlabeled_strong", n), ("unlabeled_contrast", n)]}
    labels = torch.from_numpy(rng.integers(0, 10, batch)).long()
    true_labels = torch.from_numpy(rng.integers(0, 10, n)).long()
    inputs = torch.cat([to_input(images["labeled_weak"], CIFAR10_MEAN, CIFAR10_STD),
                        to_input(images["unlabeled_weak"], CIFAR10_MEAN, CIFAR10_STD),
                        to_input(images["unlabeled_strong"], CIFAR10_MEAN, CIFAR10_STD),
                        to_input(images["unlabeled_contrast"], None, None)])

    # A fresh model is far from confident, so the confidence threshold is placed at the median
    # weak-view confidence: half the batch passes and Lu is not trivially 0.
    initial_state = {k: v.clone() for k, v in model.state_dict().items()}
    probe = WideResNet(10, 1).double()
    probe.load_state_dict(initial_state)
    with torch.no_grad():
        probe_probs = torch.softmax(probe(inputs)[0][batch:batch + n], dim=-1).max(-1).values
    threshold = median_split(probe_probs)

    lr, momentum, weight_decay, step, total_steps = 0.03, 0.9, 0.001, 3, 10
    lambda_u, lambda_c = 1.0, 1.0
    groups = [
        {"params": [p for k, p in model.named_parameters() if not no_decay(k)],
         "weight_decay": weight_decay},
        {"params": [p for k, p in model.named_parameters() if no_decay(k)], "weight_decay": 0.0},
    ]
    opt = torch.optim.SGD(groups, lr=lr * cosine_factor(step, total_steps), momentum=momentum,
                          nesterov=True)

    logits, proj = model(inputs)
    logits_x = logits[:batch]
    logits_w, logits_s, _ = logits[batch:].chunk(3)
    _, proj_s, proj_c = proj[batch:].chunk(3)
    lx = F.cross_entropy(logits_x, labels)
    probs = torch.softmax(logits_w.detach(), dim=-1)
    max_probs, pseudo = probs.max(dim=-1)
    mask = (max_probs >= threshold).double()
    lu = (F.cross_entropy(logits_s, pseudo, reduction="none") * mask).mean()
    features = torch.stack([proj_s, proj_c], dim=1)
    lc = contrastive_loss(features, max_probs, pseudo, "all", None)
    loss = lx + lambda_u * lu + lambda_c * lc
    opt.zero_grad()
    loss.backward()
    opt.step()

    pseudo_acc = float(((pseudo == true_labels).double() * mask).sum() / max(mask.sum(), 1.0))
    for k, v in images.items():
        t[f"images.{k}"] = v
    t.update({"labels": labels, "unlabeled_true_labels": true_labels,
              "loss": loss.view(1), "loss_x": lx.view(1), "loss_u": lu.view(1),
              "loss_c": lc.view(1), "mask_ratio": mask.mean().view(1),
              "pseudo_label_accuracy": torch.tensor([pseudo_acc]),
              "pseudo_labels": pseudo, "max_probs": max_probs})
    t.update(state_tensors(model, "after."))
    meta.update({"depth": 10, "widen": 1, "num_classes": 10, "proj_dim": 64, "batch": batch,
                 "mu": mu, "threshold": threshold, "lr": lr, "momentum": momentum,
                 "weight_decay": weight_decay, "step": step, "total_steps": total_steps,
                 "lambda_u": lambda_u, "lambda_c": lambda_c, "temperature": 0.07,
                 "mean": ",".join(map(str, CIFAR10_MEAN)), "std": ",".join(map(str, CIFAR10_STD)),
                 "contrast_normalised": False})
    print(f"step: loss {loss.item():.6f} lx {lx.item():.6f} lu {lu.item():.6f} "
          f"lc {lc.item():.6f} mask {mask.mean().item():.3f} threshold {threshold:.6f}")
    write_safetensors(os.path.join(OUT_DIR, "step.safetensors"), t, meta)
    fixmatch_fixture(initial_state, inputs[:batch + 2 * n], labels, meta)


# Parameters whose FixMatch update is stored: the stem, one convolution per stage, the final
# BatchNorm, the classifier and the projection head (whose gradient is None without Lc, so
# PyTorch's SGD leaves it untouched). All BatchNorm running statistics are stored too.
FIXMATCH_STORED = ["conv1.weight", "block1.layer.0.conv1.weight", "block2.layer.0.conv2.weight",
                   "bn1.weight", "bn1.bias", "fc.weight", "fc.bias", "fc1.weight", "fc1.bias",
                   "fc2.weight", "fc2.bias"]


def fixmatch_fixture(initial_state, inputs, labels, meta):
    """The same step as plain FixMatch: no contrast view in the batch and no Lc term."""
    model = WideResNet(10, 1).double().train()
    model.load_state_dict(initial_state)
    batch = len(labels)
    n = (len(inputs) - batch) // 2
    # Without the contrast rows the BatchNorm statistics and so the confidences change, so the
    # median split is taken again.
    probe = WideResNet(10, 1).double()
    probe.load_state_dict(initial_state)
    with torch.no_grad():
        weak = probe(inputs)[0][batch:batch + n]
    threshold = median_split(torch.softmax(weak, dim=-1).max(-1).values)
    groups = [
        {"params": [p for k, p in model.named_parameters() if not no_decay(k)],
         "weight_decay": meta["weight_decay"]},
        {"params": [p for k, p in model.named_parameters() if no_decay(k)], "weight_decay": 0.0},
    ]
    lr = meta["lr"] * cosine_factor(meta["step"], meta["total_steps"])
    opt = torch.optim.SGD(groups, lr=lr, momentum=meta["momentum"], nesterov=True)
    logits, _ = model(inputs)
    logits_w, logits_s = logits[batch:].chunk(2)
    lx = F.cross_entropy(logits[:batch], labels)
    max_probs, pseudo = torch.softmax(logits_w.detach(), dim=-1).max(dim=-1)
    mask = (max_probs >= threshold).double()
    lu = (F.cross_entropy(logits_s, pseudo, reduction="none") * mask).mean()
    loss = lx + meta["lambda_u"] * lu
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = state_tensors(model, "after.")
    t = {k: v for k, v in after.items()
         if "running" in k or k.removeprefix("after.") in FIXMATCH_STORED}
    t.update({"loss": loss.view(1), "loss_x": lx.view(1), "loss_u": lu.view(1),
              "mask_ratio": mask.mean().view(1)})
    print(f"fixmatch: loss {loss.item():.6f} lx {lx.item():.6f} lu {lu.item():.6f} "
          f"mask {mask.mean().item():.3f}")
    write_safetensors(os.path.join(OUT_DIR, "fixmatch_step.safetensors"), t,
                      dict(meta, lambda_c=0.0, threshold=threshold))


def main():
    torch.set_num_threads(1)
    print("torch", torch.__version__, "numpy", np.__version__)
    os.makedirs(OUT_DIR, exist_ok=True)
    op_fixtures()
    loss_fixtures()
    sgd_fixtures()
    wrn_fixtures()
    step_fixtures()


if __name__ == "__main__":
    main()
