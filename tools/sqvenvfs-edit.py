#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-edit: run COMMAND (pip install, pip uninstall, any shell
command) in a writable view of a stack of sqvenvfs images, shown at the
path where the venv is used, and pack only what it changed into a delta
image, with sqvenvfs-pack's relocation, byte-compilation and compression.

What it promises:
  - the images are only read; no unpacked copy of the venv is written:
    the change alone lands in a work directory on node-local storage;
  - it needs no privilege: kernel overlayfs (or fuse-overlayfs) in a user,
    mount and PID namespace of its own, whose mounts and processes end
    with it, whatever happens;
  - DELTA is written under a temporary name and renamed only when
    complete; if COMMAND fails, or on a signal or a full disk, nothing is
    left: no DELTA, no mount, no process, no work directory.

Standard library only, like sqvenvfs-pack, whose code (the package
sqvenvfs_tools: beside this file in the build tree, in @PYDIR@ once
installed) it shares.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
# the build tree's copy first, so a build never runs an older install
for d in ("@PYDIR@", HERE):
    if os.path.isdir(os.path.join(d, "sqvenvfs_tools")):
        sys.path.insert(0, d)

from sqvenvfs_tools import editcli  # noqa: E402

if __name__ == "__main__":
    sys.exit(editcli.main(sys.argv[1:], HERE, os.path.realpath(__file__)))
