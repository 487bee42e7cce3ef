"""Run `longmem` with a checkpoint write that hangs, so a test can kill it there.

    python hang_in_checkpoint.py MARKER N longmem-arguments...

The N-th checkpoint write stops after its temporary file is written and
synced, before the rename that would make it the newest checkpoint; MARKER is
created at that moment and the process sleeps until it is killed.
"""

import os
import sys
import time
from pathlib import Path

from longmem import files
from longmem.cli import main

marker, nth, argv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
real_replace = os.replace
calls = 0


def hanging_replace(src, dst):
    global calls
    if str(dst).endswith(".lmc"):
        calls += 1
        if calls == nth:
            marker.touch()
            time.sleep(3600)
    real_replace(src, dst)


files.os.replace = hanging_replace
sys.exit(main(argv))
