"""Procedural virtual try-on data in the VITON-HD (``zalando-hd-resized``) layout.

Persons have a head, neck, arms, legs and a torso on which a garment sits;
garments are flat silhouettes with colours, stripes, dots, checks and a small
glyph, so a model has to copy detail from the reference to dress the person.
The garment is warped (scaled and shifted) into the person's torso box.

Layout written (as StableVITON reads VITON-HD)::

    <root>/{train,test}/image/<id>_00.jpg           person photo
    <root>/{train,test}/cloth/<id>_00.jpg           garment (the reference)
    <root>/{train,test}/cloth-mask/<id>_00.jpg      garment silhouette (reference mask)
    <root>/{train,test}/agnostic-v3.2/<id>_00.jpg   person with the garment area greyed out
    <root>/{train,test}/agnostic-mask/<id>_00_mask.png   255 = region to inpaint
    <root>/{train,test}/image-densepose/<id>_00.jpg body-part colour map
    <root>/{train,test}_pairs.txt                   "<person>.jpg <cloth>.jpg"
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.procedural import drawing as d

GARMENT_CUTS = ("tee", "vneck", "tank")
PART_COLOURS = {  # densepose-like part colours
    "head": (0.2, 0.2, 0.9),
    "torso": (0.9, 0.5, 0.1),
    "arm": (0.2, 0.8, 0.3),
    "leg": (0.7, 0.2, 0.7),
}


def garment(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A flat garment on a white background: image (h, w, 3) and silhouette (h, w)."""
    y0, y1 = int(h * 0.16), int(h * 0.9)
    x0, x1 = int(w * 0.2), int(w * 0.8)
    gh, gw = y1 - y0, x1 - x0
    yy, xx = d.grid(gh, gw)
    sil = np.ones((gh, gw), dtype=bool)
    cut = rng.choice(GARMENT_CUTS)
    cx = (gw - 1) / 2
    if cut == "tee":
        sil &= ~((yy < gh * 0.12) & (np.abs(xx - cx) < gw * 0.2))
    elif cut == "vneck":
        sil &= ~(np.abs(xx - cx) < (gh * 0.3 - yy) * 0.6)
    else:  # tank: straps only at the top
        sil &= ~((yy < gh * 0.18) & (np.abs(np.abs(xx - cx) - gw * 0.3) > gw * 0.1))
    base = d.random_colour(rng)
    tex = d.pattern(rng, gh, gw, base)
    glyph = d.GLYPHS[int(rng.integers(len(d.GLYPHS)))]
    glyph = np.kron(glyph, np.ones((2, 2), dtype=bool))
    gy, gx = int(gh * 0.35), int(cx - glyph.shape[1] / 2 + rng.integers(-2, 3))
    colour = d.contrasting_colour(rng, base, 0.6)
    region = tex[gy : gy + glyph.shape[0], gx : gx + glyph.shape[1]]
    region[glyph[: region.shape[0], : region.shape[1]]] = colour
    img = np.full((h, w, 3), 0.96, dtype=np.float32)
    mask = np.zeros((h, w), dtype=bool)
    img[y0:y1, x0:x1][sil] = tex[sil]
    mask[y0:y1, x0:x1] = sil
    return img, mask


