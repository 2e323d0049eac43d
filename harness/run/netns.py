"""Network namespaces made with `ip netns add`: enter one for the current thread.

Only what the capture edge needs: a socket opened inside a namespace stays in it, so the
probe sender of a capture on a veth can live in the namespace on the link's other side.
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from typing import Iterator

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the enclosed code, in this thread only, inside network namespace NETNS_DIR/NAME."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    except FileNotFoundError:
        os.close(own)
        raise FileNotFoundError(f"no network namespace {name!r} (see `ip netns list`)") from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
