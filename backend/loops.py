"""Which asyncio event loop the server runs: uvloop where it is installed, else asyncio's own.

uvloop (Linux and macOS) answered `status` calls with less CPU per call than asyncio's loop
(bench rows "status calls/s", run with `--loop asyncio` and `--loop uvloop` side by side in
BENCHMARKS.md). `--loop asyncio` (TASKRPC_LOOP=asyncio) turns it off.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

LOOPS = ("auto", "uvloop", "asyncio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopUnavailable(Exception):
    """`--loop uvloop` on a machine without uvloop."""


def choose(name: str) -> tuple[str, LoopFactory]:
    """The loop `name` asks for ("auto": uvloop if installed): its label and its factory."""
    if name == "asyncio":
        return "asyncio", asyncio.new_event_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if name == "auto":
            return "asyncio", asyncio.new_event_loop
        raise LoopUnavailable(
            "--loop uvloop: uvloop is not installed (it is for Linux and macOS); use --loop asyncio"
        ) from None
    factory: LoopFactory = uvloop.new_event_loop
    return f"uvloop {uvloop.__version__}", factory