def person(rng: np.random.Generator, h: int, w: int, cloth: np.ndarray, cloth_mask: np.ndarray) -> dict[str, np.ndarray]:
    """A person (h, w, 3) wearing ``cloth``, with its inpainting mask and densepose map."""
    bg = np.broadcast_to(d.random_colour(rng, 0.6, 0.95), (h, w, 3)).copy()
    bg *= np.linspace(1.0, 0.85, h, dtype=np.float32)[:, None, None]
    skin = np.array([0.85, 0.65, 0.5], dtype=np.float32) * rng.uniform(0.6, 1.1)
    pants = d.random_colour(rng, 0.05, 0.4)
    img, pose = bg, np.zeros((h, w, 3), dtype=np.float32)
    cx = w / 2 + rng.integers(-3, 4)
    tw, th = int(w * rng.uniform(0.38, 0.5)), int(h * rng.uniform(0.32, 0.4))
    ty = int(h * 0.3) + int(rng.integers(-2, 3))
    tx = int(round(cx - tw / 2))
    yy, xx = d.grid(h, w)
    parts = {
        "head": ((yy - (ty - h * 0.13)) / (h * 0.1)) ** 2 + ((xx - cx) / (w * 0.13)) ** 2 <= 1,
        "leg": (yy >= ty + th) & (np.abs(xx - cx) <= tw / 2 - 1) & (np.abs(xx - cx) >= 1.0),
        "arm": (yy >= ty + 1) & (yy < ty + th + 2) & (np.abs(xx - cx) > tw / 2) & (np.abs(xx - cx) <= tw / 2 + w * 0.1),
        "torso": (yy >= ty) & (yy < ty + th) & (xx >= tx) & (xx < tx + tw),
    }
    neck = (yy >= ty - h * 0.05) & (yy < ty) & (np.abs(xx - cx) <= w * 0.05)
    img[parts["head"] | neck | parts["arm"] | parts["torso"]] = skin
    img[parts["leg"]] = pants
    for name, sel in parts.items():
        pose[sel] = PART_COLOURS[name]
    # Warp the garment's bounding box onto the torso box (scale and shift).
    ys, xs = np.nonzero(cloth_mask)
    crop = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
    warped = d.resize_nearest(cloth[crop], th, tw)
    warped_mask = d.resize_nearest(cloth_mask[crop], th, tw)
    torso_view = img[ty : ty + th, tx : tx + tw]
    torso_view[warped_mask] = warped[warped_mask]
    inpaint = np.zeros((h, w), dtype=bool)
    inpaint[max(ty - 2, 0) : ty + th + 2, max(tx - 2, 0) : tx + tw + 2] = True
    agnostic = img.copy()
    agnostic[inpaint] = 0.5
    return {"image": img, "agnostic": agnostic, "inpaint_mask": inpaint, "densepose": pose}


def _write_sample(split_dir: Path, name: str, rng: np.random.Generator, h: int, w: int) -> None:
    cloth, cloth_mask = garment(rng, h, w)
    p = person(rng, h, w, cloth, cloth_mask)
    d.save_image(split_dir / "image" / f"{name}.jpg", p["image"])
    d.save_image(split_dir / "cloth" / f"{name}.jpg", cloth)
    d.save_image(split_dir / "cloth-mask" / f"{name}.jpg", cloth_mask)
    d.save_image(split_dir / "agnostic-v3.2" / f"{name}.jpg", p["agnostic"])
    d.save_image(split_dir / "agnostic-mask" / f"{name}_mask.png", p["inpaint_mask"])
    d.save_image(split_dir / "image-densepose" / f"{name}.jpg", p["densepose"])


def generate_viton_hd(root: str | Path, n_train: int = 2000, n_test: int = 128, seed: int = 0,
                      size: tuple[int, int] = (64, 48)) -> Path:
    """Write a procedural VITON-HD tree under ``root``; returns ``root``.

    Train ids are ``00000 .. n_train-1`` and test ids follow them, so the splits
    never share a sample. Test pairs are unpaired (each person gets another
    test sample's garment); train pairs are paired, as in VITON-HD.
    """
    if n_test == 1:
        raise ValueError("n_test must be 0 or at least 2: an unpaired test pair needs another sample's garment")
    root = Path(root)
    h, w = size
    ss = np.random.SeedSequence(seed)
    names = {"train": [f"{i:05d}_00" for i in range(n_train)],
             "test": [f"{i:05d}_00" for i in range(n_train, n_train + n_test)]}
    for (split, split_names), split_ss in zip(names.items(), ss.spawn(2)):
        for name, child in zip(split_names, split_ss.spawn(len(split_names))):
            _write_sample(root / split, name, np.random.default_rng(child), h, w)
    # Unpaired: a random cycle, so nobody wears their own garment.
    order = np.random.default_rng(seed + 1).permutation(n_test)
    partner = {int(order[i]): int(order[(i + 1) % n_test]) for i in range(n_test)}
    (root / "train_pairs.txt").write_text("".join(f"{n}.jpg {n}.jpg\n" for n in names["train"]))
    (root / "test_pairs.txt").write_text(
        "".join(f"{n}.jpg {names['test'][partner[i]]}.jpg\n" for i, n in enumerate(names["test"])))
    return root
