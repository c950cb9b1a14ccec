"""The exit-code contract between worker, master and the operator's shell.

0 clean stop, 2 config error, 3 worker boot error, 4 app load error. The master halts on 3
and 4 at first start instead of crash-looping; any other worker exit restarts that slot.
"""

from __future__ import annotations

OK = 0
CONFIG_ERROR = 2
BOOT_ERROR = 3
APP_LOAD_ERROR = 4
