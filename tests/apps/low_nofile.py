"""`python low_nofile.py ARGS`: serve ARGS with RLIMIT_NOFILE lowered to $NOFILE_LIMIT, as
`ulimit -n` would, so a test can run out of file descriptors without lowering its own."""

from __future__ import annotations

import os
import resource
import runpy

_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (int(os.environ["NOFILE_LIMIT"]), hard))
runpy.run_module("supervisor", run_name="__main__")
