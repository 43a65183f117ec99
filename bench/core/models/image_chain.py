"""OpenVLA's evaluation image kernels, reimplemented without TensorFlow.

Reference (openvla ``experiments/robot``): [LIBERO's 180° rotation, ``envs/libero.py:upright``] → TF JPEG
round trip → ``tf.image.resize`` (lanczos3, antialias) to 224 with round+clip → optional TF
``crop_and_resize`` center crop of 0.9 area (bilinear) back to 224. Each function follows the corresponding
TF kernel; the measured deviation from TF on golden frames is pinned in ``tests/test_preprocessing.py`` and
documented in docs/protocol.md. ``bench/core/models/processor.py`` chains them.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

CROP_AREA = 0.9
JPEG_QUALITY = 95  # tf.image.encode_jpeg default (4:2:0 chroma subsampling, as PIL's default)


def jpeg_round_trip(img: np.ndarray) -> np.ndarray:
    """TF encode_jpeg/decode_image: libjpeg ISLOW encode (PIL), and TF's default IFAST DCT on decode."""
    import simplejpeg  # imported here: a pack's GPU trainer uses this module's crop geometry without it

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return simplejpeg.decode_jpeg(buf.getvalue(), colorspace="RGB", fastdct=True, fastupsample=False)


def _lanczos3(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    pi = np.float32(3.14159265359)  # TF's constant
    with np.errstate(divide="ignore", invalid="ignore"):
        w = 3 * np.sin(pi * x) * np.sin(pi * x / 3) / (pi * pi * x * x)
    return np.where(x <= 1e-3, 1.0, np.where(x > 3, 0.0, w)).astype(np.float32)


@lru_cache(maxsize=8)
def _lanczos_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Dense [n_out, n_in] weights of TF's scale_and_translate (lanczos3, antialias, translate 0)."""
    scale = n_out / n_in
    kernel_scale = max(1.0 / scale, 1.0)
    radius = 3 * kernel_scale
    weights = np.zeros((n_out, n_in), dtype=np.float32)
    for x in range(n_out):
        sample = (x + 0.5) / scale
        start = max(int(np.ceil(sample - radius - 0.5)), 0)
        end = min(int(np.floor(sample + radius - 0.5)), n_in - 1) + 1
        src = np.arange(start, end, dtype=np.float32)
        w = _lanczos3((src + 0.5 - sample) / kernel_scale)
        total = w.sum()
        weights[x, start:end] = w / total if abs(total) > 1e-30 else w
    return weights


def resize_lanczos3(img: np.ndarray, size: int) -> np.ndarray:
    """tf.image.resize(img, (size, size), 'lanczos3', antialias=True), then round and clip to uint8."""
    h, w = img.shape[:2]
    rows, cols = _lanczos_matrix(h, size), _lanczos_matrix(w, size)
    out = (rows @ img.reshape(h, -1).astype(np.float32)).reshape(size, w, -1)  # resample rows
    out = np.matmul(cols, out)  # then columns: [size, w] @ [size, w, c] per output row
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def center_crop(img: np.ndarray, area: float = CROP_AREA) -> np.ndarray:
    """tf.image.crop_and_resize of the centered box with side sqrt(area), bilinear, same output size."""
    h, w = img.shape[:2]
    side = float(np.clip(np.sqrt(area), 0.0, 1.0))
    off = (1.0 - side) / 2.0
    x = img.astype(np.float32) / 255.0  # convert_image_dtype(float32)

    def coords(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = off * (n - 1) + np.arange(n, dtype=np.float32) * np.float32(side * (n - 1) / (n - 1))
        lo = np.floor(pos).astype(int)
        hi = np.minimum(np.ceil(pos).astype(int), n - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = coords(h)
    x0, x1, fx = coords(w)
    top = x[y0][:, x0] + (x[y0][:, x1] - x[y0][:, x0]) * fx[None, :, None]
    bottom = x[y1][:, x0] + (x[y1][:, x1] - x[y1][:, x0]) * fx[None, :, None]
    out = top + (bottom - top) * fy[:, None, None]
    out = np.clip(out, 0.0, 1.0)
    return np.clip(out * 255.5, 0, 255).astype(np.uint8)  # convert_image_dtype(uint8, saturate=True)
