"""log_file takes over descriptor 2 (stack dumps, prints, C-level writes), log_config hands
logging to dictConfig. Each case runs in a fresh interpreter: both change process-wide
state (descriptor 2, the logging tree) that pytest itself relies on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT


def run_script(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


CAPTURE_SCRIPT = """
    import faulthandler, logging, os, sys
    from serve.server.logs import configure_logging, reopen_log_files

    path = sys.argv[1]
    configure_logging("info", "text", log_file=path)
    logging.getLogger("serve").info("a log line")
    print("a print to stderr", file=sys.stderr, flush=True)
    os.write(2, b"a C-level write\\n")
    faulthandler.dump_traceback(all_threads=False)
    os.rename(path, path + ".1")
    reopen_log_files()
    os.write(2, b"after the reopen\\n")
    configure_logging("info", "text")
    os.write(2, b"back on stderr\\n")
"""


def test_log_file_captures_descriptor_2_and_follows_the_reopen(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    result = run_script(CAPTURE_SCRIPT, str(path))
    rotated = (tmp_path / "serve.log.1").read_text()
    assert "INFO serve: a log line" in rotated
    assert "a print to stderr\n" in rotated
    assert "a C-level write\n" in rotated
    # faulthandler's dump names the line that was running.
    lines = textwrap.dedent(CAPTURE_SCRIPT).splitlines()
    dump_line = lines.index("faulthandler.dump_traceback(all_threads=False)") + 1
    assert f'File "<string>", line {dump_line} in <module>' in rotated
    assert path.read_text() == "after the reopen\n"
    assert result.stderr == "back on stderr\n"


FORK_SCRIPT = """
    import faulthandler, os, signal, sys
    from serve.server.logs import configure_logging

    configure_logging("info", "json", log_file=sys.argv[1])
    faulthandler.enable()
    pid = os.fork()
    if pid == 0:
        configure_logging("info", "json", log_file=sys.argv[1])
        os.kill(os.getpid(), signal.SIGABRT)
    os.waitpid(pid, 0)
"""


def test_a_forked_childs_fatal_signal_dump_lands_in_the_log_file(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    result = run_script(FORK_SCRIPT, str(path))
    assert "Fatal Python error: Aborted" in path.read_text()
    assert result.stderr == ""


DICT_CONFIG_SCRIPT = """
    import logging, os, sys
    from serve.server.logs import configure_logging

    master = logging.getLogger("serve.master")
    configure_logging("info", "text", log_file=sys.argv[1])
    configure_logging("info", "text", log_config={
        "version": 1,
        "formatters": {"mine": {"format": "MINE %(levelname)s %(name)s %(message)s"}},
        "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "mine",
                             "stream": "ext://sys.stdout"}},
        "loggers": {"serve": {"level": "DEBUG", "handlers": ["out"], "propagate": False}},
    })
    master.debug("from the master")
    logging.getLogger("serve.access").info("an access line")
    os.write(2, b"stderr is stderr again\\n")
"""


def test_log_config_replaces_the_built_in_setup(tmp_path: Path) -> None:
    path = tmp_path / "serve.log"
    result = run_script(DICT_CONFIG_SCRIPT, str(path))
    assert result.stdout.splitlines() == [
        "MINE DEBUG serve.master from the master",
        "MINE INFO serve.access an access line",
    ]
    # The built-in file handler is gone and descriptor 2 is given back.
    assert path.read_text() == ""
    assert result.stderr == "stderr is stderr again\n"
