"""The process's heap during long Python work: objects that live as long as the process kept out
of the cyclic garbage collector's full passes.

CPython's collector walks every object of its oldest generation on each full collection, and a
full collection comes after every so many new objects. A Dagster run process holds hundreds of
thousands of objects that are never garbage (modules, classes, schemas, the run's definitions),
and an ingest or a sweep makes enough new objects for many full collections: an unchanged re-scan
of 20,000 inputs through the CLI spent about a third of its time walking Dagster's objects.
`gc.freeze` is CPython's own answer (made for forking servers): what is alive at that moment goes
to a permanent generation that collections skip; `gc.unfreeze` gives it back.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Inside the block, the objects alive as it starts are not walked by the collector, and
    after it they are collected as usual again (a notebook or a code server lives on). Objects
    made inside the block are collected as always. Within a block already frozen (the CLI's run
    around an ingest's) it does nothing, so the inner end does not thaw the outer block. Worker
    processes forked inside the block start frozen too, which also spares them copying the
    pages a collection would touch."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
