"""gen_decode.py - PIL reference for the PNG decoder (src/data/image_decode.c).

Writes OUT_DIR/decode.safetensors (OUT_DIR = argv[1]), read by tests/test_torch_decode.c. Each
case "<name>" stores the bytes of a PNG file, "<name>.png" (U8, 1-D), and the pixels the decoder
must give for it, "<name>.rgb" (U8, H x W x 3). The expected pixels are what torchvision's
ImageFolder loader sees, Image.open(path).convert("RGB"). 16-bit colour keeps the high byte of
each sample (v >> 8), as PIL does. One exception where PIL cannot be the oracle: 16-bit grey,
which PIL opens as mode "I" and whose convert("RGB") clips every sample above 255 to 255; there
the reference is PIL's raw 16-bit samples reduced the same way, v >> 8, replicated to RGB.
No gamma correction (gAMA, cHRM, sRGB are ignored, as PIL ignores them), palettes expanded,
transparency (tRNS, alpha) dropped rather than composited, grey replicated, 1/2/4-bit grey
scaled to 0..255, Adam7 interlacing undone.

Files PIL cannot write (16-bit colour, 2- and 4-bit grey, interlaced, extra chunks) are written
here by hand: signature, IHDR, optional chunks, one zlib IDAT with filter type 0 on every row,
IEND (PNG spec, ISO 15948). Run with /usr/bin/python3; exits 77 without torch or PIL.
"""
import io
import os
import struct
import sys
import warnings
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle import import_torch, out_dir, save  # noqa: E402

torch = import_torch()
try:
    from PIL import Image, PngImagePlugin
except ImportError as e:  # pragma: no cover - depends on the machine
    print("SKIPPED: cannot import PIL (%s)" % e)
    sys.exit(77)

# colour type -> samples per pixel (PNG spec, table 11.1)
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes: (y0, x0, dy, dx)
ADAM7 = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
         (1, 0, 2, 1)]


def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def pack_rows(s, depth):
    """s: (H, W, C) integer samples -> filtered scanlines (filter byte 0) for bit depth depth."""
    out = b""
    for row in s.reshape(s.shape[0], -1):
        if depth == 16:
            line = row.astype(">u2").tobytes()
        elif depth == 8:
            line = row.astype(np.uint8).tobytes()
        else:  # 1/2/4 bits, most significant first, the last byte padded with zeros
            per = 8 // depth
            pad = np.zeros((-len(row)) % per, dtype=np.int64)
            v = np.concatenate([row.astype(np.int64), pad]).reshape(-1, per)
            shifts = depth * np.arange(per - 1, -1, -1)
            line = (v << shifts).sum(1).astype(np.uint8).tobytes()
        out += b"\x00" + line
    return out


