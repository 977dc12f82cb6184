"""The bundled sample: scikit-learn's 1,797 handwritten digits, shipped with the library.

Nothing is downloaded. The 8x8 digits (values 0-16) are upscaled with a bicubic filter so
that they are smooth at both 32 and 64 pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from atelier.core.images import encode_png


def render_sample_digits(sample_data: dict) -> dict[str, bytes]:
    """Render every digit as a grayscale PNG.

    Args:
        sample_data: ``params:sample_data``; ``image_size`` is the side in pixels.

    Returns:
        ``{"<label>/<index:04d>.png": PNG bytes}`` for the ``sample_images`` folder. The
        bytes depend only on the digits and ``image_size``, so a second run rewrites nothing.
    """
    size = int(sample_data["image_size"])
    digits = load_digits()
    # 0-16 ink levels -> 0-255, rounded so the bytes do not depend on float formatting.
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return {
        f"{label}/{index:04d}.png": encode_png(
            Image.fromarray(image, "L").resize((size, size), Image.Resampling.BICUBIC)
        )
        for index, (image, label) in enumerate(zip(pixels, digits.target, strict=True))
    }
