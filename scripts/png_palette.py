#!/usr/bin/env python3
"""Rewrites an RGB(A) PNG as an 8-bit palette PNG (at most 256 colours), in place.

For the committed documentation screenshots (docs/lesson/): the window's flat UI
colours survive exactly; the rarer shades (heat-map gradients, anti-aliased text
edges) map to the nearest of 256 colours: the most common ones, then those farthest
from them. Python's standard library
only (zlib), so it runs wherever the docs are made.
    scripts/png_palette.py FILE.png [FILE.png ...]
"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG file")
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                sys.exit(f"{path}: only 8-bit RGB/RGBA, non-interlaced PNGs are handled")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    pixels = [[tuple(r[x * bpp:x * bpp + 3]) for x in range(w)] for r in rows]
    return w, h, pixels


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_palette_png(path, w, h, pixels):
    counts = {}
    for row in pixels:
        for p in row:
            counts[p] = counts.get(p, 0) + 1
    # The 160 most common colours, then the 96 farthest from those chosen so far (the
    # ends of the heat-map gradients would otherwise fold into their neighbours).
    by_count = [p for p, _ in sorted(counts.items(), key=lambda kv: -kv[1])]
    palette = by_count[:160]
    dist = lambda p, q: sum((a - b) ** 2 for a, b in zip(p, q))
    rest = {p: min(dist(p, q) for q in palette) for p in by_count[160:]}
    while len(palette) < 256 and rest:
        far = max(rest, key=rest.get)
        palette.append(far)
        del rest[far]
        for p in rest:
            rest[p] = min(rest[p], dist(p, far))
    index = {p: i for i, p in enumerate(palette)}
    for p in counts:
        if p not in index:
            index[p] = min(range(len(palette)),
                           key=lambda i: sum((a - b) ** 2 for a, b in zip(p, palette[i])))
    raw = b"".join(b"\x00" + bytes(index[p] for p in row) for row in pixels)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
    out += chunk(b"PLTE", b"".join(bytes(p) for p in palette))
    out += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    open(path, "wb").write(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: png_palette.py FILE.png [FILE.png ...]")
    for f in sys.argv[1:]:
        write_palette_png(f, *read_png(f))
