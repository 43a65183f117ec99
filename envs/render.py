"""Pick MuJoCo's headless render backend (EGL on a GPU machine, OSMesa otherwise) before MuJoCo loads."""

from __future__ import annotations

import ctypes.util
import os
import shutil

from bench.core.errors import BenchError

_LIBS = {"egl": ("EGL", "libegl1 (and an NVIDIA driver)"), "osmesa": ("OSMesa", "libosmesa6")}


def _has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidia0")


def configure_render_backend() -> str:
    """Set MUJOCO_GL/PYOPENGL_PLATFORM (unless the user set them) and check the library exists.

    Returns the backend name; raises a one-line BenchError naming the package to install.
    """
    backend = os.environ.get("MUJOCO_GL") or ("egl" if _has_gpu() else "osmesa")
    if backend not in _LIBS:
        raise BenchError(f"MUJOCO_GL={backend!r} is not a headless backend; use 'egl' or 'osmesa'.")
    os.environ["MUJOCO_GL"] = backend
    os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    lib, package = _LIBS[backend]
    if ctypes.util.find_library(lib) is None:
        raise BenchError(f"render backend {backend!r} needs lib{lib}: install it (apt-get install {package.split()[0]}).")
    return backend
