"""Identity changes happen in a child process: the test runner keeps its own."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from serve.supervisor.privileges import PrivilegeError, chown_for_workers, drop_privileges
from tests.conftest import ROOT

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing identity needs root")


def in_child(source: str) -> dict[str, object]:
    """Run `source` in a fresh interpreter; it prints one JSON object, returned here."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


@needs_root
def test_drop_to_nobody() -> None:
    nobody = pwd.getpwnam("nobody")
    got = in_child(
        """
        import json, os
        from serve.supervisor.privileges import drop_privileges
        drop_privileges("nobody", None)
        print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                          "groups": os.getgroups()}))
        """
    )
    assert got["uid"] == got["euid"] == nobody.pw_uid
    assert got["gid"] == nobody.pw_gid
    # Root's supplementary groups are gone: only nobody's own remain.
    assert 0 not in got["groups"]  # type: ignore[operator]


@needs_root
def test_numeric_ids_without_passwd_entries() -> None:
    got = in_child(
        """
        import json, os
        from serve.supervisor.privileges import drop_privileges
        drop_privileges("54321", "54322")
        print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}))
        """
    )
    assert got == {"uid": 54321, "gid": 54322, "groups": [54322]}


@needs_root
def test_without_root_the_error_names_the_user() -> None:
    got = in_child(
        """
        import json
        from serve.supervisor.privileges import PrivilegeError, chown_for_workers, drop_privileges
        drop_privileges("nobody", None)
        try:
            drop_privileges("root", None)
        except PrivilegeError as exc:
            print(json.dumps({"error": str(exc)}))
        """
    )
    assert got == {"error": "cannot switch to user 'root': only root can change identity"}


def test_unknown_user_and_group() -> None:
    with pytest.raises(PrivilegeError) as info:
        drop_privileges("no-such-user-here", None)
    assert str(info.value) == "cannot switch to user 'no-such-user-here': no such user"
    with pytest.raises(PrivilegeError) as info:
        drop_privileges(None, "no-such-group-here")
    assert str(info.value) == "cannot switch to group 'no-such-group-here': no such group"


def test_current_identity_is_a_no_op() -> None:
    me = pwd.getpwuid(os.getuid()).pw_name
    groups = os.getgroups()
    drop_privileges(me, str(os.getgid()))
    drop_privileges(None, None)
    assert os.getgroups() == groups


def test_apply_umask() -> None:
    got = in_child(
        """
        import json, os
        from serve.supervisor.privileges import apply_umask
        os.umask(0o002)
        apply_umask(None)
        kept = os.umask(0o002)
        apply_umask(0o027)
        print(json.dumps({"kept": kept, "set": os.umask(0)}))
        """
    )
    assert got == {"kept": 0o002, "set": 0o027}


@needs_root
def test_chown_for_workers(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    path = tmp_path / "serve.log"
    path.write_text("")
    chown_for_workers(str(path), None, None)
    assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
    chown_for_workers(str(path), "nobody", None)
    assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    chown_for_workers(str(path), None, "54322")
    assert (path.stat().st_uid, path.stat().st_gid) == (0, 54322)
    with pytest.raises(PrivilegeError, match="no such user"):
        chown_for_workers(str(path), "no-such-user-here", None)
