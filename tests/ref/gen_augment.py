"""gen_augment.py - PyTorch reference for the data pipeline's bilinear resize and crop.

Writes OUT_DIR/augment.safetensors (OUT_DIR = argv[1]), read by tests/test_torch_augment.c. Each
case "<name>" stores a random uint8 image "<name>.src" (H, W, C), "<name>.params" (I64: ry, rx,
rh, rw, th, tw, oy, ox, oh, ow) and "<name>.out" (oh, ow, C) float32: the region
src[ry:ry+rh, rx:rx+rw] resized to (th, tw) by torch.nn.functional.interpolate(mode='bilinear',
align_corners=False, antialias=False), then the window [oy:oy+oh, ox:ox+ow] of that. This is what
RandomResizedCrop (window = everything) and Resize+CenterCrop (region = everything) do to a float
image in torchvision without antialiasing.

Run with /usr/bin/python3 (Debian's python3-torch); exits 77 when torch is missing.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle import import_torch, out_dir, save  # noqa: E402

torch = import_torch()
F = torch.nn.functional

# name: H, W, C, (ry, rx, rh, rw), (th, tw), (oy, ox, oh, ow)
CASES = {
    "up_3x": (5, 4, 3, (0, 0, 5, 4), (15, 12), (0, 0, 15, 12)),
    "down_exact2": (12, 10, 1, (0, 0, 12, 10), (6, 5), (0, 0, 6, 5)),
    "down_odd": (37, 29, 3, (0, 0, 37, 29), (11, 13), (0, 0, 11, 13)),
    "rrc_region": (40, 60, 3, (7, 11, 23, 31), (24, 20), (0, 0, 24, 20)),
    "rrc_thin": (30, 30, 3, (3, 0, 1, 30), (8, 8), (0, 0, 8, 8)),
    "rrc_up_corner": (50, 40, 3, (41, 30, 9, 10), (32, 32), (0, 0, 32, 32)),
    "centre_crop": (40, 60, 3, (0, 0, 40, 60), (18, 27), (1, 6, 16, 16)),
    "centre_crop_tall": (81, 47, 3, (0, 0, 81, 47), (44, 25), (10, 0, 24, 25)),
}


def main():
    out = out_dir()
    g = torch.Generator().manual_seed(1234)
    tensors = {}
    for name, (h, w, c, (ry, rx, rh, rw), (th, tw), (oy, ox, oh, ow)) in CASES.items():
        src = torch.randint(0, 256, (h, w, c), generator=g, dtype=torch.uint8)
        x = src.permute(2, 0, 1).unsqueeze(0).float()[:, :, ry:ry + rh, rx:rx + rw]
        y = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False,
                          antialias=False)
        y = y[0, :, oy:oy + oh, ox:ox + ow].permute(1, 2, 0).contiguous()
        tensors[name + ".src"] = src
        tensors[name + ".params"] = torch.tensor([ry, rx, rh, rw, th, tw, oy, ox, oh, ow],
                                                 dtype=torch.int64)
        tensors[name + ".out"] = y
    save(os.path.join(out, "augment.safetensors"), tensors)


if __name__ == "__main__":
    main()
