#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The daemon at its resource limits (issue 12, points 2 and 4).

File descriptors: at RLIMIT_NOFILE 10 and 16, with readers keeping every
FUSE thread busy, SIGTERM unmounts and the daemon exits 0 (in the
foreground, and in the background where nobody sees its exit status); the
daemon says once that the threads share one /dev/fuse descriptor.

Memory: in a memory cgroup of 40 MiB, the default block cache shrinks with
one log line, 32 readers for SQVENVFS_TEST_MEMORY_SECONDS (default 20; the
issue's full form is 60) read every byte right, nothing is OOM-killed, and
an explicit cache_size that cannot fit is refused in one line."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time

import sqvtest as t

SANITIZED = "ASAN_OPTIONS" in os.environ or "UBSAN_OPTIONS" in os.environ
CGROUP_LIMIT = 40 << 20


def make_image(d, nfiles, seed, max_size):
    src = os.path.join(d, f"src{seed}")
    os.mkdir(src)
    rng = random.Random(seed)
    digests = {}
    for i in range(nfiles):
        # Half random, half repetitive: both compressed and stored blocks.
        size = rng.randint(1, max_size)
        if i % 2:
            data = rng.randbytes(size)
        else:
            data = (b"import os\n%d\n" % i * (size // 12 + 1))[:size]
        name = f"f{i:04d}"
        with open(os.path.join(src, name), "wb") as f:
            f.write(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    img = t.mksquashfs(src, os.path.join(d, f"img{seed}.sqfs"))
    return img, digests


class Readers:
    """n threads reading whole files and checking their digests, dropping
    each file's pages afterwards so that every read reaches the daemon."""

    def __init__(self, mnt, digests, n):
        self.mnt = mnt
        self.names = sorted(digests)
        self.digests = digests
        self.stop = threading.Event()
        self.reads = 0
        self.errors = []
        self.wrong = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,))
                        for i in range(n)]
        for th in self.threads:
            th.start()

    def run(self, i):
        k = i
        while not self.stop.is_set():
            name = self.names[k % len(self.names)]
            k += 7
            try:
                fd = os.open(os.path.join(self.mnt, name), os.O_RDONLY)
                try:
                    h = hashlib.sha256()
                    while True:
                        b = os.read(fd, 1 << 17)
                        if not b:
                            break
                        h.update(b)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
                with self.lock:
                    self.reads += 1
                    if h.hexdigest() != self.digests[name]:
                        self.wrong += 1
            except OSError as e:
                with self.lock:
                    self.errors.append(f"{name}: {e}")

    def finish(self):
        self.stop.set()
        for th in self.threads:
            th.join()


def fd_limit(d, img, digests, nofile, background):
    mnt = os.path.join(d, f"mnt-fd{nofile}{'b' if background else 'f'}")
    os.mkdir(mnt)
    label = f"RLIMIT_NOFILE {nofile}, {'background' if background else 'foreground'}"
    if background:
        r = subprocess.run(["prlimit", f"--nofile={nofile}:{nofile}",
                            t.SQVENVFS, img, mnt],
                           capture_output=True, text=True)
        t.check(r.returncode == 0, f"{label}: mounted ({r.stderr.strip()})")
        pids = t.daemon_pids(mnt)
        t.check(len(pids) == 1, f"{label}: one daemon ({pids})")
        readers = Readers(mnt, digests, 16)
        deadline = time.monotonic() + 30
        while readers.reads < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        gone = t.wait_daemons_gone(mnt, timeout=30)
        readers.finish()
        t.check(gone, f"{label}: SIGTERM ends the daemon")
        t.check(not t.is_mounted(mnt), f"{label}: SIGTERM unmounts")
        return
    with t.foreground([img], mnt, wrapper=[
            "prlimit", f"--nofile={nofile}:{nofile}"]) as fg:
        t.check(fg.mounted(), f"{label}: mounted")
        readers = Readers(mnt, digests, 16)
        deadline = time.monotonic() + 30
        while readers.reads < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        with readers.lock:
            before = (readers.reads, readers.wrong, list(readers.errors))
        fg.proc.send_signal(signal.SIGTERM)
        try:
            rc = fg.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        mounted_after = t.is_mounted(mnt)
        readers.finish()
        t.check(before[0] >= 200 and before[1] == 0 and not before[2],
                f"{label}: reads under load all right before SIGTERM "
                f"({before[0]} reads, {before[1]} wrong, {before[2][:3]})")
        t.check(rc == 0, f"{label}: SIGTERM under load, exit 0 ({rc})")
        t.check(not mounted_after, f"{label}: SIGTERM unmounts")
        err = fg.stderr()
        t.check("abort" not in err.lower() and "libgcc_s" not in err,
                f"{label}: no abort ({err.strip()[-300:]!r})")
        t.check(err.count("share one") == 1 and "Too many open files" not in err,
                f"{label}: one line says the threads share one descriptor, "
                f"libfuse never runs out ({err.strip()!r})")


# ---- memory cgroup ----

def own_cgroup(controller):
    for line in open("/proc/self/cgroup"):
        num, ctrls, path = line.rstrip("\n").split(":", 2)
        if controller is None and num == "0":
            return path
        if controller and controller in ctrls.split(","):
            return path
    return None


def mount_of(fstype, option=None):
    for line in open("/proc/self/mountinfo"):
        pre, post = line.split(" - ", 1)
        f = pre.split()
        typ, _src, superopts = post.split()[:3]
        if typ == fstype and (option is None or option in superopts.split(",")):
            return f[4]
    return None


def make_memory_cgroup(limit):
    """A new memory cgroup limited to limit bytes, where this machine lets
    us make one: (directory, 'v1' or 'v2'), or None."""
    name = f"sqvtest-{os.getpid()}"
    v1 = mount_of("cgroup", "memory")
    path = own_cgroup("memory")
    if v1 and path is not None:
        d = os.path.join(v1 + path, name)
        try:
            os.mkdir(d)
            with open(os.path.join(d, "memory.limit_in_bytes"), "w") as f:
                f.write(str(limit))
            return d, "v1"
        except OSError:
            try:
                os.rmdir(d)
            except OSError:
                pass
    v2 = mount_of("cgroup2")
    path = own_cgroup(None)
    if v2 and path is not None:
        parent = v2 + path
        d = os.path.join(parent, name)
        try:
            if "memory" not in open(os.path.join(parent, "cgroup.controllers")).read().split():
                return None
            with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")
            os.mkdir(d)
            with open(os.path.join(d, "memory.max"), "w") as f:
                f.write(str(limit))
            with open(os.path.join(d, "memory.swap.max"), "w") as f:
                f.write("0")
            return d, "v2"
        except OSError:
            try:
                os.rmdir(d)
            except OSError:
                pass
    return None


def oom_kills(cg, kind):
    name = "memory.oom_control" if kind == "v1" else "memory.events"
    for line in open(os.path.join(cg, name)):
        k, v = line.split()
        if k == "oom_kill":
            return int(v)
    return 0


def memory_limit(d, cg, kind):
    img, digests = make_image(d, 240, 2, 900_000)  # ~100 MB: far above 40M
    mnt = os.path.join(d, "mnt-mem")
    os.mkdir(mnt)
    procs = os.path.join(cg, "cgroup.procs")

    def enter():
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    seconds = float(os.environ.get("SQVENVFS_TEST_MEMORY_SECONDS", "20"))
    err = open(os.path.join(d, "mem.err"), "w+")
    proc = subprocess.Popen([t.SQVENVFS, "-f", img, mnt], stdout=subprocess.DEVNULL,
                            stderr=err, preexec_fn=enter)
    try:
        deadline = time.monotonic() + 30
        while not t.is_mounted(mnt) and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        t.check(t.is_mounted(mnt), "40M cgroup: mounted")
        readers = Readers(mnt, digests, 32)
        end = time.monotonic() + seconds
        while time.monotonic() < end and proc.poll() is None:
            time.sleep(0.2)
        readers.finish()
        alive = proc.poll() is None
        st = t.stats(mnt) if alive else {}
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    finally:
        if t.is_mounted(mnt):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
    err.seek(0)
    log = err.read()
    kills = oom_kills(cg, kind)
    print(f"40M cgroup: {readers.reads} reads in {seconds:.0f} s, "
          f"cache_bytes {st.get('cache_bytes')}, oom_kill {kills}")
    t.check(readers.reads > 0 and readers.wrong == 0 and not readers.errors,
            f"40M cgroup: 32 readers, {readers.reads} reads, 0 wrong, 0 errors "
            f"({readers.wrong} wrong, {readers.errors[:3]})")
    t.check(alive and kills == 0, f"40M cgroup: no OOM kill ({kills}, alive {alive})")
    t.check(rc == 0 and not t.is_mounted(mnt), f"40M cgroup: SIGTERM, exit 0 ({rc})")
    lines = log.strip().splitlines()
    t.check(len(lines) == 1 and "memory limit 40M" in lines[0] and
            "block cache" in lines[0],
            f"40M cgroup: one line says the default cache shrank ({lines})")

    # An explicit size that cannot fit: a bad value (exit 2, as one over the
    # machine's memory), refused at once, nothing mounted.
    r = subprocess.run([t.SQVENVFS, "-o", "cache_size=64M", img, mnt],
                       capture_output=True, text=True, preexec_fn=enter)
    lines = r.stderr.strip().splitlines()
    t.check(r.returncode == 2 and len(lines) == 1 and
            "cache_size=64M does not fit" in lines[0],
            f"40M cgroup: -o cache_size=64M refused in one line ({r.returncode}, {lines})")
    t.check(not t.is_mounted(mnt), "40M cgroup: refused, nothing mounted")
    r = subprocess.run([t.SQVENVFS, "-o", "cache_size=8M", img, mnt],
                       capture_output=True, text=True, preexec_fn=enter)
    t.check(r.returncode == 0 and r.stderr == "",
            f"40M cgroup: -o cache_size=8M fits, mounted silently ({r.stderr.strip()})")
    if r.returncode == 0:
        t.check(t.stats(mnt)["uptime_seconds"] >= 0, "40M cgroup: 8M cache serves")
        t.unmount(mnt)
        t.wait_daemons_gone(mnt)


def main():
    t.require_mount_capability()
    if os.geteuid() != 0:
        t.skip("prlimit and memory cgroups need root here")
    with t.tempdir() as d:
        os.chmod(d, 0o755)
        img, digests = make_image(d, 300, 1, 400_000)
        for nofile in (10, 16):
            fd_limit(d, img, digests, nofile, background=False)
            fd_limit(d, img, digests, nofile, background=True)

        if SANITIZED:
            # ASan's shadow memory alone is far above 40M.
            print("note: the memory cgroup part runs in the plain build only")
        else:
            made = make_memory_cgroup(CGROUP_LIMIT)
            if not made:
                t.skip("cannot make a memory cgroup on this machine")
            cg, kind = made
            try:
                memory_limit(d, cg, kind)
            finally:
                # Move nothing: the daemon has exited; the cgroup is empty.
                for _ in range(50):
                    try:
                        os.rmdir(cg)
                        break
                    except OSError:
                        time.sleep(0.1)
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
