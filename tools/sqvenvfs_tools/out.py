# SPDX-License-Identifier: BSD-2-Clause
"""What a tool prints: progress on a terminal only, warnings and errors
always, the summary unless --quiet, details with --verbose."""

import sys
import time


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def change_counts(added, changed, removed, opaque):
    """A delta's change in the words sqvenvfs-pack --base and sqvenvfs-edit
    both use. Every entry (file, directory, symlink) counts once, those
    below a new directory too: added, the base has no entry at its path;
    changed, a non-directory the base has (a directory the base has is
    neither, only the way to what changed)."""
    return (f"{added} entries added, {changed} changed, {removed} removed "
            f"(whiteouts), {opaque} directories replaced (opaque)")


class Out:
    def __init__(self, prog, quiet, verbose):
        self.prog = prog
        self.quiet = quiet
        self.verbose = verbose
        self.tty = sys.stderr.isatty() and not quiet
        self._last = 0.0
        self._shown = False

    def progress(self, msg, force=False):
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        sys.stderr.write("\r\033[K" + msg[:200])
        sys.stderr.flush()
        self._shown = True

    def end_progress(self):
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False

    def warn(self, msg):
        self.end_progress()
        print(f"{self.prog}: warning: {msg}", file=sys.stderr)

    def error(self, msg):
        self.end_progress()
        print(f"{self.prog}: {msg}", file=sys.stderr)

    def info(self, msg):
        if not self.quiet:
            self.end_progress()
            print(msg)

    def detail(self, msg):
        if self.verbose and not self.quiet:
            self.end_progress()
            print(msg)
