# SPDX-License-Identifier: BSD-2-Clause
"""The kernel's caches: dropping them, and knowing when someone else did
(other tests and benchmarks on a shared machine drop them too)."""


from .harness import check, log

__all__ = [
    "drop_caches", "cache_drops", "undisturbed"
]


def drop_caches(what=3):
    """echo what > /proc/sys/vm/drop_caches (1: pages, 2: dentries and
    inodes, 3: both), so that the next access reaches the daemon. Clean
    pages only: a read-only mount has no dirty ones, so no sync first."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write(f"{what}\n")


def cache_drops():
    """How often anyone wrote to /proc/sys/vm/drop_caches since boot."""
    with open("/proc/vmstat") as f:
        for line in f:
            if line.startswith("drop_pagecache "):
                return int(line.split()[1])
    return 0


def undisturbed(fn, what, tries=5):
    """fn() run until no other process dropped the kernel's caches while it
    ran: a measurement of warm caches made partly cold says nothing.
    Returns fn()'s value; fails the test when every try was disturbed."""
    for _ in range(tries):
        before = cache_drops()
        v = fn()
        if cache_drops() == before:
            return v
        log(f"note: {what}: the kernel's caches were dropped meanwhile; "
            "again")
    check(False, f"{what}: an undisturbed run in {tries} tries (another "
          "process keeps dropping the kernel's caches)")
    return v
