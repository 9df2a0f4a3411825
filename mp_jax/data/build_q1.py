"""Stand-in for the course's ``data1.h5``: 16×16 RGB patches of real photographs.

The course file holds 10240 RGB patches <float>[10240, 3, 16, 16] (channels first,
values in [0, 1]) cut from natural images. This builder cuts the same number from the
public-domain / CC0 photographs that ship inside two installed wheels, so it needs no
network:

* scikit-image (``skimage/data/``): ``astronaut.png`` (NASA, public domain),
  ``chelsea.png`` (CC0, Stefan van der Walt), ``coffee.png`` (CC0, Rachel Michetti),
  ``rocket.jpg`` (SpaceX, public domain), ``camera.png`` (grey, CC0, Lav Varshney;
  copied into the three channels);
* matplotlib (``mpl-data/sample_data/grace_hopper.jpg``): U.S. Navy photograph of
  Grace Hopper, a work of the U.S. federal government (public domain).

The Middlebury stereo pair (``motorcycle_left/right.png``) also ships with
scikit-image but its docstring states no licence (the benchmark asks for citation),
so it is left out.

Recipe: every photo is read as RGB in [0, 1] and resized (Lanczos, antialiased) by
each factor of ``SCALES``; a patch position is drawn uniformly over the valid
positions of one (photo, scale) pair, the same number of patches per scale, and within
a scale per photo in proportion to its number of positions. Small scales matter: at
full resolution most 16×16 windows of these photos are nearly flat, while the course's
patches (cut from small images) hold edges and texture. The whole draw is one
``numpy.random.default_rng(seed)`` stream, so a seed fixes the file bit for bit.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mp_jax.data.h5io import atomic_h5

N_PATCHES = 10240
PATCH = 16
SCALES = (1.0, 0.5, 0.25)


class Photo(NamedTuple):
    package: str  # importable package that ships the file
    relpath: str  # path inside the package
    licence: str
    credit: str


PHOTOS = (
    Photo("skimage", "data/astronaut.png", "public domain", "Eileen Collins, NASA Great Images database"),
    Photo("skimage", "data/chelsea.png", "CC0", "Chelsea the cat, photo Stefan van der Walt"),
    Photo("skimage", "data/coffee.png", "CC0", "coffee cup, photo Rachel Michetti (Pikolo Espresso Bar)"),
    Photo("skimage", "data/rocket.jpg", "public domain", "DSCOVR launch on Falcon 9, SpaceX"),
    Photo("skimage", "data/camera.png", "CC0", "cameraman (grey), photo Lav Varshney"),
    Photo("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "public domain (U.S. government work)",
          "Grace Hopper, U.S. Navy photograph NH 96919-KN"),
)


def photo_path(photo: Photo) -> Path:
    """The installed file of ``photo`` (without importing the package)."""
    spec = importlib.util.find_spec(photo.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"q1 stand-in: package '{photo.package}' is not installed; it ships {photo.relpath}. "
            f"Install it (pip install {'scikit-image' if photo.package == 'skimage' else photo.package})."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / photo.relpath
    if not path.is_file():
        raise FileNotFoundError(
            f"q1 stand-in: expected {path} inside the installed '{photo.package}' wheel, found nothing. "
            f"Reinstall the package (a version that bundles {Path(photo.relpath).name})."
        )
    return path


def load_photo(path: Path) -> np.ndarray:
    """<float32>[H, W, 3] in [0, 1] (grey photos copied into the three channels)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def rescale(img: np.ndarray, factor: float) -> np.ndarray:
    """Resize <float32>[H, W, 3] by ``factor`` with an antialiasing Lanczos filter."""
    if factor == 1.0:
        return img
    from PIL import Image

    h, w = img.shape[:2]
    size = (max(PATCH, round(w * factor)), max(PATCH, round(h * factor)))
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize(size, Image.Resampling.LANCZOS)) for c in range(3)]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


def sample_patches(images: list[np.ndarray], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 16×16 windows, per image in proportion to its number of positions.

    Returns patches <float32>[n, 3, 16, 16] and, per patch, (image index, row, col).
    """
    positions = np.array([(im.shape[0] - PATCH + 1) * (im.shape[1] - PATCH + 1) for im in images], dtype=np.float64)
    which = rng.choice(len(images), size=n, p=positions / positions.sum())
    out = np.empty((n, 3, PATCH, PATCH), np.float32)
    where = np.empty((n, 3), np.int64)
    for i, k in enumerate(which):
        im = images[k]
        r = rng.integers(0, im.shape[0] - PATCH + 1)
        c = rng.integers(0, im.shape[1] - PATCH + 1)
        out[i] = im[r:r + PATCH, c:c + PATCH].transpose(2, 0, 1)
        where[i] = (k, r, c)
    return out, where


def make_patches(seed: int = 0, n: int = N_PATCHES, scales=SCALES) -> tuple[np.ndarray, np.ndarray]:
    """Patches <float32>[n, 3, 16, 16] in [0, 1], shuffled, and their origin <int64>[n, 4]
    (photo, scale index, row, col)."""
    rng = np.random.default_rng(seed)
    photos = [load_photo(photo_path(p)) for p in PHOTOS]
    counts = np.full(len(scales), n // len(scales))
    counts[: n - counts.sum()] += 1
    chunks, origins = [], []
    for s, (factor, count) in enumerate(zip(scales, counts)):
        patches, where = sample_patches([rescale(im, factor) for im in photos], int(count), rng)
        chunks.append(patches)
        origins.append(np.column_stack([where[:, 0], np.full(len(where), s), where[:, 1:]]))
    order = rng.permutation(n)
    return np.concatenate(chunks)[order], np.concatenate(origins)[order]


def recipe(scales=SCALES, n: int = N_PATCHES) -> str:
    return (f"{n} patches of 16x16 RGB, float32 in [0, 1], channels first; photos read as RGB/255 "
            f"(grey copied to 3 channels), resized by factors {list(scales)} (PIL Lanczos); equal patches per "
            f"factor, per photo in proportion to its valid positions, positions uniform; "
            f"numpy default_rng(seed); then shuffled")


def build(out_dir, *, force: bool = False, seed: int = 0) -> Path:
    """Write ``out_dir/data1.h5`` (``data`` <float32>[10240, 3, 16, 16]) with provenance
    attributes; refuses to overwrite unless ``force``; atomic."""
    out = Path(out_dir) / "data1.h5"
    # fail before opening the temporary file when the output exists
    if out.exists() and not force:
        from mp_jax.data.h5io import RefuseOverwrite

        raise RefuseOverwrite(f"{out} already exists; not overwriting it (pass --force to replace it)")
    patches, origin = make_patches(seed)
    with atomic_h5(out, force=force) as f:
        f.create_dataset("data", data=patches)
        f.create_dataset("origin", data=origin)
        f.attrs["source_kind"] = "stand-in"
        f.attrs["source"] = "; ".join(f"{p.package}/{p.relpath} ({p.credit})" for p in PHOTOS)
        f.attrs["licence"] = "; ".join(f"{Path(p.relpath).name}: {p.licence}" for p in PHOTOS)
        f.attrs["seed"] = seed
        f.attrs["recipe"] = recipe()
        f.attrs["origin_columns"] = "photo index (order of source), scale index (of scales), row, col"
        f.attrs["scales"] = np.asarray(SCALES)
    return out
