"""Stable, product-grouped split assignment.

A product's split depends on nothing but its id, so every image of a product lands in the same split,
and rebuilding from a grown source keeps old products where they were (no silent train/test leaks
between dataset versions).
"""

import hashlib

SPLITS = ("train", "validation", "test")
# Cumulative fractions: 70% train, 20% validation, 10% test.
_BOUNDS = ((0.7, "train"), (0.9, "validation"), (1.0, "test"))


def split_for(product_id: str) -> str:
    """Return the split of `product_id`, from the first 8 bytes of its SHA-256 as a number in [0, 1)."""
    digest = hashlib.sha256(product_id.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    for bound, name in _BOUNDS:
        if u < bound:
            return name
    return SPLITS[-1]  # unreachable: u < 1.0
