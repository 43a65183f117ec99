"""Regenerate tests/fixtures/tf_golden.npz with TensorFlow (run once in a venv that has tensorflow-cpu).

The golden outputs pin our TF-free reimplementation of the OpenVLA image chain (bench/core/models/image_chain.py, chained by bench/core/models/processor.py).
Usage: python scripts/make_tf_golden.py tests/fixtures/libero_frames.npz tests/fixtures/tf_golden.npz
"""

import sys

import numpy as np
import tensorflow as tf


def chain(img: np.ndarray) -> dict[str, np.ndarray]:
    rot = img[::-1, ::-1]
    jpeg = tf.io.decode_image(tf.image.encode_jpeg(rot), expand_animations=False)
    resized = tf.image.resize(jpeg, (224, 224), method="lanczos3", antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    x = tf.image.convert_image_dtype(resized, tf.float32)
    side = tf.clip_by_value(tf.sqrt(0.9), 0, 1)
    off = (1 - side) / 2
    box = tf.reshape(tf.stack([off, off, off + side, off + side]), (1, 4))
    crop = tf.image.crop_and_resize(x[None], box, [0], (224, 224))[0]
    crop = tf.image.convert_image_dtype(tf.clip_by_value(crop, 0, 1), tf.uint8, saturate=True)
    return {"jpeg": jpeg.numpy(), "resized": resized.numpy(), "cropped": crop.numpy()}


if __name__ == "__main__":
    frames = np.load(sys.argv[1])["frames"]
    outs = [chain(f) for f in frames]
    np.savez_compressed(sys.argv[2], **{k: np.stack([o[k] for o in outs]) for k in outs[0]}, tf_version=tf.__version__)
