# SPDX-License-Identifier: BSD-2-Clause
"""The one place that runs mksquashfs: which binary, which options, and
how its failures become one line. Every image the tools write goes
through write_squashfs(); a new layout or option is a new field of
SquashOptions (or an entry of `extra`), not a second command line."""

import fcntl
import os
import re
import selectors
import shutil
import signal
import struct
import subprocess
import termios

from .errors import PackError, UsageError
from .seal import check_mksquashfs_output

COMPRESSORS = ("zstd", "lz4", "xz", "gzip")


class SquashOptions:
    """How to write the image. epoch is the superblock's creation time;
    jobs the compressor threads; all_root makes every owner root; xattrs
    stores the tree's extended attributes (only when re-laying out an
    image that has them: the staged tree's xattrs are then the image's)."""

    def __init__(self, comp="zstd", level=None, block_size=128 << 10,
                 all_root=True, jobs=1, epoch=0, xattrs=False):
        self.comp = comp
        self.xattrs = xattrs
        self.level = level
        self.block_size = block_size
        self.all_root = all_root
        self.jobs = jobs
        self.epoch = epoch

    def describe(self):
        return (self.comp + (f" level {self.level}" if self.level else "")
                + f", {self.block_size // 1024} KiB blocks")


def check_level(comp, level):
    """The compression level for comp: the given one checked, or the
    default (zstd 3, what CSCS's uenv uses)."""
    if level is not None:
        if comp == "zstd" and not 1 <= level <= 22:
            raise UsageError(f"--level {level}: zstd takes 1 to 22")
        if comp == "gzip" and not 1 <= level <= 9:
            raise UsageError(f"--level {level}: gzip takes 1 to 9")
        if comp in ("lz4", "xz"):
            raise UsageError(f"--level {level}: not supported with {comp}")
        return level
    return 3 if comp == "zstd" else None


def find_mksquashfs():
    p = os.environ.get("SQVENVFS_MKSQUASHFS")
    if p:
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            raise PackError(f"{p}: SQVENVFS_MKSQUASHFS is not an executable")
        return p
    p = shutil.which("mksquashfs")
    if not p:
        raise PackError("mksquashfs: not found (install Debian's "
                        "squashfs-tools, or set SQVENVFS_MKSQUASHFS)")
    return p


def mksquashfs_command(mksquashfs, src, dst, opts, extra=(),
                       progress=False):
    """The command line: reproducible (fixed creation time, sorted
    entries, no xattrs unless opts.xattrs: those of a venv would make
    images depend on the machine),
    no recovery file, never appending to an existing dst; with progress,
    mksquashfs draws its progress bar."""
    cmd = [mksquashfs, src, dst, "-noappend", "-no-recovery", "-reproducible",
           "-comp", opts.comp]
    if opts.level is not None:
        cmd += ["-Xcompression-level", str(opts.level)]
    cmd += ["-b", str(opts.block_size), "-mkfs-time", str(opts.epoch),
            "-xattrs" if opts.xattrs else "-no-xattrs",
            "-processors", str(opts.jobs)]
    if opts.all_root:
        cmd.append("-all-root")
    cmd += list(extra)
    # Not -quiet: it also hides the line mksquashfs prints when it leaves a
    # path out (write_squashfs reads what it says).
    if not progress:
        cmd += ["-no-progress"]
    return cmd


# mksquashfs's progress bar: "[===    /] 987/2873  34%", redrawn after \r
BAR = re.compile(rb"\[[^\]\r\n]*\] *(\d+)/(\d+) +(\d+)%")


def follow(out, proc, master, comp):
    """Read mksquashfs's stdout from the pty master (it flushes its bar
    only to a terminal) and its stderr until both end, showing its
    progress; returns (stdout without the bar, stderr)."""
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    o, e = bytearray(), bytearray()
    last = None
    while sel.get_map():
        for key, _ in sel.select():
            try:
                b = os.read(key.fd, 65536)
            except OSError:         # EIO: the pty's other side is closed
                b = b""
            if not b:
                sel.unregister(key.fileobj)
                continue
            if key.fd != master:
                e += b
                continue
            o += b
            bars = BAR.findall(bytes(o[-4096:]))
            if bars and bars[-1] != last:
                last = bars[-1]
                n, total, pct = (int(x) for x in last)
                out.progress(f"writing the image ({comp}): {n} of {total} "
                             f"blocks ({pct}%)", force=pct == 100)
    sel.close()
    proc.wait()
    text = BAR.sub(b"", bytes(o)).replace(b"\r\n", b"\n")
    return text.replace(b"\r", b""), bytes(e)


def write_squashfs(out, mksquashfs, src, dst, opts, extra=()):
    """Write the tree src into the file dst (which exists, and is
    overwritten). Raises PackError with mksquashfs's own reason, also
    when it exits 0 but warned or left a path out."""
    cmd = mksquashfs_command(mksquashfs, src, dst, opts, extra,
                             progress=out.tty)
    # -mkfs-time decides; SOURCE_DATE_EPOCH would conflict with it
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    out.progress(f"writing the image ({opts.comp}) ...", force=True)
    # A signal that interrupted Popen itself would leave mksquashfs running
    # unknown to us, and writing dst after the cleanup removed it: block the
    # signals until proc is known (the child unblocks them before exec).
    # On a terminal, mksquashfs's stdout is a pty of ours: it draws (and
    # flushes) its progress bar only there, and follow() shows it.
    master = slave = None
    if out.tty:
        try:
            master, slave = os.openpty()
            # 80 columns: a bar of 0 would be all mksquashfs draws
            fcntl.ioctl(slave, termios.TIOCSWINSZ,
                        struct.pack("HHHH", 24, 80, 0, 0))
        except OSError:
            for fd in (slave, master):
                if fd is not None:
                    os.close(fd)
            master = slave = None
            cmd.append("-no-progress")
    stop = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    proc = None
    try:
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL,
            stdout=slave if slave is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK,
                                                      mask))
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if slave is not None:
            os.close(slave)
            slave = None
            o, e = follow(out, proc, master, opts.comp)
        else:
            o, e = proc.communicate()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if proc is not None:
            try:
                proc.terminate()
                proc.wait(timeout=10)
            except BaseException:
                proc.kill()
                proc.wait()
        raise
    finally:
        for fd in (slave, master):
            if fd is not None:
                os.close(fd)
    if proc.returncode != 0:
        lines = [l for l in (e or b"").decode("utf-8", "replace").splitlines()
                 if l.strip()]
        why = lines[0] if lines else f"exit {proc.returncode}"
        for l in lines:
            if re.search(r"No space|ENOSPC|Failed to write|error", l, re.I):
                why = l
                break
        raise PackError(f"mksquashfs: {why.strip()}")
    check_mksquashfs_output((o or b"").decode("utf-8", "replace") + "\n" +
                            (e or b"").decode("utf-8", "replace"))
