"""write_images.py - small PNG and JPEG files for tests/cli_predict.sh, written with the Python
standard library only (Debian's python3 may lack PIL, and the tests must not depend on it).

    python3 write_images.py OUT_DIR

Writes, with their pixels known here:
  rgb.png   RGB 8-bit 200x300 gradient/checker pattern        (lossless: used as a reference)
  gray.png  grey 8-bit 260x180 pattern                        (the decoder expands it to RGB)
  rgb.jpg   RGB 240x320 baseline JPEG, colour mosaic of 8x8 blocks
  gray.jpg  grey 120x200 baseline JPEG mosaic
  corrupt.jpg   a JPEG start marker followed by garbage
  text.png      a text file named .png
and pixels_<name>.npy (uint8 H x W x C) for the two PNGs, so a reference preprocessing can be
computed from exactly the pixels the files hold.

PNG: signature, IHDR, one zlib IDAT with filter type 0 on every row, IEND (PNG spec, ISO 15948).
JPEG: the smallest valid baseline (SOF0) encoder: quantisation table of ones, one DC Huffman
table with twelve 4-bit codes (categories 0-11) and one AC table holding only EOB, so every 8x8
block is coded by its DC coefficient alone: a flat block of value v has DC = 8 * (v - 128)
(ITU T.81, A.3.3 with the level shift). The image is therefore a mosaic of flat 8x8 blocks, which
libjpeg decodes exactly up to the YCbCr->RGB rounding.
"""
import os
import struct
import sys
import zlib

import numpy as np


def png(path, px):
    """px: uint8 (H, W) grey or (H, W, 3) RGB."""
    h, w = px.shape[:2]
    color = 0 if px.ndim == 2 else 2
    raw = b"".join(b"\x00" + px[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


class _Bits:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value, length):
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)  # byte stuffing (T.81 F.1.2.3)
                self.acc = self.n = 0

    def flush(self):
        while self.n:
            self.put(1, 1)  # pad with one-bits
        return bytes(self.out)


def jpeg(path, blocks):
    """blocks: uint8 (BH, BW) grey or (BH, BW, 3) RGB, one value per 8x8 block."""
    blocks = blocks.astype(np.float64)
    if blocks.ndim == 2:
        comps = [blocks]
    else:  # JFIF RGB -> YCbCr
        r, g, b = blocks[..., 0], blocks[..., 1], blocks[..., 2]
        comps = [0.299 * r + 0.587 * g + 0.114 * b,
                 128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                 128 + 0.5 * r - 0.418688 * g - 0.081312 * b]
    comps = [np.clip(np.rint(c), 0, 255).astype(int) for c in comps]
    bh, bw = comps[0].shape
    nc = len(comps)

    def seg(marker, data):
        return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data

    out = b"\xff\xd8"
    out += seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    out += seg(0xDB, b"\x00" + bytes([1] * 64))                  # table 0: all ones
    out += seg(0xC0, struct.pack(">BHHB", 8, bh * 8, bw * 8, nc) +
               b"".join(bytes([i + 1, 0x11, 0]) for i in range(nc)))
    dc_counts = [0, 0, 0, 12] + [0] * 12                          # twelve codes of length 4
    out += seg(0xC4, b"\x00" + bytes(dc_counts) + bytes(range(12)))
    out += seg(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")   # AC: EOB only, code "0"
    out += seg(0xDA, bytes([nc]) + b"".join(bytes([i + 1, 0x00]) for i in range(nc)) +
               b"\x00\x3f\x00")
    bits = _Bits()
    pred = [0] * nc
    for y in range(bh):
        for x in range(bw):
            for c in range(nc):
                dc = 8 * (comps[c][y, x] - 128)
                diff = dc - pred[c]
                pred[c] = dc
                cat = 0 if diff == 0 else int(abs(diff)).bit_length()
                bits.put(cat, 4)                      # DC code of category `cat` is cat itself
                if cat:
                    bits.put(diff if diff > 0 else diff + (1 << cat) - 1, cat)
                bits.put(0, 1)                        # EOB
    out += bits.flush() + b"\xff\xd9"
    with open(path, "wb") as f:
        f.write(out)


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    yy, xx = np.mgrid[0:200, 0:300]
    rgb = np.stack([(xx * 255 // 299), (yy * 255 // 199),
                    np.where((xx // 25 + yy // 25) % 2 == 0, 40, 220)], -1).astype(np.uint8)
    png(os.path.join(d, "rgb.png"), rgb)
    np.save(os.path.join(d, "pixels_rgb.npy"), rgb)
    yy, xx = np.mgrid[0:260, 0:180]
    gray = ((xx * 3 + yy * 2) % 256).astype(np.uint8)
    png(os.path.join(d, "gray.png"), gray)
    np.save(os.path.join(d, "pixels_gray.npy"), gray[..., None].repeat(3, -1))
    by, bx = np.mgrid[0:30, 0:40]
    jpeg(os.path.join(d, "rgb.jpg"),
         np.stack([bx * 6, by * 8, (bx + by) % 2 * 200 + 20], -1).astype(np.uint8))
    gray_blocks = (bx[:15, :25] * 9 + by[:15, :25] * 5) % 256
    jpeg(os.path.join(d, "gray.jpg"), gray_blocks.astype(np.uint8))
    with open(os.path.join(d, "corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    with open(os.path.join(d, "text.png"), "w") as f:
        f.write("this is not an image\n")


if __name__ == "__main__":
    main()