def png_bytes(s, depth, ctype, interlace=False, extra=b"", plte=None, trns=None):
    """A PNG of samples s (H, W, C) written by hand; extra chunks go before PLTE and IDAT."""
    h, w, c = s.shape
    assert c == CHANNELS[ctype]
    if interlace:
        raw = b"".join(pack_rows(s[y0::dy, x0::dx], depth) for y0, x0, dy, dx in ADAM7
                       if y0 < h and x0 < w)
    else:
        raw = pack_rows(s, depth)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    out += extra
    if plte is not None:
        out += chunk(b"PLTE", bytes(np.asarray(plte, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    out += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return out


def pil_rgb(data):
    # convert("RGB") of a palette image with tRNS warns that RGBA would keep the transparency.
    warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def scale16(v):
    """PIL's (and libpng's png_set_strip_16) 16 -> 8 bits: the high byte."""
    return (np.asarray(v, dtype=np.int64) >> 8).astype(np.uint8)


def pil_save(im, **kw):
    f = io.BytesIO()
    im.save(f, format="PNG", **kw)
    return f.getvalue()


def main():
    out = out_dir()
    rng = np.random.default_rng(1234)
    cases = {}
    h, w = 13, 11  # odd, so that every Adam7 pass has a ragged edge

    def u8(*shape):
        return rng.integers(0, 256, shape).astype(np.int64)

    # 8-bit grey and RGB, plain: PIL and the decoder already agreed on these.
    g8 = u8(h, w, 1)
    cases["grey8"] = (b := png_bytes(g8, 8, 0), pil_rgb(b))
    rgb8 = u8(h, w, 3)
    cases["rgb8"] = (b := png_bytes(rgb8, 8, 2), pil_rgb(b))

    # 16-bit grey of an 8-bit image saved as uint16 * 257 (PIL writes it), and of random samples.
    ramp = np.arange(256, dtype=np.uint16).reshape(16, 16)
    b = pil_save(Image.fromarray(ramp * 257))
    raw = np.asarray(Image.open(io.BytesIO(b)))  # mode "I": PIL's 16-bit samples
    assert Image.open(io.BytesIO(b)).mode == "I" and raw.max() == 65535
    cases["grey16_x257"] = (b, np.repeat(scale16(raw)[..., None], 3, -1))
    assert (cases["grey16_x257"][1][..., 0] == ramp).all()
    g16 = rng.integers(0, 65536, (h, w, 1))
    b = png_bytes(g16, 16, 0)
    raw = np.asarray(Image.open(io.BytesIO(b)))
    assert (raw == g16[..., 0]).all()
    cases["grey16"] = (b, np.repeat(scale16(raw)[..., None], 3, -1))

    # 16-bit RGB, RGBA and grey+alpha, samples 257 * k and random ones: against PIL.
    for name, ctype in (("rgb16", 2), ("rgba16", 6), ("ga16", 4)):
        c = CHANNELS[ctype]
        k = u8(h, w, c)
        b = png_bytes(k * 257, 16, ctype)
        cases[name + "_x257"] = (b, pil_rgb(b))
        v = rng.integers(0, 65536, (h, w, c))
        v[0, :4, 0] = [32767, 32768, 255, 256]  # either side of a high-byte step
        b = png_bytes(v, 16, ctype)
        want = scale16(v[..., :3] if c >= 3 else np.repeat(v[..., :1], 3, -1))
        assert (want == pil_rgb(b)).all()
        cases[name] = (b, pil_rgb(b))

    # gAMA 1.0 on 8-bit data: libpng's simplified API applied it (4 -> 38); PIL ignores it.
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 100000))
    b = pil_save(Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)), pnginfo=info)
    assert b"gAMA" in b
    cases["grey8_gama1"] = (b, pil_rgb(b))
    gama = chunk(b"gAMA", struct.pack(">I", 100000))
    cases["rgb8_gama1"] = (b := png_bytes(rgb8, 8, 2, extra=gama), pil_rgb(b))
    # gAMA 1/2.2 with cHRM and sRGB, on RGBA: still no colour management, alpha dropped.
    chrm = chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000,
                                      6000))
    extra = chunk(b"gAMA", struct.pack(">I", 45455)) + chrm + chunk(b"sRGB", b"\x00")
    rgba8 = u8(h, w, 4)
    rgba8[..., 3] = rng.integers(0, 3, (h, w)) * 127  # transparent, half and opaque
    cases["rgba8_srgb"] = (b := png_bytes(rgba8, 8, 6, extra=extra), pil_rgb(b))

    # Palettes with tRNS: 8-bit (written by PIL) and 4-bit, interlaced (by hand).
    pal = rng.integers(0, 256, (256, 3))
    idx = u8(h, w)
    im = Image.fromarray(idx.astype(np.uint8), "P")
    im.putpalette(bytes(pal.astype(np.uint8).reshape(-1)))
    b = pil_save(im, transparency=bytes(range(0, 256, 2)))
    assert b"tRNS" in b
    cases["pal8_trns"] = (b, pil_rgb(b))
    idx4 = rng.integers(0, 16, (h, w, 1))
    b = png_bytes(idx4, 4, 3, interlace=True, plte=pal[:16], trns=bytes([0, 64, 128, 255, 7]))
    cases["pal4_trns_adam7"] = (b, pil_rgb(b))

    # Grey+alpha (PIL writes LA), grey with a tRNS colour key, RGB with one.
    la = u8(h, w, 2)
    cases["ga8"] = (b := pil_save(Image.fromarray(la.astype(np.uint8), "LA")), pil_rgb(b))
    cases["grey8_trns"] = (b := png_bytes(g8, 8, 0, trns=struct.pack(">H", int(g8[0, 0, 0]))),
                           pil_rgb(b))
    key = struct.pack(">3H", *(int(x) for x in rgb8[1, 2]))
    cases["rgb8_trns"] = (b := png_bytes(rgb8, 8, 2, trns=key), pil_rgb(b))

    # 1-bit grey (PIL mode "1": 1 -> 255), 2- and 4-bit grey (scaled by 85 and 17).
    bits = rng.integers(0, 2, (h, w)).astype(bool)
    b = pil_save(Image.fromarray(bits))
    assert b[24] == 1 and b[25] == 0  # IHDR bit depth 1, colour type 0
    cases["grey1"] = (b, pil_rgb(b))
    for depth in (2, 4):
        v = rng.integers(0, 1 << depth, (h, w, 1))
        cases["grey%d" % depth] = (b := png_bytes(v, depth, 0), pil_rgb(b))

    # Adam7: RGB 8-bit, 16-bit grey, 1-bit grey, and images smaller than the 8x8 pass grid.
    cases["rgb8_adam7"] = (b := png_bytes(rgb8, 8, 2, interlace=True), pil_rgb(b))
    b = png_bytes(g16, 16, 0, interlace=True)
    cases["grey16_adam7"] = (b, np.repeat(scale16(np.asarray(Image.open(io.BytesIO(b))))[..., None],
                                          3, -1))
    cases["grey1_adam7"] = (b := png_bytes(bits[..., None], 1, 0, interlace=True), pil_rgb(b))
    cases["rgba8_adam7_3x2"] = (b := png_bytes(rgba8[:3, :2], 8, 6, interlace=True), pil_rgb(b))
    cases["rgb8_adam7_1x1"] = (b := png_bytes(rgb8[:1, :1], 8, 2, interlace=True), pil_rgb(b))

    tensors = {}
    for name, (data, rgb) in cases.items():
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, name
        tensors[name + ".png"] = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
        tensors[name + ".rgb"] = torch.from_numpy(np.array(rgb))
    # Files the decoder must refuse, as PIL does ("<name>.bad", U8, 1-D): a JPEG cut in half (PIL:
    # "image file is truncated"), and a 16x16 JPEG whose header claims 30000x30000 (PIL: a
    # decompression bomb; libjpeg would fill 2.7 GB with grey from its 631 bytes).
    f = io.BytesIO()
    Image.fromarray(u8(64, 64, 3).astype(np.uint8)).save(f, format="JPEG", quality=90)
    jpg = f.getvalue()
    bad = {"jpeg_half": jpg[:len(jpg) // 2]}  # inside the scan data
    sof = jpg.index(b"\xff\xc0")  # baseline SOF0: length(2) precision(1) height(2) width(2)
    big = bytearray(jpg)
    big[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)
    bad["jpeg_30000x30000"] = bytes(big)
    for name, data in bad.items():
        try:
            Image.open(io.BytesIO(data)).convert("RGB")
            raise AssertionError("PIL decoded " + name)
        except (OSError, Image.DecompressionBombError):
            pass
        tensors[name + ".bad"] = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
    save(os.path.join(out, "decode.safetensors"), tensors)
    print("%d PNG cases, %d refused files" % (len(cases), len(bad)))


if __name__ == "__main__":
    main()
