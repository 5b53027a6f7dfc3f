"""The painters' kit for photo samples: textured canvases, scattered lesions and streaks, tints."""

from __future__ import annotations

from kagglekit._lazy import lazy_import

# numpy and Pillow load when a sample is drawn, not when a plug-in that uses this kit registers.
np = lazy_import("numpy")
Image = lazy_import("PIL.Image")
ImageDraw = lazy_import("PIL.ImageDraw")
ImageFilter = lazy_import("PIL.ImageFilter")


def textured(
    rng: np.random.Generator, size: tuple[int, int], color: tuple[int, int, int], noise: float = 18.0
) -> Image.Image:
    """A canvas of `color` with smooth low-frequency variation and fine grain, like a photo's surface."""
    width, height = size
    coarse = rng.normal(0, noise, (max(2, height // 80), max(2, width // 80), 3))
    low = (
        np.asarray(
            Image.fromarray(np.uint8(np.clip(coarse + 128, 0, 255))).resize(size, Image.BICUBIC),
            dtype=np.float32,
        )
        - 128
    )
    grain = rng.normal(0, noise / 3, (height, width, 3))
    pixels = np.clip(np.asarray(color, dtype=np.float32) + low + grain, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def jitter(rng: np.random.Generator, color: tuple[int, int, int], amount: float = 20) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in color)


def spots(
    image: Image.Image, rng: np.random.Generator, color: tuple[int, int, int], count: int,
    radius: tuple[float, float], elongation: float = 1.0, angle: float | None = None, outline: tuple | None = None,
) -> Image.Image:  # fmt: skip
    """Scatter `count` ellipses (streaks when `elongation` > 1) of `color` over the image."""
    layer = Image.new("RGBA", image.size)
    draw = ImageDraw.Draw(layer)
    width, height = image.size
    for _ in range(count):
        r = rng.uniform(*radius) * width / 480
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        theta = rng.uniform(0, np.pi) if angle is None else angle + rng.normal(0, 0.1)
        points = [
            (x + np.cos(theta) * r * elongation * np.cos(t) - np.sin(theta) * r * np.sin(t),
             y + np.sin(theta) * r * elongation * np.cos(t) + np.cos(theta) * r * np.sin(t))
            for t in np.linspace(0, 2 * np.pi, 24)
        ]  # fmt: skip
        draw.polygon(points, fill=(*jitter(rng, color, 15), 230), outline=outline)
    layer = layer.filter(ImageFilter.GaussianBlur(1.5))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def tint(image: Image.Image, color: tuple[int, int, int], strength: float) -> Image.Image:
    """Blend the whole image towards `color` (a haze, a yellowing leaf)."""
    return Image.blend(image, Image.new("RGB", image.size, color), strength)
