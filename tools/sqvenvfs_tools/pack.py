# SPDX-License-Identifier: BSD-2-Clause
"""The steps of one pack, in order: check the inputs, read the base stack,
stage a copy, relocate it, byte-compile it, fix its times, prune it to a
delta, write the image, and report. Pack owns the run's temporary things
(staging directory, temporary image); cleanup() removes them."""

import os
import shutil
import threading
import time

from .bytecompile import byte_compile
from .delta import (BaseStack, Delta, QuickCheck, check_bases, find_inspect,
                    sources_in_base)
from .editable import find_editables
from .errors import PackError
from .fsutil import inside, tree_size, tree_totals
from .hot import hot_summary, write_record
from .imagefile import TempImage
from .mksquashfs import SquashOptions, find_mksquashfs, write_squashfs
from .seal import finish_image, seal_image
from .out import change_counts, human
from .relocate import Relocator
from .stage import Stage, make_staging, pick_tmpdir
from .times import fix_times, source_date_epoch
from .venvinfo import (find_interpreter, interpreter_info, made_at, read_cfg,
                       venv_kind)

# Up to this many entries, the listing made to count the venv is kept for
# staging to reuse (a DirEntry with its lstat: some hundred bytes each).
LISTINGS_KEPT = 200_000


class Pack:
    def __init__(self, out, args, bindir, plan=None):
        self.out = out
        self.plan = plan            # --hot: hot.Plan, else None
        self.hot = None
        self.args = args
        self.bindir = bindir
        self.t0 = time.monotonic()
        self.stage_top = None
        self.dropping = None        # the thread removing stage_top
        self.tmp = None             # TempImage
        self.base = None            # BaseStack, for a delta
        self.quick = None           # QuickCheck, unless --checksum
        self.delta = None
        self.python = None
        self.tag = self.version = None
        self.nfail = 0
        self.from_base = set()      # base pycs a delta leaves to the base

    def run(self):
        self.check_inputs()
        self.tmp.create()
        # The base stack's listing comes first (it is quick): a delta
        # stages only what it does not already hold. Its contents, when a
        # comparison needs them, are read while the venv is staged (on
        # another core); a bad base still fails before the long work:
        # staging checks at each directory whether a read failed.
        if self.args.base:
            # --keep-owner: staged owners are whoever packs, so every file
            # is staged and compared by content, as with --checksum
            full = self.args.checksum or self.args.keep_owner
            self.base = BaseStack(self.out, self.inspect, self.args.base,
                                  full, source_date_epoch())
            self.base.start()
            if not full:
                self.quick = QuickCheck(
                    self.base.tree(), source_date_epoch(),
                    None if self.args.no_compile else self.tag,
                    self.args.levels)
        self.stage_venv()
        self.out.progress("relocating ...", force=True)
        self.reloc = Relocator(self.out, self.stage, self.venv_paths,
                               self.explained)
        self.reloc.run()
        if self.base is not None:
            self.base.tree()    # shows that it waits for the read, if so
        if self.quick is not None:
            self.from_base = set(self.quick.skipped)
        if not self.args.no_compile:
            self.compile()
        self.fix_times()
        if self.plan is not None:
            self.plan.match(self.root, self.args.venv, self.from_base)
        if self.base is not None:
            self.delta = Delta(self.out, self.root, self.base,
                               not self.args.keep_owner, self.from_base,
                               sum(self.counts),
                               self.quick and self.quick.vouches)
            self.delta.run()
        self.write_image()

    def cleanup(self):
        if self.tmp is not None:
            self.tmp.discard()
        if self.dropping is not None:
            self.dropping.join()
        if self.stage_top:
            shutil.rmtree(self.stage_top, ignore_errors=True)
            self.stage_top = None
        # last: should it fail, the files of the run are gone already
        if self.base is not None:
            self.base.stop()

    def drop_staging(self):
        """Once finish_image() has listed the staged tree, the tree goes,
        in a thread while the image is read back, checked and sealed
        (subprocesses), rather than after; cleanup() waits for it."""
        self.dropping = threading.Thread(
            target=shutil.rmtree, args=(self.stage_top,),
            kwargs={"ignore_errors": True})
        self.dropping.start()

    # steps ---------------------------------------------------------------

    def check_inputs(self):
        """Everything that can be refused before any work, in the order a
        user fixes them: the venv, IMAGE, the programs, the bases."""
        args = self.args
        self.venv = os.path.abspath(args.venv)
        self.kind = venv_kind(self.venv)
        self.origin = made_at(self.venv)
        self.venv_paths = sorted(
            {self.venv, os.path.realpath(self.venv)} |
            ({self.origin} if self.origin else set()), key=len, reverse=True)
        image = os.path.abspath(args.image)
        if inside(image, self.venv_paths) or \
                inside(os.path.realpath(image), self.venv_paths):
            raise PackError(f"{args.image}: must not be inside {args.venv}")
        self.tmp = TempImage(image, args.image, args.force)
        self.tmp.check()
        self.mksquashfs = find_mksquashfs()
        check_bases(args.base, image)
        self.inspect = find_inspect(self.bindir)
        self.check_editables()
        self.cfg = read_cfg(self.venv)
        if not args.no_compile:
            self.python = find_interpreter(self.venv)
            if not self.python:
                raise PackError(f"{self.venv}/bin/python3: missing; cannot "
                                "byte-compile (use --no-compile)")
            self.tag, self.version = interpreter_info(self.python)
        self.version = (self.version or self.cfg.get("version")
                        or self.cfg.get("version_info"))

    def check_editables(self):
        """Editable installs import from outside the venv: a warning each,
        or with --strict the first one is an error."""
        self.editables, self.explained = find_editables(self.venv,
                                                        self.venv_paths)
        for name, path in self.editables:
            msg = (f"{name}: editable install from {path}, outside the "
                   "venv: not in the image, it imports only where that "
                   "path exists")
            if self.args.strict:
                raise PackError(msg + " (--strict)")
            self.out.warn(msg)

    def stage_venv(self):
        self.out.progress("staging: counting the venv's files ...",
                          force=True)
        listings = {}
        _, files, size = tree_totals(self.venv, listings, LISTINGS_KEPT)
        tmpbase = pick_tmpdir(self.args.tmpdir, size)
        self.stage_top = make_staging(tmpbase)
        self.root = os.path.join(self.stage_top, "root")
        self.stage = Stage(self.out, self.venv, self.root,
                           [os.fsencode(v) for v in self.venv_paths],
                           readable=not self.args.keep_owner,
                           totals=(files, size),
                           check=self.base and self.base.check,
                           quick=self.quick, listings=listings)
        self.stage.copy()

    def compile(self):
        in_base = None
        if self.base is not None and self.tag:
            # A delta compiles only what the base lacks or changed: the
            # comparison of the sources comes first.
            found, pycs = sources_in_base(
                self.out, self.root, self.base, not self.args.keep_owner,
                source_date_epoch(), self.tag, self.args.levels,
                self.quick and self.quick.vouches)
            self.from_base |= pycs
            in_base = os.path.join(self.stage_top, "in-base")
            with open(in_base, "wb") as f:
                f.write(b"\0".join(found))
        res = byte_compile(self.out, self.python, self.root,
                           self.args.mount_point, self.args.levels,
                           self.args.jobs, in_base)
        self.nfail, self.reused = res.failed, res.reused
        self.compiled, self.compiled_base = res.compiled, res.from_base
        if self.quick is not None:
            self.compiled_base += self.quick.sources
        if self.nfail:
            self.out.warn(f"{self.nfail} file(s) could not be byte-compiled "
                          f"(syntax errors for this Python), first: "
                          f"{res.first}")

    def fix_times(self):
        clamp = source_date_epoch()
        newest, tally = fix_times(self.stage, self.root, None, clamp)
        if self.quick is not None:
            # the files left to the base are the venv's all the same
            tally.files += self.quick.files
            tally.size += self.quick.bytes
            newest = max(newest, self.quick.newest // 10**9)
        self.counts = (tally.files, tally.dirs, tally.links)
        self.size_view = tally.size
        self.epoch = clamp if clamp is not None else \
            max(0, min(newest, 2**32 - 1))

    def write_image(self):
        args = self.args
        self.squash = SquashOptions(
            comp=args.comp, level=args.level, block_size=args.block_size,
            all_root=not args.keep_owner, jobs=args.jobs, epoch=self.epoch)
        # only a delta changed the tree since fix_times() counted it
        self.size_before = self.size_view if self.delta is None else \
            tree_size(self.root)
        extra = []
        if self.plan is not None:
            self.plan.keep_present(self.root)
            sort_file = os.path.join(self.stage_top, "sort")
            self.plan.write_sort(self.root, sort_file, args.block_size,
                                 self.epoch)
            extra = ["-sort", sort_file]
        write_squashfs(self.out, self.mksquashfs, self.root, self.tmp.path,
                       self.squash, extra)
        finish_image(self.out, self.inspect, self.root, self.tmp.path,
                     self.drop_staging)
        if self.plan is not None:
            self.hot = write_record(self.tmp.path, self.inspect, self.plan,
                                    args.block_size)
            # The record was written into the image: digest it afresh.
            seal_image(self.inspect, self.tmp.path)
        self.size_after = self.tmp.size()
        self.tmp.commit()

    # the summary ---------------------------------------------------------

    def report(self):
        out, args, reloc = self.out, self.args, self.reloc
        for rel, what in reloc.rewritten:
            out.detail(f"rewritten: {rel} ({what})")
        shown = 0
        for rel, why in reloc.warnings:
            if shown == 20 and not args.verbose:
                out.warn(f"... and {len(reloc.warnings) - 20} more "
                         "(see --verbose)")
                break
            out.warn(f"{rel}: {why}")
            shown += 1
        kinds = {}
        for _, what in reloc.rewritten:
            kinds[what] = kinds.get(what, 0) + 1
        dt = time.monotonic() - self.t0
        what = self.kind + (f", Python {self.version}" if self.version
                            else "")
        out.info(f"{out.prog}: {args.image}: packed {args.venv} ({what})")
        if self.origin and self.origin not in (
                self.venv, os.path.realpath(self.venv)):
            out.info(f"  made at: {self.origin} (its paths rewritten too)")
        nfiles, ndirs, nlinks = self.counts
        out.info(f"  entries: {nfiles} files, {ndirs} directories, "
                 f"{nlinks} symlinks below the root "
                 f"({human(self.size_view)})")
        d = self.delta
        if d is not None:
            out.info(f"  delta over {len(args.base)} base image(s): "
                     + change_counts(d.added, d.changed, d.removed, d.opaque)
                     + f", {d.kept} unchanged")
            q = self.quick
            out.info("  compared with the base: " + (
                f"{q.files + len(q.vouched)} files by size and mtime, "
                f"{len(self.base.compared)} by content" if q is not None else
                f"{len(self.base.compared)} files by content (" +
                ("--checksum" if args.checksum else "--keep-owner") + ")"))
            for p in d.added_paths:
                out.detail(f"in delta: {os.path.relpath(p, self.root)}")
        out.info("  relocated: " + (", ".join(
            f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing needed")
            + (f"; {len(reloc.warnings)} warning(s)" if reloc.warnings
               else ""))
        if not args.no_compile:
            out.info(f"  byte-compiled for {self.tag}, optimisation "
                     f"{','.join(map(str, args.levels))} (unchecked-hash "
                     f"pycs): {self.compiled} modules compiled, "
                     f"{self.reused} with valid pycs kept"
                     + (f", {self.compiled_base} unchanged with the base's "
                        "pycs" if self.base is not None else "")
                     + (f"; {self.nfail} failed" if self.nfail else ""))
        out.info(f"  size: {human(self.size_before)} staged -> "
                 f"{human(self.size_after)} image "
                 f"({self.squash.describe()}) in {dt:.1f} s")
        if self.hot is not None:
            hot_summary(out, self.plan, self.hot, "the venv")
        if self.kind == "venv" and self.cfg.get("home"):
            out.info(f"  needs: the base interpreter in {self.cfg['home']} "
                     "on the machine that mounts it")
