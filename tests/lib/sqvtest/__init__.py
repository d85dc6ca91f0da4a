# SPDX-License-Identifier: BSD-2-Clause
"""sqvtest: the one library of sqvenvfs's Python tests (integration,
hardening, tools, deploy, bench). Real images, real mounts, no mocks.

    import sqvtest as t

harness  check, skip, require, finish, main, wait_for, run, DEADLINE
mounts   mountinfo, mount/unmount/mounted, Foreground, daemons, --stats
trees    mksquashfs, random_tree, dump_tree, compare_trees, walk_all
venvs    make_venv, pack, inspect, require_python_venv
caches   drop_caches, cache_drops, undisturbed
traces   read_trace, unescape_trace_name (-o record= traces)

meson puts tests/lib on PYTHONPATH for every test; by hand:
PYTHONPATH=tests/lib SQVENVFS=build/daemon/sqvenvfs python3 TEST.py
"""

from .harness import *  # noqa: F401,F403 (each module lists __all__)
from .mounts import *   # noqa: F401,F403
from .trees import *    # noqa: F401,F403
from .venvs import *    # noqa: F401,F403
from .caches import *   # noqa: F401,F403
from .traces import *   # noqa: F401,F403
