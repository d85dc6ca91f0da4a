# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-pack never drops a file silently (issue 12, point 6), and seals
what it writes (point 1).

mksquashfs skips a path it cannot stat or read with a line on stdout (which
`-quiet` used to hide) and exit 0. Through SQVENVFS_MKSQUASHFS, a wrapper
around the real mksquashfs stands in for those cases:
- it leaves a path out and says nothing: pack compares the image with the
  tree it staged and fails with one line naming the missing path;
- it says "... ignoring" (as mksquashfs 4.5.1 does for a path longer than
  PATH_MAX) while writing everything: pack fails with that line;
in both cases non-zero, no IMAGE and no temporary file left. The real
mksquashfs: the packed image ends with a digest table that checks out."""

import os

import sqvtest as t

FAILED = []


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        FAILED.append(what)


WRAPPER = """#!/bin/sh
# Stands in for a mksquashfs that skips a path: {what}
real=$(command -v mksquashfs)
{body}
"""


def wrapper(tmp, name, what, body):
    p = os.path.join(tmp, name)
    with open(p, "w") as f:
        f.write(WRAPPER.format(what=what, body=body))
    os.chmod(p, 0o755)
    return p


def refused(tmp, venv, img, mksquashfs, want):
    r = t.pack(venv, img, check=False,
               env=t.clean_env(SQVENVFS_MKSQUASHFS=mksquashfs))
    lines = r.stderr.strip().splitlines()
    check(r.returncode != 0, f"{want}: non-zero exit ({r.returncode})")
    check(len(lines) == 1 and lines[0].startswith("sqvenvfs-pack: ") and
          want in lines[0], f"{want}: one line saying so ({lines})")
    left = [n for n in os.listdir(os.path.dirname(img))]
    check(not left, f"{want}: nothing left beside IMAGE ({left})")


def test(tmp, cleanups):
    t.require_pack_tools()
    venv = t.make_venv(os.path.join(tmp, "venv"))
    out = os.path.join(tmp, "out")
    os.mkdir(out)
    img = os.path.join(out, "v.sqfs")

    # A path left out, silently: -e passes it to the real mksquashfs.
    drop = wrapper(tmp, "drop-mksquashfs", "silently",
                   'exec "$real" "$@" -e lib/python3.11/site-packages/toml/decoder.py')
    refused(tmp, venv, img, drop, "toml/decoder.py")

    # A warning, everything written.
    warn = wrapper(tmp, "warn-mksquashfs", "with a warning",
                   '"$real" "$@" || exit $?\n'
                   'echo "Cannot stat dir/file $1/lib/x because File name too long, ignoring"')
    refused(tmp, venv, img, warn, "File name too long, ignoring")

    # The real one: sealed.
    r = t.pack(venv, img, check=False)
    check(r.returncode == 0, f"pack with the real mksquashfs ({r.stderr.strip()})")
    if r.returncode == 0:
        with open(img, "rb") as f:
            f.seek(-64, os.SEEK_END)
            magic = f.read(8)
        check(magic == b"SQVDIGST", f"the image ends with a digest table ({magic!r})")
        r = t.inspect("verify", img, check=False)
        check(r.returncode == 0 and "match their digests" in r.stdout,
              f"verify checks every block ({r.stdout.strip()} {r.stderr.strip()})")
    if FAILED:
        raise AssertionError(f"{len(FAILED)} check(s) failed")


if __name__ == "__main__":
    t.main(test)
