"""Processing very many objects at once (a 100,000-VMI cluster dump) without stalling."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    With it running, every full collection walks all live objects, so building N objects
    costs O(N²) in the worst case; our parsed objects and resolutions hold no cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
