#!/usr/bin/env python3
"""Makes Tests/ImagesTests/Fixtures/decode: small images in every colour layout the decoders handle, and what
Pillow's Image.open(...).convert("RGB") gives for each (expected.safetensors, U8 [H, W, 3]), so the Swift decoders
are checked against Pillow. Run once with Pillow installed; the outputs are committed."""
import io, json, struct, sys
from pathlib import Path
import numpy as np
from PIL import Image

out = Path(sys.argv[1] if len(sys.argv) > 1 else "Tests/ImagesTests/Fixtures/decode")
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
# A smooth gradient with noise: compresses like a photo, exercises every channel.
y, x = np.mgrid[0:37, 0:53]
base = np.stack([x * 4.5, y * 6.5, (x + y) * 2.8], axis=-1) + rng.normal(0, 8, (37, 53, 3))
rgb = np.clip(base, 0, 255).astype(np.uint8)

files = {}
def save(name, image, **kw):
    image.save(out / name, **kw)
    files[name] = np.asarray(Image.open(out / name).convert("RGB"))

save("rgb.png", Image.fromarray(rgb))
save("gray.png", Image.fromarray(rgb[..., 0]))
save("gray1bit.png", Image.fromarray(rgb[..., 0] > 128))
save("gray_alpha.png", Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]), mode="LA"))
save("rgba.png", Image.fromarray(np.dstack([rgb, rgb[..., :1]]), mode="RGBA"))
save("palette.png", Image.fromarray(rgb).quantize(16))
save("interlaced.png", Image.fromarray(rgb), interlace=1)
rgb16 = (rgb.astype(np.uint16) * 257 + rng.integers(0, 200, rgb.shape)).astype(">u2")
# 16-bit RGB through raw bytes (Pillow has no 16-bit RGB mode to save from).
def png16(path, array):
    import zlib
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[r].tobytes() for r in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(data)
png16(out / "rgb16.png", rgb16)
files["rgb16.png"] = np.asarray(Image.open(out / "rgb16.png").convert("RGB"))
save("rgb.jpg", Image.fromarray(rgb), quality=90)
save("gray.jpg", Image.fromarray(rgb[..., 0]), quality=90)
save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=90)
# EXIF orientation 6 (rotate 90° clockwise to display): Pillow does not apply it on open, so the expectation is
# the stored pixels turned as ImageOps.exif_transpose turns them.
exif = Image.Exif(); exif[0x0112] = 6
Image.fromarray(rgb).save(out / "orientation6.jpg", quality=90, exif=exif.tobytes())
from PIL import ImageOps
files["orientation6.jpg"] = np.asarray(ImageOps.exif_transpose(Image.open(out / "orientation6.jpg")).convert("RGB"))

# Bad files: truncated JPEG and PNG, a text file named .jpg, an empty file.
good = (out / "rgb.jpg").read_bytes(); (out / "truncated.jpg").write_bytes(good[: len(good) // 3])
good = (out / "rgb.png").read_bytes(); (out / "truncated.png").write_bytes(good[: len(good) // 2])
(out / "not-an-image.jpg").write_text("this is not an image\n")
(out / "empty.png").write_bytes(b"")

header, blobs, offset = {}, [], 0
for name, array in sorted(files.items()):
    data = np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    header[name] = {"dtype": "U8", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
    blobs.append(data); offset += len(data)
h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
(out / "expected.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print("wrote", len(files), "images to", out)
