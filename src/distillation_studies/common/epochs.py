"""The training loop's epoch records, from the node that trains an arm to whoever listens (MLflow tracking).

A node passes ``reporter(label)`` as the loop's ``on_epoch``: it publishes each epoch's row under the
arm's label (``ArmRun.key``, e.g. ``kd/seed_0``). Tracking subscribes a sink for that label around the
node and unsubscribes when it ends, so the node never imports MLflow and works unchanged with tracking
off (a row nobody listens to is dropped).

The subscriptions are process-local on purpose and the only state here: a sink is a live handle (an
open MLflow run in this process) that cannot be pickled to another, and it lives exactly as long as the
node that trains its label runs (``subscribed`` removes it on success and on failure alike).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

EpochRow = dict[str, float]
EpochSink = Callable[[EpochRow], None]

_sinks: dict[str, EpochSink] = {}
_lock = threading.Lock()


def subscribe(label: str, sink: EpochSink) -> None:
    """``sink`` receives the epochs published under ``label`` from now on (replacing any earlier sink)."""
    with _lock:
        _sinks[label] = sink


def unsubscribe(label: str, sink: EpochSink | None = None) -> None:
    """Stop delivering ``label``'s epochs (only if ``sink``, when given, is still the one subscribed: equal
    bound methods of one run are the same sink)."""
    with _lock:
        if sink is None or _sinks.get(label) == sink:
            _sinks.pop(label, None)


@contextmanager
def subscribed(label: str, sink: EpochSink) -> Iterator[None]:
    """``sink`` subscribed to ``label`` while the block runs."""
    subscribe(label, sink)
    try:
        yield
    finally:
        unsubscribe(label, sink)


def publish(label: str, row: EpochRow) -> None:
    """Deliver one epoch's row to ``label``'s sink, if any."""
    with _lock:
        sink = _sinks.get(label)
    if sink is not None:
        sink(row)


def reporter(label: str) -> EpochSink:
    """The loop's ``on_epoch`` callback for the arm ``label``: publishes each row under it."""
    return lambda row: publish(label, row)
