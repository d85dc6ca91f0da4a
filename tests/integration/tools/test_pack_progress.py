# SPDX-License-Identifier: BSD-2-Clause
"""Progress on a terminal: sqvenvfs-pack run on a pty shows, for every
stage, its count against its total (staging, relocating, byte-compiling,
comparing with the base for a delta, and mksquashfs writing the image),
each ending at its total; the image is the same as without a terminal,
and without one nothing of the progress is printed."""

import os
import pty
import re
import subprocess

import sqvtest as t


def pack_on_pty(*args):
    """sqvenvfs-pack ARGS with stdin, stdout and stderr on a new pty:
    (exit status, everything it wrote, progress redraws as lines)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([t.PACK, *args], stdin=slave, stdout=slave,
                            stderr=slave, env=t.clean_env())
    os.close(slave)
    out = bytearray()
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:         # EIO: the child side is closed
            break
        if not b:
            break
        out += b
    os.close(master)
    proc.wait()
    text = out.decode("utf-8", "replace").replace("\x1b[K", "")
    return proc.returncode, re.sub(r"\r\n?", "\n", text)


def check_total(text, pattern, what):
    """Some line of text matches pattern, whose groups are a count and its
    total, with the count at the total (the stage's last word)."""
    ends = [m.groups() for m in re.finditer(pattern, text)]
    t.check(ends, f"on a terminal, {what} shows a count of a total",
            text[-3000:])
    if ends:
        t.check(any(a == b and int(b) > 0 for a, b in ends),
                f"{what}: the count reaches its total", ends[-5:])


def test(tmp, cleanups):
    t.require_pack_tools()
    venv = t.make_venv(os.path.join(tmp, "venv"))

    img = os.path.join(tmp, "tty.sqfs")
    rc, text = pack_on_pty(venv, img)
    t.check(rc == 0, "pack on a pty exits 0", text[-2000:])
    check_total(text, r"staging: (\d+) of (\d+) files, ", "staging")
    check_total(text, r"relocating: (\d+) of (\d+) files", "relocating")
    check_total(text, r"byte-compiling: (\d+) of (\d+) modules",
                "byte-compiling")
    check_total(text, r"writing the image \(zstd\): (\d+) of (\d+) blocks",
                "mksquashfs writing the image")
    t.check(re.search(r"staging: \d+ of \d+ files, [\d.]+ [KM]?i?B of "
                      r"[\d.]+ [KM]?i?B", text),
            "staging counts bytes against the venv's too", text[-2000:])
    t.check("packed " in text, "the summary follows the progress", text)

    # the same image without a terminal, and no progress printed there
    plain = os.path.join(tmp, "plain.sqfs")
    r = t.pack(venv, plain)
    t.check(t.sha256(plain) == t.sha256(img),
            "the image is the same on a terminal and off one")
    t.check("\r" not in r.stderr and " of " not in r.stderr,
            "without a terminal no progress is printed", r.stderr)

    # a delta: the comparisons with the base count too
    t.copy_pkg(venv, "six.py")
    delta = os.path.join(tmp, "delta.sqfs")
    rc, text = pack_on_pty("--base", img, venv, delta)
    t.check(rc == 0, "a delta on a pty exits 0", text[-2000:])
    check_total(text, r"comparing modules with the base images: (\d+) of "
                r"(\d+)", "comparing the modules before compiling")
    check_total(text, r"comparing with the base images: (\d+) of (\d+) "
                r"entries", "comparing with the base")
    check_total(text, r"writing the image \(zstd\): (\d+) of (\d+) blocks",
                "mksquashfs writing the delta")


if __name__ == "__main__":
    t.main(test)
