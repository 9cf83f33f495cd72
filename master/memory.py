"""Keep the C heap from holding on to big blocks the process has freed (glibc only).

Checking a worker's password runs scrypt, which takes 16 MB of working memory for a few
milliseconds.  glibc serves such a block by ``mmap`` and gives it back on free, but it then
raises its threshold for ``mmap`` to the size of that block: the next 16 MB block comes
from a heap arena instead, and once freed it stays in the process's resident set for good
(16 MB of a master's RSS after its first worker connects).  A fixed threshold turns that
adjustment off, so blocks of 1 MB and more always go back to the system when freed.
Allocations that big are rare in a master (a REST page is tens of kB), so the extra
``mmap`` calls cost nothing measurable.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h
MMAP_THRESHOLD = 1 << 20


def return_big_blocks(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc's malloc serve blocks of *threshold* bytes and more by mmap, always; True if it took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, libc's among them
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # another C library (musl has no mallopt to speak of)
        return False


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``); True if any went.

    Start-up allocates and frees a good deal (config, migrations check, statement building):
    glibc keeps those freed pages resident until told otherwise, about a megabyte of a
    master's RSS that it never uses again.  Called once, when the master has started.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):  # another C library
        return False
