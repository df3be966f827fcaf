"""Draw the app's example photos: new synthetic products (not in any dataset built with the default
seeds), saved as small JPEGs beside this script. The JPEGs are committed, so `app.py` (which must run
alone on a Space) never imports `hf_dataset`.

    uv run python examples/make_examples.py
"""

from pathlib import Path

import numpy as np

from hf_dataset.build import encode_image
from hf_dataset.synthetic import caption_for, draw_product

HERE = Path(__file__).resolve().parent
PRODUCTS = [  # (garment, colour, pattern, detail): varied shapes, colours and ratings
    ("dress", "red", "plain", "belt"),
    ("t-shirt", "blue", "striped", "pocket"),
    ("hoodie", "black", "checked", "star logo"),
    ("shorts", "orange", "polka dot", "buttons"),
]


def main() -> None:
    rng = np.random.default_rng(2026)
    for garment, colour, pattern, detail in PRODUCTS:
        image = draw_product(garment, colour, pattern, detail, 224, rng)
        name = caption_for(colour, pattern, garment, detail).replace(" ", "-") + ".jpg"
        (HERE / name).write_bytes(encode_image(image, max_side=224))
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
