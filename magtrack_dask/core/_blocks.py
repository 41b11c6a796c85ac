"""Cache-sized blocks along an axis, for the CPU kernels that walk a stack."""

from __future__ import annotations

import numpy as np

_CPU_BLOCK_BYTES = 2**21  # keeps a few (n, n, block) temporaries in L2/L3


def blocks(xp, length: int, item_bytes: int) -> list[slice]:
    """Slices covering ``range(length)``, each about ``_CPU_BLOCK_BYTES`` of items.

    On CuPy one block holds everything: the GPU wants large launches.
    """
    size = length if xp is not np else max(1, _CPU_BLOCK_BYTES // max(item_bytes, 1))
    return [slice(i, min(i + size, length)) for i in range(0, length, size)]
