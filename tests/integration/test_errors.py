#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Bad input and lifecycle faults. Each refusal is one line on stderr naming
the thing and the reason, a non-zero exit, and leaves no mount and no
daemon behind. kill -9 leaves a stale mount that --unmount clears; SIGTERM
and SIGINT unmount cleanly and exit 0; a corrupt block gives EIO to that
read only, with one log line."""

import errno
import os
import shutil
import signal
import struct
import subprocess
import sys

import sqvtest as t

NOBODY = 65534


refuse = t.refuse


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        os.mkdir(src)
        big = os.path.join(src, "a-big.txt")
        with open(big, "w") as f:
            for i in range(40000):
                f.write(f"line {i}: some compressible text for the test\n")
        for i in range(20):
            with open(os.path.join(src, f"small{i}"), "w") as f:
                f.write(f"small file {i}\n")
        img = t.mksquashfs(src, os.path.join(d, "good.sqfs"), comp="gzip")
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)

        # ---- images ----
        refuse("missing image", [os.path.join(d, "nope.sqfs"), mnt],
               ["nope.sqfs", "does not exist"], mnt=mnt)
        text = os.path.join(d, "text.sqfs")
        with open(text, "w") as f:
            f.write("this is not a squashfs image, just some text\n" * 10)
        refuse("not squashfs", [text, mnt], ["text.sqfs", "not a squashfs"],
               mnt=mnt)
        empty = os.path.join(d, "empty.sqfs")
        open(empty, "w").close()
        refuse("empty file", [empty, mnt], ["empty.sqfs", "not a squashfs"],
               mnt=mnt)
        data = open(img, "rb").read()
        trunc = os.path.join(d, "truncated.sqfs")
        with open(trunc, "wb") as f:
            f.write(data[: len(data) // 2])
        refuse("truncated image", [trunc, mnt], ["truncated.sqfs", "truncated"],
               mnt=mnt)
        badcomp = os.path.join(d, "badcomp.sqfs")
        with open(badcomp, "wb") as f:
            # superblock: compression id is the le16 at offset 20
            f.write(data[:20] + struct.pack("<H", 9) + data[22:])
        refuse("unsupported compression", [badcomp, mnt],
               ["badcomp.sqfs", "unsupported compression"], mnt=mnt)
        refuse("image is a directory", [src, mnt], ["src", "directory"],
               mnt=mnt)
        refuse("good image below a bad one", [img, text, mnt],
               ["text.sqfs"], mnt=mnt)
        locked = os.path.join(d, "locked.sqfs")
        shutil.copy(img, locked)
        os.chmod(locked, 0o600)
        refuse("unreadable image (as an ordinary user)", [locked, mnt],
               ["locked.sqfs", "not readable"], user=NOBODY, mnt=mnt)

        # ---- mount points ----
        refuse("missing mount point", [img, os.path.join(d, "nomnt")],
               ["nomnt", "does not exist"])
        refuse("mount point is a file", [img, text],
               ["text.sqfs", "not a directory"])
        with t.mounted([img], mnt):
            refuse("already a mount", [img, mnt], ["mnt", "already mounted"])
        if os.geteuid() == 0 and shutil.which("unshare"):
            # A private mount namespace whose /dev has no fuse device.
            refuse("no /dev/fuse", [img, mnt], ["/dev/fuse"],
                   pre=["unshare", "-m", "sh", "-c",
                        'mount -t tmpfs none /dev && exec "$@"', "sh"],
                   mnt=mnt)

        # ---- options ----
        refuse("unknown -o option", ["-o", "bogus", img, mnt], ["bogus",
               "unknown"], mnt=mnt)
        refuse("bad thread count", ["-o", "threads=0", img, mnt],
               ["threads=0"], mnt=mnt)
        refuse("bad cache size", ["-o", "cache_size=lots", img, mnt],
               ["cache_size=lots"], mnt=mnt)
        refuse("unknown flag", ["--bogus", img, mnt], ["--bogus"], mnt=mnt)
        refuse("no mount point", [img], ["MOUNTPOINT"])
        refuse("--unmount of what is not mounted", ["--unmount", mnt],
               ["mnt", "not a mount point"])
        refuse("--unmount of another file system", ["--unmount", "/proc"],
               ["/proc", "not sqvenvfs"])
        # The quiet form the systemd unit and the Slurm Prolog run before
        # every mount: nothing mounted (or no directory) is no error...
        for where in (mnt, os.path.join(d, "no-such-dir", "mnt")):
            r = t.cli(["--unmount", "--if-mounted", where])
            t.check(r.returncode == 0 and r.stdout == "" and r.stderr == "",
                    f"--unmount --if-mounted {where}: nothing mounted, exit 0 "
                    f"quietly (rc {r.returncode}, {r.stderr.strip()!r})")
        # ...but another file system still is.
        refuse("--unmount --if-mounted of another file system",
               ["--unmount", "--if-mounted", "/proc"], ["/proc", "not sqvenvfs"])
        refuse("--if-mounted without --unmount", ["--if-mounted", img, mnt],
               ["--if-mounted goes with --unmount"], mnt=mnt)
        refuse("--stats of what is not sqvenvfs", ["--stats", d],
               ["not a sqvenvfs mount"])
        r = t.cli(["--help"])
        t.check(r.returncode == 0 and "usage" in r.stdout, "--help prints usage")
        r = t.cli(["--version"])
        t.check(r.returncode == 0 and r.stdout.startswith("sqvenvfs "),
                "--version prints the version")

        # ---- kill -9: a stale mount, --unmount, a fresh mount ----
        t.mount([img], mnt)
        pid = t.kill_daemon_of(mnt)
        t.check(pid is not None, "found the daemon to kill")
        # The kernel aborts the connection once the killed daemon's
        # /dev/fuse descriptor is closed: wait for the daemon to be gone,
        # then stat once. (Not a poll of stat: one answered while the daemon
        # still lived would cache the attributes, and the kernel serves
        # those even once the connection is aborted.)
        t.check(pid is None or t.wait_for(lambda: t.pid_gone(pid)),
                "the killed daemon is gone")
        try:
            os.stat(mnt)
            stale = False
        except OSError as e:
            stale = e.errno == errno.ENOTCONN
        t.check(stale, "after kill -9 the mount answers ENOTCONN")
        refuse("mount over a stale mount", [img, mnt], ["stale", "--unmount"])
        r = t.cli(["--unmount", mnt])
        t.check(r.returncode == 0, f"--unmount clears the stale mount "
                f"({r.stderr.strip()})")
        t.check(not t.is_mounted(mnt), "nothing is mounted after --unmount")
        with t.mounted([img], mnt):
            t.check(open(os.path.join(mnt, "small3")).read() == "small file 3\n",
                    "a fresh mount works after the stale one is cleared")
        t.check(t.wait_daemons_gone(mnt), "no daemon left after unmount")

        # ---- SIGTERM and SIGINT: clean unmount, exit 0 ----
        for sig in (signal.SIGTERM, signal.SIGINT):
            p = subprocess.Popen([t.SQVENVFS, "-f", img, mnt],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            t.check(t.wait_mounted(mnt), f"{sig.name}: foreground mount is up")
            os.listdir(mnt)
            p.send_signal(sig)
            out, err = p.communicate(timeout=t.DEADLINE)
            t.check(p.returncode == 0, f"{sig.name}: exits 0 ({p.returncode})")
            t.check(not t.is_mounted(mnt), f"{sig.name}: unmounted")
            t.check(out == "" and err == "",
                    f"{sig.name}: prints nothing ({out!r} {err!r})")

        # ---- a corrupt block: EIO for that file, one log line ----
        broken = os.path.join(d, "broken.sqfs")
        raw = bytearray(data)
        # a-big.txt sorts first: its first data block follows the superblock.
        for i in range(300, 400):
            raw[i] ^= 0x5A
        with open(broken, "wb") as f:
            f.write(raw)
        p = subprocess.Popen([t.SQVENVFS, "-f", broken, mnt],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        t.check(t.wait_mounted(mnt), "the damaged image mounts (tables intact)")
        eio = 0
        for _ in range(3):
            try:
                with open(os.path.join(mnt, "a-big.txt"), "rb") as f:
                    f.read()
            except OSError as e:
                eio += e.errno == errno.EIO
            # drop the kernel's cache of the pages that did read
            if os.geteuid() == 0:
                t.drop_caches(1)
        t.check(eio == 3, f"reading the damaged file gives EIO each time ({eio})")
        ok = all(open(os.path.join(mnt, f"small{i}")).read() ==
                 f"small file {i}\n" for i in range(20))
        t.check(ok, "every other file still reads")
        s = t.stats(mnt)
        t.check(s["corrupt_blocks"] >= 1, "--stats counts the corrupt block")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=t.DEADLINE)
        lines = err.strip().splitlines()
        t.check(len(lines) == 1 and "broken.sqfs" in lines[0] and
                "offset" in lines[0],
                f"one log line names the image and offset: {lines}")
        t.check(p.returncode == 0, "the daemon still exits 0")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
