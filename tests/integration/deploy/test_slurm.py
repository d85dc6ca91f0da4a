#!/usr/bin/env python3
"""End-to-end test of the Slurm integration on a real single-node Slurm.

Starts munged, slurmctld and slurmd (Debian's slurm-wlm and munge) with all
their state in a temporary directory, configured with the sqvenvfs SPANK
plugin, Prolog and Epilog from the build tree, and submits jobs as an
unprivileged user. Checks, in order:

  submission   bad requests are refused by sbatch (and srun) itself, with
               the reason; srun and salloc take the option too
  basic        a job imports a package from the mounted venv; the daemon ran
               as the job's user; afterwards nothing is mounted, no daemon runs
  cancel       a cancelled job is cleaned up, and so is a failed one
  stale        after the user's daemon is killed, the next job on that mount
               point clears the stale mount and mounts again
  share        two concurrent jobs of one user share one mount, which
               outlives the first and goes with the last
  conflict     a different stack at a mount point in use fails only that job,
               with the reason in its output; the node is not drained
  prolog-fail  a failure only the node can see (image removed after
               submission) fails the job clearly and does not drain the node
  staging      an image is copied to the node-local cache once, also when two
               prologs want it at the same time; the mount uses the copy
  forged       the Prolog refuses, on its own, a request that never went
               through the plugin (unreadable image, system path, symlinks)
  lru          the cache stays under its size limit by evicting the least
               recently used copy

Exit 77 only when Slurm cannot start here at all (not root, packages
missing); SQVENVFS_TEST_NO_SKIP=1 turns that into a failure.
"""
import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import sqvtest as t
from sqvtest import FAILURES as FAILED
from sqvtest import check, log, mounts_at, mounts_under, skip

TEST_USER = "sqvslurm"
PY = "/usr/bin/python3"


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, what, timeout=120):
    """Wait for a condition; a hang (not slowness) fails the test."""
    return t.wait_until(pred, what, timeout)


def daemons(exe, uid=None):
    """Processes (not zombies) running the daemon executable."""
    return t.daemon_pids(exe=exe, uid=uid)


