"""Draws the 32x32 images of the embedded `shapes` dataset, deterministically.

Each image shows one shape of a fine class; the fine class fixes the coarse
class (as CIFAR-100's classes fix its superclasses). Position, scale, a small
rotation, colours, a background gradient, clutter and pixel noise vary, so the
fine task is a real problem: pentagons look like disks when small, a rotated
plus approaches a cross, clutter hides thin bars.
"""

import numpy as np

TAXONOMY = {
    "round": ("disk", "ring", "ellipse"),
    "polygon": ("triangle", "square", "pentagon"),
    "line": ("bar", "plus", "cross"),
    "other": ("star", "crescent", "arrow"),
}
COARSE_NAMES = tuple(TAXONOMY)
FINE_NAMES = tuple(name for names in TAXONOMY.values() for name in names)
FINE_TO_COARSE = tuple(
    COARSE_NAMES.index(coarse) for coarse, names in TAXONOMY.items() for _ in names
)

SIZE = 32
_SUPERSAMPLE = 2
_MAX_ROTATION = np.deg2rad(15.0)  # plus and cross differ by 45 degrees


def _grid():
    n = SIZE * _SUPERSAMPLE
    axis = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    return np.meshgrid(axis, -axis)  # x to the right, y up


_X, _Y = _grid()


def _polygon(x, y, sides, radius, phase=np.pi / 2):
    angle = np.arctan2(y, x) - phase + np.pi / sides
    sector = 2 * np.pi / sides
    local = np.mod(angle, sector) - np.pi / sides
    return np.hypot(x, y) * np.cos(local) <= radius * np.cos(np.pi / sides)


def _bars(x, y, length=0.85, half_width=0.2):
    return ((np.abs(x) <= length) & (np.abs(y) <= half_width)) | (
        (np.abs(y) <= length) & (np.abs(x) <= half_width)
    )


def _mask(name, x, y):
    r = np.hypot(x, y)
    if name == "disk":
        return r <= 0.8
    if name == "ring":
        return (r >= 0.5) & (r <= 0.88)
    if name == "ellipse":
        return (x / 0.95) ** 2 + (y / 0.45) ** 2 <= 1.0
    if name == "triangle":
        return _polygon(x, y, 3, 0.95)
    if name == "square":
        return _polygon(x, y, 4, 0.8, phase=0.0)
    if name == "pentagon":
        return _polygon(x, y, 5, 0.88)
    if name == "bar":
        return (np.abs(x) <= 0.92) & (np.abs(y) <= 0.2)
    if name == "plus":
        return _bars(x, y)
    if name == "cross":
        c = np.sqrt(0.5)
        return _bars(c * (x + y), c * (y - x))
    if name == "star":
        phi = np.arctan2(y, x) - np.pi / 2
        return r <= 0.35 + 0.6 * ((1 + np.cos(5 * phi)) / 2) ** 2
    if name == "crescent":
        return (r <= 0.85) & ((x - 0.4) ** 2 + y**2 > 0.62**2)
    if name == "arrow":
        shaft = (np.abs(y) <= 0.15) & (x >= -0.9) & (x <= 0.3)
        head = (x >= 0.2) & (x <= 0.9) & (np.abs(y) <= (0.9 - x) * 0.95)
        return shaft | head
    raise ValueError(f"Unknown shape {name!r}. Expected one of {FINE_NAMES}")


def _luminance(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114])


def _downsample(image):
    n = _SUPERSAMPLE
    return image.reshape(SIZE, n, SIZE, n, -1).mean(axis=(1, 3))


def render(index, seed=0):
    """Draws example `index` of the stream `seed`.

    Returns:
        `(image, fine_label, coarse_label)`: a `(32, 32, 3)` uint8 array and
        two ints.
    """
    rng = np.random.default_rng([seed, index])
    fine = int(rng.integers(len(FINE_NAMES)))

    background = rng.uniform(0.0, 1.0, 3)
    gradient = rng.normal(0.0, 0.25, (2, 3))
    canvas = background + _X[..., None] * gradient[0] + _Y[..., None] * gradient[1]

    # Clutter first, so the shape can occlude it.
    for _ in range(int(rng.integers(0, 4))):
        start = rng.uniform(-1, 1, 2)
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-9
        length = rng.uniform(0.2, 0.6)
        t = np.clip(
            (_X - start[0]) * direction[0] + (_Y - start[1]) * direction[1], 0, length
        )
        distance = np.hypot(
            _X - start[0] - t * direction[0], _Y - start[1] - t * direction[1]
        )
        canvas[distance <= rng.uniform(0.03, 0.07)] = rng.uniform(0, 1, 3)

    foreground = rng.uniform(0.0, 1.0, 3)
    while abs(_luminance(foreground) - _luminance(background)) < 0.2:
        foreground = rng.uniform(0.0, 1.0, 3)
    scale = rng.uniform(0.35, 0.75)
    center = rng.uniform(-1 + scale * 0.9, 1 - scale * 0.9, 2)
    angle = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)
    cos, sin = np.cos(angle), np.sin(angle)
    dx, dy = (_X - center[0]) / scale, (_Y - center[1]) / scale
    mask = _mask(FINE_NAMES[fine], cos * dx + sin * dy, -sin * dx + cos * dy)
    canvas[mask] = foreground

    image = _downsample(canvas) + rng.normal(
        0.0, rng.uniform(0.02, 0.08), (SIZE, SIZE, 3)
    )
    image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return image, fine, FINE_TO_COARSE[fine]
