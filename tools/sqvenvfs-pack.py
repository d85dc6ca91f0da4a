#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-pack: pack a Python venv (or conda prefix) into a squashfs image
that works when mounted at any path, or into a delta image over a stack of
base images.

What it promises:
  - VENV_DIR is only read, never written (its interpreter runs with -S -B);
  - everything happens in a private staging copy under TMPDIR (or /dev/shm
    when it fits), removed at the end whatever happens;
  - the image is written under a hidden temporary name beside IMAGE and
    renamed only when complete: a failed or interrupted run leaves no IMAGE;
  - the same input gives a byte-identical image (mtimes, owners, order and
    the creation time are all fixed by the input, or by SOURCE_DATE_EPOCH).

Standard library only: it runs on Debian's /usr/bin/python3 and drives the
venv's own interpreter (for compileall) and mksquashfs as subprocesses.
The code lives in the package sqvenvfs_tools: beside this file in the
build tree, in @PYDIR@ once installed.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
# the build tree's copy first, so a build never runs an older install
for d in ("@PYDIR@", HERE):
    if os.path.isdir(os.path.join(d, "sqvenvfs_tools")):
        sys.path.insert(0, d)

from sqvenvfs_tools import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:], HERE))
