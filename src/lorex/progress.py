"""Progress on stderr for long runs: tqdm bars, and one-line messages printed above them.

In one process, bars and messages are tqdm's own. Worker processes (``lorex reproduce --jobs N``) share the main
process's terminal, and a process can only keep its own bars and messages apart (tqdm clears its bars, writes the
line, redraws them). So a worker draws nothing itself: its bars and messages go to the main process
(:func:`join_workers`, :func:`show_workers`), which draws one bar per worker, on a line of its own, and prints
every worker's messages above them.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

from tqdm.auto import tqdm

MIN_INTERVAL = 0.1  # seconds between a worker's bar updates sent to the main process (tqdm's own default)

_slot: int | None = None  # in a worker process: its line among the workers' bars
_queue = None  # in a worker process: where its bars and messages go (a multiprocessing queue)


def bar(**kwargs):
    """``tqdm(**kwargs)``; in a worker process a stand-in with the same ``update``, ``set_postfix``,
    ``set_postfix_str`` and ``close``, drawn by the main process."""
    if _queue is None or kwargs.get("disable"):
        return tqdm(**kwargs)
    return _WorkerBar(kwargs)


def say(msg: str) -> None:
    """Print ``msg`` on stderr above the bars being drawn (from a worker: by the main process)."""
    if _queue is not None:
        _queue.put(("say", _slot, msg))
        return
    tqdm.write(msg, file=sys.stderr)
    sys.stderr.flush()


class _WorkerBar:
    """A worker's bar: sends its count and postfix to the main process, at most every ``MIN_INTERVAL`` seconds."""

    def __init__(self, kwargs: dict):
        self.n = int(kwargs.get("initial", 0))
        self._postfix = ("set_postfix_str", ("",), {})
        self._sent = 0.0
        _queue.put(("open", _slot, kwargs))

    def _send(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._sent >= MIN_INTERVAL:
            self._sent = now
            _queue.put(("state", _slot, (self.n, self._postfix)))

    def update(self, n: int = 1) -> None:
        self.n += n
        self._send()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self._postfix = ("set_postfix", (ordered_dict,), {"refresh": False, **kwargs})
        self._send()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = ("set_postfix_str", (s,), {"refresh": False})
        self._send()

    def close(self) -> None:
        self._send(force=True)
        _queue.put(("close", _slot, None))


def join_workers(queue, counter) -> None:
    """In a worker process: take the next free line (``counter``, a shared ``multiprocessing.Value``) and send
    bars and messages to ``queue`` (a ``multiprocessing`` queue that :func:`show_workers` reads)."""
    global _slot, _queue
    with counter.get_lock():
        _slot = counter.value
        counter.value += 1
    _queue = queue


def _draw(queue) -> None:
    bars: dict[int, tuple[tqdm, bool]] = {}  # slot → (its bar, whether a line stays when it closes)
    while (item := queue.get()) is not None:
        kind, slot, payload = item
        if kind == "say":
            tqdm.write(payload, file=sys.stderr)
        elif kind == "open":
            if slot in bars:
                bars.pop(slot)[0].close()
            leave = payload.pop("leave", True) is not False
            bars[slot] = tqdm(**{**payload, "position": slot, "leave": False}), leave
        elif kind == "state" and slot in bars:
            b = bars[slot][0]
            n, (method, args, kwargs) = payload
            getattr(b, method)(*args, **kwargs)
            b.update(n - b.n)
        elif kind == "close" and slot in bars:
            b, leave = bars.pop(slot)
            if leave:  # a finished bar stays as a line above the others, whole (a line may wrap; a bar drawn in
                # place is cut to the terminal's width)
                tqdm.write(b.format_meter(**{**b.format_dict, "ncols": None}), file=sys.stderr)
            b.close()
    for b, _ in bars.values():
        b.close()


@contextlib.contextmanager
def show_workers(context):
    """While the block runs, draw the bars and print the messages of worker processes that called
    :func:`join_workers` with the yielded ``(queue, counter)`` (``context``: their ``multiprocessing`` context)."""
    queue, counter = context.Queue(), context.Value("i", 0)
    drawer = threading.Thread(target=_draw, args=(queue,), daemon=True)
    drawer.start()
    try:
        yield queue, counter
    finally:
        queue.put(None)
        drawer.join(timeout=5)