class Cluster:
    def __init__(self, top, args):
        self.top = top
        self.args = args
        self.procs = []
        self.etc = os.path.join(top, "etc")
        self.conf = os.path.join(self.etc, "slurm.conf")
        self.site = os.path.join(self.etc, "sqvenvfs-slurm.conf")
        self.state = os.path.join(top, "sqvstate")
        self.stage = os.path.join(top, "stage")
        self.sqvlog = os.path.join(top, "sqvenvfs-slurm.log")
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def write_site(self, **extra):
        lines = [f"daemon = {self.args.daemon}",
                 f"state_dir = {self.state}",
                 f"log_file = {self.sqvlog}",
                 "mount_timeout = 60"]
        lines += [f"{k} = {v}" for k, v in extra.items()]
        with open(self.site, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        top = self.top
        os.makedirs(self.etc)
        for d in ("munge", "ctld", "spool", "logs"):
            os.makedirs(os.path.join(top, d))
        os.chmod(os.path.join(top, "munge"), 0o700)
        key = os.path.join(top, "munge", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self.sock = os.path.join(top, "munge", "munge.socket")
        munged = [shutil.which("munged") or "/usr/sbin/munged", "--foreground", "--force",
                  f"--socket={self.sock}", f"--key-file={key}",
                  f"--pid-file={top}/munge/munged.pid", f"--log-file={top}/logs/munged.log",
                  f"--seed-file={top}/munge/seed"]
        self.spawn(munged, "munged")
        wait_for(lambda: os.path.exists(self.sock), "munged's socket", 30)
        # The socket's directory must let the test user reach munged.
        os.chmod(os.path.join(top, "munge"), 0o755)

        host = socket.gethostname().split(".")[0]
        cport, dport = free_port(), free_port()
        helper = self.args.helper
        for kind in ("prolog", "epilog"):
            p = os.path.join(self.etc, f"{kind}.sh")
            with open(p, "w") as f:
                f.write(f"#!/bin/sh\nSQVENVFS_SLURM_CONF={self.site} exec {helper} {kind}\n")
            os.chmod(p, 0o755)
        with open(os.path.join(self.etc, "plugstack.conf"), "w") as f:
            f.write(f"required {self.args.plugin} conf={self.site}\n")
        self.write_site()
        conf = f"""ClusterName=sqvtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.sock}
CredType=cred/munge
SlurmctldPort={cport}
SlurmdPort={dport}
StateSaveLocation={top}/ctld
SlurmdSpoolDir={top}/spool
SlurmctldPidFile={top}/slurmctld.pid
SlurmdPidFile={top}/slurmd.pid
SlurmctldLogFile={top}/logs/slurmctld.log
SlurmdLogFile={top}/logs/slurmd.log
SlurmdDebug=debug
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=600
PlugStackConfig={self.etc}/plugstack.conf
Prolog={self.etc}/prolog.sh
Epilog={self.etc}/epilog.sh
NodeName=sqvnode NodeHostname={host} NodeAddr=127.0.0.1 CPUs=4 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=sqvnode Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        self.spawn(["slurmctld", "-D", "-i", "-f", self.conf], "slurmctld")
        self.spawn(["slurmd", "-D", "-f", self.conf, "-N", "sqvnode"], "slurmd")

        def idle():
            r = run(["sinfo", "-h", "-o", "%T"], env=self.env)
            return r.returncode == 0 and r.stdout.strip() == "idle"
        wait_for(idle, "the node to become idle", 60)

    def spawn(self, cmd, name):
        out = open(os.path.join(self.top, "logs", f"{name}.out"), "w")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                             start_new_session=True)
        self.procs.append((name, p))
        time.sleep(0.3)
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited at once with {p.returncode}")

    def stop(self):
        run(["scancel", "--full", "-u", TEST_USER], env=self.env)
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def dump_logs(self):
        for name in ("slurmctld.log", "slurmd.log", "munged.log", "slurmctld.out",
                     "slurmd.out", "munged.out"):
            p = os.path.join(self.top, "logs", name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    tail = f.readlines()[-40:]
                log(f"----- {name} (tail)\n" + "".join(tail))
        if os.path.exists(self.sqvlog):
            with open(self.sqvlog) as f:
                log("----- sqvenvfs-slurm.log\n" + f.read())

    # --- jobs, as the test user ------------------------------------------

    def as_user(self, cmd, cwd):
        return run(["setpriv", f"--reuid={TEST_USER}", f"--regid={self.gid}",
                    "--init-groups", "--", "env", f"SLURM_CONF={self.conf}"] + cmd,
                   cwd=cwd, env=self.env)

    def sbatch(self, opts, script, cwd):
        r = self.as_user(["sbatch", "--parsable"] + opts + ["--wrap", script], cwd)
        if r.returncode == 0:
            return int(r.stdout.strip().split(";")[0]), r
        return None, r

    def job_state(self, jobid):
        r = run(["squeue", "-h", "-t", "all", "-j", str(jobid), "-o", "%T"], env=self.env)
        return r.stdout.strip()

    def wait_job(self, jobid, timeout=180):
        done = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
        return wait_for(lambda: (s := self.job_state(jobid)) in done and s,
                        f"job {jobid} to finish", timeout)

    def wait_running(self, jobid, flag, timeout=120):
        wait_for(lambda: os.path.exists(flag) or self.job_state(jobid) not in
                 ("PENDING", "CONFIGURING", "RUNNING", ""),
                 f"job {jobid} to start", timeout)
        if not os.path.exists(flag):
            raise RuntimeError(f"job {jobid} ended ({self.job_state(jobid)}) before it started")

    def node_state(self):
        return run(["sinfo", "-h", "-o", "%T"], env=self.env).stdout.strip()

    def count_log(self, text):
        if not os.path.exists(self.sqvlog):
            return 0
        with open(self.sqvlog) as f:
            return sum(text in line for line in f)


def make_venv_image(top, name, value, extra_mb=0):
    """A venv from Debian's python3 holding a package 'sqvprobe'."""
    src = os.path.join(top, "build", name)
    r = run([PY, "-m", "venv", "--without-pip", src])
    if r.returncode != 0:
        raise RuntimeError(f"cannot create a venv with {PY} -m venv (python3-venv missing?): "
                           f"{r.stderr}")
    ver = "python%d.%d" % tuple(int(x) for x in run(
        [PY, "-c", "import sys;print(sys.version_info[0], sys.version_info[1])"]).stdout.split())
    pkg = os.path.join(src, "lib", ver, "site-packages", "sqvprobe")
    os.makedirs(pkg)
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write(f"VALUE = {value!r}\n")
    if extra_mb:
        with open(os.path.join(src, "payload.bin"), "wb") as f:
            f.write(os.urandom(extra_mb << 20))
    img = os.path.join(top, "images", name + ".sqfs")
    r = run(["mksquashfs", src, img, "-comp", "zstd", "-noappend", "-no-progress", "-quiet"])
    if r.returncode != 0:
        raise RuntimeError(f"mksquashfs: {r.stderr}")
    os.chmod(img, 0o644)
    return img


def user_dir(top, *parts, uid, gid):
    p = os.path.join(top, *parts)
    os.makedirs(p, exist_ok=True)
    os.chown(p, uid, gid)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--helper", required=True)
    ap.add_argument("--daemon", default="")
    args = ap.parse_args()
    args.daemon = os.environ.get("SQV_TEST_DAEMON") or args.daemon
    if args.daemon:
        args.daemon = os.path.abspath(args.daemon)
    if not args.daemon:
        skip("the sqvenvfs daemon is not part of this build")

    if os.geteuid() != 0:
        skip("needs root to start munged, slurmctld and slurmd")
    for prog in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo",
                 "mksquashfs", "fusermount3", "setpriv", "useradd"):
        if not shutil.which(prog) and not os.path.exists(f"/usr/sbin/{prog}"):
            skip(f"{prog} is not installed (Debian packages: see .ci/packages/deploy.txt)")
    if not os.path.exists("/dev/fuse"):
        skip("/dev/fuse does not exist")

    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        r = run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/bin/sh", TEST_USER])
        if r.returncode != 0:
            skip(f"cannot create the test user {TEST_USER}: {r.stderr.strip()}")
        pw = pwd.getpwnam(TEST_USER)
    uid, gid = pw.pw_uid, pw.pw_gid

    top = tempfile.mkdtemp(prefix="sqv-slurm-", dir="/tmp")
    os.chmod(top, 0o755)
    fuse_mode = os.stat("/dev/fuse").st_mode & 0o7777
    cl = Cluster(top, args)
    cl.gid = gid
    try:
        # The job's user mounts through fusermount3, which needs /dev/fuse.
        os.chmod("/dev/fuse", 0o666)
        os.makedirs(os.path.join(top, "images"))
        work = user_dir(top, "work", uid=uid, gid=gid)
        img = make_venv_image(top, "probe", "sqvenvfs-slurm-ok")
        img2 = make_venv_image(top, "other", "other-stack")
        imgs = make_venv_image(top, "staged", "staged-ok", extra_mb=48)
        secret = os.path.join(top, "images", "secret.sqfs")
        shutil.copy(img, secret)
        os.chmod(secret, 0o600)
        notsq = os.path.join(top, "images", "plain.sqfs")
        with open(notsq, "w") as f:
            f.write("not a squashfs image\n" * 10)
        os.chmod(notsq, 0o644)

        # The job's user runs the daemon and loads the plugin in sbatch:
        # copies in a directory that user can reach, wherever the build is.
        bindir = os.path.join(top, "bin")
        os.makedirs(bindir)
        for attr in ("daemon", "plugin"):
            dst = os.path.join(bindir, os.path.basename(getattr(args, attr)))
            shutil.copy(getattr(args, attr), dst)
            os.chmod(dst, 0o755)
            setattr(args, attr, dst)

        cl.start()
        log(f"slurm is up in {top}")
        tests(cl, top, work, uid, gid, img, img2, imgs, secret, notsq)
    except Exception:
        traceback.print_exc()
        FAILED.append("exception")
    finally:
        if FAILED:
            cl.dump_logs()
        try:
            cl.stop()
        finally:
            for mp in reversed(mounts_under(top)):
                run(["umount", "-l", mp])
            for pid in daemons(args.daemon, uid):
                os.kill(pid, signal.SIGKILL)
            os.chmod("/dev/fuse", fuse_mode)
            if os.environ.get("SQV_TEST_KEEP") == "1":
                log(f"state kept in {top} (SQV_TEST_KEEP=1)")
            else:
                shutil.rmtree(top, ignore_errors=True)
    if FAILED:
        log(f"{len(FAILED)} check(s) failed: {FAILED}")
        return 1
    return 0


def import_script(mp, flag=None, release=None):
    s = f"{mp}/bin/python -c 'import sqvprobe; print(\"VALUE\", sqvprobe.VALUE)' && " \
        f"grep ' {mp} ' /proc/self/mountinfo"
    if flag:
        s += f" && touch {flag} && while [ ! -e {release} ]; do sleep 0.2; done && " \
             f"{mp}/bin/python -c 'import sqvprobe; print(\"AGAIN\", sqvprobe.VALUE)'"
    return s


def output(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def clean_after(cl, mp, uid, what):
    check(not mounts_at(mp), f"{what}: nothing mounted at {mp} after the job")
    check(not daemons(cl.args.daemon, uid), f"{what}: no daemon runs after the job")


def tests(cl, top, work, uid, gid, img, img2, imgs, secret, notsq):
    def mp(name):
        return user_dir(top, "work", name, uid=uid, gid=gid)

    # --- submission checks --------------------------------------------
    os.symlink("/usr/lib", os.path.join(work, "link"))
    os.lchown(os.path.join(work, "link"), uid, gid)
    bad = [
        (f"{top}/images/missing.sqfs:{work}/m", "No such file"),
        (f"{secret}:{work}/m", "not readable"),
        (f"{notsq}:{work}/m", "not a squashfs image"),
        (f"{img}:/usr/lib/sqv", "system path"),
        (f"{img}:{work}/link", "symbolic link"),
        (f"{img}", "IMAGE[,IMAGE...]:MOUNTPOINT"),
    ]
    for spec, why in bad:
        jid, r = cl.sbatch([f"--sqvenv={spec}", "-o", f"{work}/bad.out"], "true", work)
        check(jid is None and why in r.stderr,
              f"submission of --sqvenv={spec} refused ({why}): {r.stderr.strip()!r}")
    check(cl.job_state("") == "" or not run(["squeue", "-h"], env=cl.env).stdout.strip(),
          "no job was created by refused submissions")

    # --- basic: import from the mount, in place (no staging) ------------
    m1 = mp("m1")
    out = f"{work}/basic.out"
    step = f" && srun -n1 {m1}/bin/python -c 'import sqvprobe; print(\"STEP\", sqvprobe.VALUE)'"
    jid, r = cl.sbatch([f"--sqvenv={img}:{m1}", "-o", out], import_script(m1) + step, work)
    check(jid is not None, f"basic job submitted {r.stderr.strip()}")
    if jid:
        st = cl.wait_job(jid)
        text = output(out)
        check(st == "COMPLETED" and "VALUE sqvenvfs-slurm-ok" in text,
              f"basic: the job imported the package from the mount ({st}): {text!r}")
        check("STEP sqvenvfs-slurm-ok" in text, "basic: an srun step in the job sees the mount")
        check(f"user_id={uid}" in text, "basic: the mount belongs to the job's user "
              "(the daemon ran as that user)")
        clean_after(cl, m1, uid, "basic")

    # --- srun and salloc take the option too -----------------------------
    probe = "bin/python -c 'import sqvprobe; print(\"VALUE\", sqvprobe.VALUE)'"
    for cmd in ("srun", "salloc"):
        m = mp(f"m-{cmd}")
        argv = [cmd, f"--sqvenv={img}:{m}"] + (["srun"] if cmd == "salloc" else []) + \
            ["sh", "-c", f"{m}/{probe}"]
        r = cl.as_user(argv, work)
        check(r.returncode == 0 and "VALUE sqvenvfs-slurm-ok" in r.stdout,
              f"{cmd} --sqvenv: the step imports from the mount (rc {r.returncode}): "
              f"{r.stdout.strip()!r} {r.stderr.strip()!r}")
        wait_for(lambda: not run(["squeue", "-h", "-t", "CG,R,PD"], env=cl.env).stdout.strip(),
                 f"the {cmd} job to finish", 120)
        clean_after(cl, m, uid, cmd)
    r = cl.as_user(["srun", f"--sqvenv={top}/images/missing.sqfs:{work}/m", "true"], work)
    check(r.returncode != 0 and "No such file" in r.stderr,
          f"srun refuses a bad request too: {r.stderr.strip()!r}")

    # --- cancel ---------------------------------------------------------
    m2 = mp("m2")
    flag = f"{work}/cancel.started"
    jid, r = cl.sbatch([f"--sqvenv={img}:{m2}", "-o", f"{work}/cancel.out"],
                       import_script(m2, flag, f"{work}/never"), work)
    if check(jid is not None, f"cancel job submitted {r.stderr.strip()}"):
        cl.wait_running(jid, flag)
        check(len(mounts_at(m2)) == 1, "cancel: mounted while the job runs")
        run(["scancel", str(jid)], env=cl.env)
        st = cl.wait_job(jid)
        check(st == "CANCELLED", f"cancel: job state {st}")
        clean_after(cl, m2, uid, "cancel")

    # --- a job that fails is cleaned up too --------------------------------
    m2f = mp("m2f")
    jid, r = cl.sbatch([f"--sqvenv={img}:{m2f}", "-o", f"{work}/fail.out"],
                       import_script(m2f) + " && exit 3", work)
    if check(jid is not None, f"failing job submitted {r.stderr.strip()}"):
        st = cl.wait_job(jid)
        check(st == "FAILED" and "VALUE sqvenvfs-slurm-ok" in output(f"{work}/fail.out"),
              f"failing job: ran with its mount and failed ({st})")
        clean_after(cl, m2f, uid, "failing job")

    # --- a killed daemon: the next job clears the stale mount -------------
    m6 = mp("m6")
    jid1, r = cl.sbatch([f"--sqvenv={img}:{m6}", "-o", f"{work}/stale1.out"],
                        import_script(m6, f"{work}/stale1.started", f"{work}/stale1.release"),
                        work)
    if check(jid1 is not None, f"stale: first job submitted {r.stderr.strip()}"):
        cl.wait_running(jid1, f"{work}/stale1.started")
        for pid in daemons(cl.args.daemon, uid):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not daemons(cl.args.daemon, uid), "the killed daemon to go", 30)
        check(len(mounts_at(m6)) == 1, "stale: SIGKILL left a stale mount")
        jid2, r = cl.sbatch([f"--sqvenv={img}:{m6}", "-o", f"{work}/stale2.out"],
                            import_script(m6), work)
        if check(jid2 is not None, f"stale: second job accepted at the stale mount point "
                 f"{r.stderr.strip()}"):
            st = cl.wait_job(jid2)
            check(st == "COMPLETED" and "VALUE sqvenvfs-slurm-ok" in output(f"{work}/stale2.out")
                  and cl.count_log("clearing a stale mount") == 1,
                  f"stale: the second job cleared the stale mount and got a fresh one ({st})")
        open(f"{work}/stale1.release", "w").close()
        cl.wait_job(jid1)
        clean_after(cl, m6, uid, "stale")

    # --- staging on from here --------------------------------------------
    cl.write_site(stage_dir=cl.stage, stage_max_size="1G")

    # --- share: two jobs, one mount ---------------------------------------
    m3 = mp("m3")
    jobs = []
    for i in (1, 2):
        # Two images: the top one (img) overrides the bottom one (img2).
        jid, r = cl.sbatch([f"--sqvenv={img2},{img}:{m3}", "-o", f"{work}/share{i}.out"],
                           import_script(m3, f"{work}/share{i}.started",
                                         f"{work}/share{i}.release"), work)
        check(jid is not None, f"share: job {i} submitted {r.stderr.strip()}")
        jobs.append(jid)
    if all(jobs):
        for i, jid in enumerate(jobs, 1):
            cl.wait_running(jid, f"{work}/share{i}.started")
        check(len(mounts_at(m3)) == 1, f"share: one mount for two jobs: {mounts_at(m3)}")
        pids = daemons(cl.args.daemon, uid)
        check(len(pids) == 1, f"share: one daemon for two jobs: {pids}")
        if pids:
            with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
            check(len([a for a in argv if a.startswith(cl.stage + "/jobs/")]) == 2,
                  f"staging: the daemon mounts the node-local copies: {argv}")
        st_obj = os.stat(os.path.join(cl.stage, "objects"))
        check(st_obj.st_uid == 0 and st_obj.st_mode & 0o777 == 0o700,
              "staging: the copies' directory is root's alone (0700)")
        for jid in jobs:
            st_j = os.stat(os.path.join(cl.stage, "jobs", str(jid)))
            check(st_j.st_uid == uid and st_j.st_mode & 0o777 == 0o500,
                  f"staging: job {jid}'s links are reachable by its user only (0500)")
        open(f"{work}/share1.release", "w").close()
        st = cl.wait_job(jobs[0])
        check(st == "COMPLETED", f"share: first job {st}")
        check(len(mounts_at(m3)) == 1 and len(daemons(cl.args.daemon, uid)) == 1,
              "share: the mount stays while the second job runs")
        open(f"{work}/share2.release", "w").close()
        st = cl.wait_job(jobs[1])
        text = output(f"{work}/share2.out")
        check(st == "COMPLETED" and "AGAIN sqvenvfs-slurm-ok" in text,
              f"share: second job still imports after the first ended ({st})")
        clean_after(cl, m3, uid, "share")
        check(cl.count_log(f"staged {img} ") == 1 and cl.count_log(f"staged {img2} ") == 1,
              "staging: each image was copied once for the two jobs")

    # --- conflict: another stack at a mount point in use -----------------
    m4 = mp("m4")
    jid1, r = cl.sbatch([f"--sqvenv={img}:{m4}", "-o", f"{work}/hold.out"],
                        import_script(m4, f"{work}/hold.started", f"{work}/hold.release"),
                        work)
    if check(jid1 is not None, f"conflict: holder submitted {r.stderr.strip()}"):
        cl.wait_running(jid1, f"{work}/hold.started")
        jid2, r = cl.sbatch([f"--sqvenv={img2}:{m4}", "-o", f"{work}/conflict.out"],
                            import_script(m4), work)
        if check(jid2 is not None, "conflict: second job submitted"):
            st = cl.wait_job(jid2)
            text = output(f"{work}/conflict.out")
            check(st == "FAILED" and "already in use" in text and "VALUE" not in text,
                  f"conflict: second job failed with the reason in its output ({st}): "
                  f"{text.strip()!r}")
            check(cl.node_state() == "idle" or cl.node_state() == "mixed",
                  f"conflict: the node is not drained ({cl.node_state()})")
        check(len(mounts_at(m4)) == 1, "conflict: the first job's mount is untouched")
        open(f"{work}/hold.release", "w").close()
        st = cl.wait_job(jid1)
        check(st == "COMPLETED" and "AGAIN sqvenvfs-slurm-ok" in output(f"{work}/hold.out"),
              f"conflict: the first job ran to the end ({st})")
        clean_after(cl, m4, uid, "conflict")

    # --- a failure only the node sees: image gone after submission --------
    gone = os.path.join(top, "images", "gone.sqfs")
    shutil.copy(img, gone)
    os.chmod(gone, 0o644)
    m5 = mp("m5")
    jid, r = cl.sbatch([f"--sqvenv={gone}:{m5}", "-o", f"{work}/gone.out", "--hold"],
                       import_script(m5), work)
    if check(jid is not None, f"prolog-fail: job submitted {r.stderr.strip()}"):
        os.unlink(gone)
        run(["scontrol", "release", str(jid)], env=cl.env)
        st = cl.wait_job(jid)
        text = output(f"{work}/gone.out")
        check(st == "FAILED" and "gone.sqfs" in text and "No such file" in text,
              f"prolog-fail: the job failed with the reason ({st}): {text.strip()!r}")
        check(cl.node_state() == "idle", f"prolog-fail: the node is not drained "
              f"({cl.node_state()})")
        clean_after(cl, m5, uid, "prolog-fail")

    # --- staging: two prologs at once copy once ----------------------------
    pair = []
    for i in (1, 2):
        m = mp(f"s{i}")
        jid, r = cl.sbatch([f"--sqvenv={imgs}:{m}", "-o", f"{work}/stage{i}.out"],
                           import_script(m), work)
        pair.append((jid, m))
    for jid, m in pair:
        if check(jid is not None, "staging: job submitted"):
            st = cl.wait_job(jid)
            check(st == "COMPLETED" and "VALUE staged-ok" in output(
                f"{work}/stage{pair.index((jid, m)) + 1}.out"),
                f"staging: job {jid} imported from the staged copy ({st})")
            clean_after(cl, m, uid, "staging")
    check(cl.count_log(f"staged {imgs} ") == 1,
          f"staging: concurrent prologs copied {imgs} once "
          f"({cl.count_log(f'staged {imgs} ')} copies)")
    check(cl.count_log(f"reused staged copy of {imgs}") >= 1,
          "staging: the other prolog reused the copy")
    objdir = os.path.join(cl.stage, "objects")
    check(not [n for n in os.listdir(objdir) if n.startswith(".tmp-")],
          "staging: no partial copy is left")
    check(not os.listdir(os.path.join(cl.stage, "jobs")),
          "staging: the per-job links are gone after the jobs")

    # --- lru: a 3-image workload in a cache that holds two ----------------
    lru_stage = os.path.join(top, "stage-lru")
    size = os.path.getsize(imgs)
    cl.write_site(stage_dir=lru_stage, stage_max_size=str(size * 2 + size // 2))
    l1 = make_venv_image(top, "l1", "l1", extra_mb=48)
    l2 = make_venv_image(top, "l2", "l2", extra_mb=48)
    l3 = make_venv_image(top, "l3", "l3", extra_mb=48)
    ml = mp("lru")
    # A partial copy left by a crashed Prolog: never used, removed when the
    # cache next makes room.
    os.makedirs(os.path.join(lru_stage, "objects"), mode=0o700)
    partial = os.path.join(lru_stage, "objects", ".tmp-0123456789abcdef-1-1.0-1-99999")
    with open(partial, "wb") as f:
        f.write(b"hsqs" + os.urandom(4096))
    for n, im in enumerate((l1, l2, l1, l3)):
        jid, r = cl.sbatch([f"--sqvenv={im}:{ml}", "-o", f"{work}/lru{n}.out"],
                           import_script(ml), work)
        if check(jid is not None, f"lru: job {n} submitted"):
            st = cl.wait_job(jid)
            check(st == "COMPLETED", f"lru: job {n} with {os.path.basename(im)} {st}")
    objs = sorted(os.listdir(os.path.join(lru_stage, "objects")))
    copies = [o for o in objs if o.endswith(".sqfs")]
    total = sum(os.path.getsize(os.path.join(lru_stage, "objects", o)) for o in copies)
    check(len(copies) == 2 and total <= size * 2 + size // 2,
          f"lru: the cache holds two copies within its limit: {copies}")
    check(not os.path.exists(partial) and cl.count_log("removed stale partial copy") == 1,
          "staging: a partial copy left by a crash was removed, never mounted")
    check(cl.count_log(f"staged {l2} ") == 1 and cl.count_log("evicted staged copy") >= 1,
          "lru: a copy was evicted")
    check(cl.count_log(f"staged {l1} ") == 1 and cl.count_log(f"reused staged copy of {l1}") == 1,
          "lru: l1 was reused, not copied again")
    # l2 was least recently used when l3 came: l1's copy must have survived.
    l3job, r = cl.sbatch([f"--sqvenv={l1}:{ml}", "-o", f"{work}/lru-final.out"],
                         import_script(ml), work)
    if l3job:
        cl.wait_job(l3job)
    check(cl.count_log(f"staged {l1} ") == 1,
          "lru: l1 (recently used) survived the eviction; l2 (least recently used) went")

    # --- the Prolog trusts nothing in SPANK_SQVENV ---------------------------
    # A user can put any value in the job-control environment without the
    # plugin's checks; the Prolog must refuse, as the user, on its own.
    cl.write_site(stage_dir=cl.stage, stage_max_size="1G")
    os.symlink("/etc", os.path.join(work, "etc-link"))
    os.lchown(os.path.join(work, "etc-link"), uid, gid)
    forged = [
        (f"{secret}:{work}/forged", "not readable"),
        (f"{img}:/etc", "system path"),
        (f"{img}:{work}/etc-link", "symbolic link"),
        (f"{img}:{work}/etc-link/sub", "symbolic link"),
        (f"{img}:{top}/images", "must be a directory you own"),
        (f"{img}:{work}/../images", ".."),
    ]
    for n, (spec, why) in enumerate(forged):
        jobid = 990000 + n
        env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": str(jobid), "SLURM_JOB_UID": str(uid),
               "SLURM_JOB_GID": str(gid), "SLURM_JOB_USER": TEST_USER,
               "SPANK_SQVENV": spec, "SQVENVFS_SLURM_CONF": cl.site}
        r = run([cl.args.helper, "prolog"], env=env)
        err = output(os.path.join(cl.state, "jobs", f"{jobid}.err"))
        check(r.returncode == 0 and why in err,
              f"forged SPANK_SQVENV={spec}: the Prolog exits 0 and fails the job ({why}): "
              f"{err.strip()!r}")
        run([cl.args.helper, "epilog"], env=env)
    check(not os.path.exists(os.path.join(work, "forged")) and not mounts_under(top) and
          not daemons(cl.args.daemon, uid), "forged requests: nothing created or mounted")
    check(cl.count_log(f"staged {secret}") == 0, "forged requests: the unreadable image "
          "was not copied")

    check(cl.node_state() == "idle", f"the node is idle at the end ({cl.node_state()})")
    left = [n for n in os.listdir(os.path.join(cl.state, "jobs"))]
    check(not left, f"no job records are left on the node: {left}")
    check(not os.listdir(os.path.join(cl.state, "mounts")), "no mount records are left")


if __name__ == "__main__":
    sys.exit(main())
