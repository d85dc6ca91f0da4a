# SPDX-License-Identifier: BSD-2-Clause
"""The machine's proactive reclaim, paused for a benchmark run.

Some virtual machines run a DAMON kernel thread that pages out file pages
left idle for a minute (this bench's VM: kdamond 0, action "pageout",
regions idle for 12 aggregation intervals of 5 s). It drops the page cache
of a mount between warm runs, so a "warm" import finds pages gone and sends
reads again: with it on, a warm import 90 s after the last one sent 125
reads to sqvenvfs; with it off, none. drop_caches already makes cold runs
cold; this makes warm runs warm. A full run pauses every such thread and
restores it at the end, and the results say which were paused.
"""

import contextlib
import glob
import os

KDAMONDS = "/sys/kernel/mm/damon/admin/kdamonds"
DAMON_RECLAIM = "/sys/module/damon_reclaim/parameters/enabled"
# DAMON actions that take pages away from the page cache.
RECLAIMING = {"pageout"}


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _write(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")


def reclaimers():
    """[(name, file, value when on)] for each running reclaimer."""
    found = []
    for kd in sorted(glob.glob(os.path.join(KDAMONDS, "[0-9]*"))):
        if _read(os.path.join(kd, "state")) != "on":
            continue
        actions = {_read(a) for a in glob.glob(os.path.join(kd, "contexts/*/schemes/*/action"))}
        if actions & RECLAIMING:
            found.append((f"DAMON kdamond {os.path.basename(kd)} "
                          f"({', '.join(sorted(actions & RECLAIMING))})",
                          os.path.join(kd, "state"), "on"))
    if _read(DAMON_RECLAIM) == "Y":
        found.append(("DAMON_RECLAIM", DAMON_RECLAIM, "Y"))
    return found


@contextlib.contextmanager
def paused(enabled, log):
    """Pause the running reclaimers (if enabled and allowed) for the body;
    yields what the results should say about them."""
    found = reclaimers()
    note = {"found": [n for n, _, _ in found], "paused": []}
    if not found or not enabled:
        yield note
        return
    off = []
    try:
        for name, path, on in found:
            try:
                _write(path, "off" if on == "on" else "N")
            except OSError as e:
                log(f"proactive reclaim: {name}: cannot pause: {e.strerror}")
                continue
            off.append((name, path, on))
            note["paused"].append(name)
            log(f"proactive reclaim: {name} paused for the run (if the run dies "
                f"without restoring it: echo {on} > {path})")
        yield note
    finally:
        for name, path, on in off:
            try:
                _write(path, on)
                log(f"proactive reclaim: {name} restored")
            except OSError as e:
                log(f"proactive reclaim: {name}: NOT restored ({e.strerror}): "
                    f"echo {on} > {path}")


def describe(note):
    """One sentence for the results' machine line."""
    if not note or not note.get("found"):
        return "proactive reclaim: none running"
    if note.get("paused") and len(note["paused"]) == len(note["found"]):
        return f"proactive reclaim paused during the run: {', '.join(note['paused'])}"
    left = [n for n in note["found"] if n not in note.get("paused", [])]
    return (f"proactive reclaim left running: {', '.join(left)} "
            "(warm runs may find their pages evicted)")
