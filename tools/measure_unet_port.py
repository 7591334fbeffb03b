"""Measure the PyTorch U-Net port that archs/unet.arch's "padded" variant follows
(milesial/Pytorch-UNet): parameters, BN buffers and conv MACs, and check that archc's
module computes the same map with the port's weights.

The port is not a dependency of archc (and its GPL code is not copied into archc). Run once
with a checkout of it:

    git clone https://github.com/milesial/Pytorch-UNet /tmp/unetport
    python tools/measure_unet_port.py /tmp/unetport [COMMIT] > tests/data/unet_port_counts.json

(COMMIT names the port's commit when the path is an exported tree, not a git checkout.)

It builds `unet.UNet(n_channels=3, n_classes=2, bilinear=...)`, counts as
tools/measure_torchvision.py does (MACs at 256x256, batch 1), loads the port's
state_dict into archc's `unet -D variant="padded"` (renamed, strict) and records the
largest difference of the two outputs on a random input.
"""
from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys

import torch

RES = 256


def macs(model, resolution: int) -> int:
    total = [0]

    def conv(m, inputs, out):
        kh, kw = m.kernel_size
        if isinstance(m, torch.nn.ConvTranspose2d):
            total[0] += kh * kw * (m.out_channels // m.groups) * inputs[0].numel()
        else:
            total[0] += kh * kw * (m.in_channels // m.groups) * out.numel()
    hooks = [m.register_forward_hook(conv) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, resolution, resolution))
    for h in hooks:
        h.remove()
    return total[0]


def rename(key: str) -> str:
    """The port's key -> archc's (archs/std/unet.arch labels)."""
    inner = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2"}
    key = re.sub(r"\.maxpool_conv\.1\.", ".conv.", key)
    key = re.sub(r"double_conv\.(\d)\.", lambda m: f"{inner[m[1]]}.", key)
    return key.replace("outc.conv.", "outc.")


def main(path: str, commit: str | None = None) -> None:
    sys.path.insert(0, path)
    from unet import UNet  # the port's model

    import archc
    commit = commit or subprocess.run(["git", "-C", path, "rev-parse", "HEAD"],
                                      capture_output=True, text=True).stdout.strip() or "unknown"
    out = {"how": "milesial/Pytorch-UNet's unet.UNet(n_channels=3, n_classes=2, bilinear=...): "
                  "params, BN buffers, conv/transposed-conv MACs at 256x256 (forward hooks), "
                  "and the largest |difference| of its output and archc's module with its "
                  "weights (tools/measure_unet_port.py)",
           "source": f"https://github.com/milesial/Pytorch-UNet at {commit}",
           "torch": torch.__version__, "date": datetime.date.today().isoformat(),
           "resolution": RES, "models": {}}
    for bilinear in (False, True):
        torch.manual_seed(0)
        ref = UNet(n_channels=3, n_classes=2, bilinear=bilinear).eval()
        with torch.no_grad():
            for m in ref.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        ours = archc.build_module("unet", variant="padded", bilinear=bilinear,
                                  resolution=64).eval()
        ours.load_state_dict({rename(k): v for k, v in ref.state_dict().items()}, strict=True)
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            diff = (ours(x) - ref(x)).abs().max().item()
        out["models"]["bilinear" if bilinear else "transposed"] = {
            "params": sum(p.numel() for p in ref.parameters()),
            "buffers": sum(b.numel() for n, b in ref.named_buffers()
                           if not n.endswith("num_batches_tracked")),
            "macs": macs(ref, RES), "max_abs_difference_at_64": diff}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
