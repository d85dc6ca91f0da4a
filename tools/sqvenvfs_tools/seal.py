# SPDX-License-Identifier: BSD-2-Clause
"""After mksquashfs: nothing left out, nothing warned about, then sealed.

mksquashfs skips a path it cannot stat or read with one line on stdout
("Cannot stat dir/file ... because File name too long, ignoring", or
"... creating empty file") and exits 0; under -quiet that line is not even
printed. A silently incomplete image would reach users as a missing
module, so either is an error here. Sealing appends the image's block
digest table (docs/digests.md)."""

import os
import re
import subprocess

from .dumpfmt import dump_paths
from .errors import PackError

# What mksquashfs prints when it leaves something out or down. The
# summary's own lines (sizes, counts, the uid and gid names, indented)
# never match.
MKSQUASHFS_WARNING = re.compile(
    r"ignoring|[Ww]arning|Cannot |[Ff]ailed|[Ss]kipping|creating empty file|"
    r"[Ee]rror|[Uu]nrecognised")


def shorten(text, keep=160):
    return text if len(text) <= keep else text[:60] + " ... " + text[-90:]


def check_mksquashfs_output(text):
    """Refuse an image whose mksquashfs run printed a warning."""
    for line in text.splitlines():
        if line.startswith((" ", "\t")) or not MKSQUASHFS_WARNING.search(line):
            continue
        raise PackError(f"mksquashfs: {shorten(line.strip())}")


def tree_paths(src):
    """Every path under src, as the dump spells them (b"/a/b"). os.fwalk
    works from directory descriptors: a path longer than PATH_MAX is still
    seen, where a walk by path would skip it."""
    out = {b"/"}
    top = os.fsencode(src)
    for dirpath, dirnames, filenames, _fd in os.fwalk(top):
        rel = dirpath[len(top):]
        for name in dirnames + filenames:
            out.add(rel + b"/" + name)
    return out


def check_complete(inspect, list_paths, image):
    """Refuse an image that lacks one of the paths of its source:
    list_paths() returns them (tree_paths() of it), called while the
    image is read back."""
    proc = subprocess.Popen([inspect, "dump", "--raw", image],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        paths = list_paths()
        stdout, stderr = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        msg = stderr.decode("utf-8", "replace").strip().splitlines()
        raise PackError("cannot read back the new image: " +
                        (msg[0] if msg else f"exit {proc.returncode}"))
    missing = sorted(paths - dump_paths(stdout.decode("ascii")))
    if missing:
        first = os.fsdecode(missing[0])
        raise PackError(f"mksquashfs left out {len(missing)} path(s) of "
                        f"the tree, the first: {shorten(first)}")


def seal_image(inspect, image):
    """Append the image's block digest table (docs/digests.md). Called
    again after anything that writes into the image (the hot record)."""
    r = subprocess.run([inspect, "seal", image], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        msg = r.stderr.strip().splitlines()
        raise PackError(msg[0] if msg else
                        f"sqvenvfs-inspect seal: exit {r.returncode}")


def finish_image(out, inspect, src, image, done_with_src=None):
    """Check that image holds every path of src, then seal it.
    done_with_src: called once src has been read (the caller may remove
    it meanwhile)."""
    out.progress("checking the image ...", force=True)

    def listed():
        paths = tree_paths(src)
        if done_with_src is not None:
            done_with_src()
        return paths

    check_complete(inspect, listed, image)
    seal_image(inspect, image)
