#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs --stats, its three forms, after known work on a real mount:
the counters count that work (files read, bytes returned, symlinks, isatty
calls), the start-up times fit inside the mount command's, asking twice
changes nothing, --stats --human says the same numbers
as the "name value" lines (image reads and bytes, what the daemon answered
from memory, the block cache, the unpacked-venv estimate and its opens), a
terminal gets the human form and a pipe the "name value" lines, and the
option mistakes are refused in one line."""

import os
import pty
import re
import subprocess
import termios
import time

import sqvtest as t

UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
         "TiB": 1 << 40}


def number(s):
    return int(s.replace(",", ""))


def size_ok(text, value):
    """A human size ("1.5 KiB", "212 MiB") is value rounded to its
    precision: half a unit of its last digit."""
    m = re.fullmatch(r"([0-9]+)(?:\.([0-9]))? (B|KiB|MiB|GiB|TiB)", text)
    if not m:
        return False
    unit = UNITS[m.group(3)]
    tenths = m.group(2) is not None
    shown = (int(m.group(1)) + (int(m.group(2)) / 10 if tenths else 0)) * unit
    step = unit / 10 if tenths else unit
    return abs(shown - value) <= step / 2 + 1e-9


def parse_human(text):
    """The numbers of the human form, by line label."""
    pats = {
        "head": r"sqvenvfs at (\S+): ([0-9,]+) images? \(([^)]+)\), "
                r"([0-9,]+) entries, up .+",
        "images": r"Images read: +([0-9,]+) reads?, (.+) from the file "
                  r"system holding them",
        "memory": r"From memory: +([0-9,]+) lookups?, ([0-9,]+) getattrs?, "
                  r"([0-9,]+) listings?, ([0-9,]+) isatty",
        "reads": r"File reads: +([0-9,]+) requests?, (.+) of file data",
        "cache": r"Block cache: +([0-9,]+) hits?, ([0-9,]+) miss(?:es)?"
                 r"(?: \(([0-9]+) %\))?",
        "kernel": r"Kernel: +(.+)",
        "unpacked": r"If unpacked: +~([0-9,]+) requests to that file system"
                    r"(?:, ([0-9.]+) times the image reads)?",
        "opens": r"  daemon saw, and ([0-9,]+) opens?, one per file opened.*",
    }
    got = {}
    for line in text.splitlines():
        for key, pat in pats.items():
            m = re.fullmatch(pat, line)
            if m:
                got[key] = m.groups()
    return got


def check_human(human, raw, mnt):
    h = parse_human(human)
    missing = [k for k in ("head", "images", "memory", "reads", "cache",
                           "kernel", "unpacked", "opens") if k not in h]
    t.check(not missing, f"the human form has every line (missing {missing})",
            human)
    if missing:
        return
    path, layers, image_size, entries = h["head"]
    t.check(path == os.path.realpath(mnt) and number(layers) == raw["layers"]
            and number(entries) == raw["entries"] and
            size_ok(image_size, raw["image_bytes"]),
            "header: mount point, images, their size, entries", h["head"])
    reads, read_size = h["images"]
    t.check(number(reads) == raw["backing_reads"] and
            size_ok(read_size, raw["backing_bytes"]),
            "images read: reads and bytes as backing_reads/backing_bytes",
            (h["images"], raw["backing_reads"], raw["backing_bytes"]))
    lookups, getattrs, listings, isatty = map(number, h["memory"])
    t.check((lookups, getattrs, listings, isatty) ==
            (raw["lookup"], raw["getattr"],
             raw["readdir"] + raw["readdirplus"], raw["ioctl"]),
            "from memory: lookups, getattrs, listings, isatty as counted",
            h["memory"])
    requests, size = h["reads"]
    hits, misses, pct = h["cache"]
    t.check(number(requests) == raw["read"] and
            size_ok(size, raw["read_bytes"]) and
            number(hits) == raw["cache_hits"] and
            number(misses) == raw["cache_misses"] and
            int(pct) == raw["cache_hits"] * 100 // (raw["cache_hits"] +
                                                     raw["cache_misses"]),
            "file reads: requests, bytes; block cache hits and misses",
            (h["reads"], h["cache"]))
    t.check(("no opens sent" in h["kernel"][0]) ==
            bool(raw["kernel_skips_open"]),
            "kernel line says whether opens are sent", h["kernel"])
    opens = max(raw["open"], raw["files_read"])
    total = (raw["lookup"] + raw["getattr"] + raw["readlink"] +
             raw["readdir"] + raw["readdirplus"] + opens + raw["read"])
    t.check(number(h["unpacked"][0]) == total and
            number(h["opens"][0]) == opens,
            f"estimate: {total} requests with {opens} opens, by its stated "
            "basis", (h["unpacked"], h["opens"]))
    ratio = float(h["unpacked"][1])
    t.check(abs(ratio - total / raw["backing_reads"]) <= 0.05 *
            max(1, ratio), "estimate's ratio to the image reads",
            (ratio, total, raw["backing_reads"]))


def on_terminal(args):
    """sqvenvfs ARGS with stdout on a pseudo-terminal; returns its output."""
    leader, follower = pty.openpty()
    # Wide, so that nothing wraps; no newline translation to undo.
    attrs = termios.tcgetattr(follower)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(follower, termios.TCSANOW, attrs)
    p = subprocess.Popen([t.SQVENVFS, *args], stdout=follower,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    p.wait()
    os.close(leader)
    return p.returncode, out.decode()


def test(d, cleanups):
    t.require_mount_capability()
    src = os.path.join(d, "src")
    os.makedirs(os.path.join(src, "pkg", "sub"))
    sizes = {}
    for i in range(12):
        name = f"pkg/m{i}.py"
        data = (f"# module {i}\n" * (40 * (i + 1))).encode()
        with open(os.path.join(src, name), "wb") as f:
            f.write(data)
        sizes[name] = len(data)
    os.symlink("m0.py", os.path.join(src, "pkg", "link.py"))
    img = t.mksquashfs(src, os.path.join(d, "img.sqfs"))
    mnt = os.path.join(d, "mnt")
    os.mkdir(mnt)
    t0 = time.monotonic()
    t.mount([img], mnt, cleanups=cleanups)
    wall_us = (time.monotonic() - t0) * 1e6

    before = t.stats(mnt)
    # What the file system saw at mount counts everything read: the
    # metadata, from the inode table's start to the image's end, is read at
    # once (lib/meta.c), and before it the superblock.
    with open(img, "rb") as f:
        sb = f.read(96)
    bytes_used = int.from_bytes(sb[40:48], "little")
    inode_table = int.from_bytes(sb[64:72], "little")
    t.check(before["backing_bytes"] >= 96 + bytes_used - inode_table and
            before["backing_reads"] >= 2,
            "backing_reads/bytes at mount count the superblock and the "
            "metadata read whole", (before["backing_reads"],
                                    before["backing_bytes"],
                                    bytes_used - inode_table))
    # Where the mount's time went: the index build is part of the daemon's
    # start-up, which is part of what the mount command took.
    t.check(0 < before["mount_index_us"] <= before["mount_ready_us"] <= wall_us,
            "mount_index_us <= mount_ready_us <= the mount command's time",
            (before["mount_index_us"], before["mount_ready_us"], wall_us))
    # Known work: six files read whole, one of them twice (the second time
    # from the page cache), a symlink followed twice, an isatty, stats of
    # three other files, a name that is not there.
    # os.open, not open(): Python's open() asks isatty() itself.
    read = [f"pkg/m{i}.py" for i in range(6)]
    for name in read + [read[0]]:
        fd = os.open(os.path.join(mnt, name), os.O_RDONLY)
        while os.read(fd, 1 << 16):
            pass
        os.close(fd)
    for _ in range(2):
        os.readlink(os.path.join(mnt, "pkg", "link.py"))
    fd = os.open(os.path.join(mnt, read[1]), os.O_RDONLY)
    t.check(not os.isatty(fd), "no file in the mount is a terminal")
    os.close(fd)
    for i in (6, 7, 8):
        os.stat(os.path.join(mnt, f"pkg/m{i}.py"))
    t.check(not os.path.exists(os.path.join(mnt, "pkg", "absent.py")),
            "a missing name is missing")
    os.listdir(os.path.join(mnt, "pkg", "sub"))

    raw = t.stats(mnt)
    delta = {k: raw[k] - before.get(k, 0) for k in raw}
    t.check(delta["files_read"] == len(read),
            f"files_read counts the {len(read)} files read once each",
            delta["files_read"])
    want_bytes = sum(sizes[n] for n in read)
    t.check(delta["read_bytes"] == want_bytes,
            f"read_bytes is the {want_bytes} bytes of those files",
            delta["read_bytes"])
    t.check(delta["readlink"] == 1, "one readlink: the kernel keeps the "
            "target", delta["readlink"])
    t.check(delta["ioctl"] == 1, "one isatty ioctl", delta["ioctl"])
    t.check(delta["lookup"] >= len(read) + 3 + 1,
            "a lookup per name touched", delta["lookup"])
    t.check(raw["layers"] == 1 and
            os.path.getsize(img) - 4096 < raw["image_bytes"] <=
            os.path.getsize(img), "image_bytes: the image's bytes used",
            (raw["image_bytes"], os.path.getsize(img)))

    r = t.cli(["--stats", "--human", mnt])
    t.check(r.returncode == 0 and not r.stderr, "--stats --human works",
            r.stderr)
    after = t.stats(mnt)
    same = {k for k in raw if k != "uptime_seconds" and raw[k] != after[k]}
    t.check(not same, "asking (in any form) is not counted", same)
    check_human(r.stdout, raw, mnt)
    t.check(max(len(line) for line in r.stdout.splitlines()) <= 80,
            "the human form fits 80 columns here", r.stdout)

    # On a terminal the human form is the default; through a pipe, the
    # "name value" lines (what t.stats() reads); --json either way.
    rc, out = on_terminal(["--stats", mnt])
    t.check(rc == 0 and out.startswith(f"sqvenvfs at {os.path.realpath(mnt)}:")
            and "If unpacked:" in out, "a terminal gets the human form", out)
    check_human(out, after, mnt)
    rc, out = on_terminal(["--stats", "--json", mnt])
    t.check(rc == 0 and out.startswith('{"requests": '),
            "--json on a terminal stays JSON", out[:80])
    r = t.cli(["--stats", mnt])
    t.check(r.stdout.splitlines()[0].startswith("requests "),
            "a pipe gets the \"name value\" lines", r.stdout[:80])

    t.check_error("--human with --json", t.cli(["--stats", "--human",
                                                "--json", mnt]),
                  ["--human", "--json"], status=2)
    t.check_error("--human without --stats", t.cli(["--human", mnt]),
                  "--human goes with --stats", status=2)
    t.check_error("--stats --human of a directory that is no mount",
                  t.cli(["--stats", "--human", src]), "not a sqvenvfs mount",
                  status=1)


if __name__ == "__main__":
    t.main(test)
