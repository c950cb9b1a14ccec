"""Identity: drop from root to the configured user and group, set the umask.

Rules:
- Called after the sockets are bound (a root master may bind port 80, then serve as an
  unprivileged user). The order is fixed by POSIX: supplementary groups, then gid, then
  uid last, because after setuid a process may no longer change its groups.
- user and group are names or numeric ids. A group left out is the user's login group.
- Every failure is one PrivilegeError naming the user or group and the reason; nothing
  is half-applied silently and nothing here exits the process.
- A file the workers must open again after dropping privileges (the log file, reopened
  on USR1) is handed to their user by the root master with chown_for_workers(), as nginx
  does with its logs.
"""

from __future__ import annotations

import grp
import os
import pwd


class PrivilegeError(Exception):
    """The identity cannot be switched; str() is the whole message for the operator."""


def apply_umask(mask: int | None) -> None:
    """Set the process umask (None keeps the inherited one)."""
    if mask is not None:
        os.umask(mask)


def chown_for_workers(path: str, user: str | None, group: str | None) -> None:
    """Give `path` to the workers' user and group; no-op without them or without root.

    Raises PrivilegeError for an unknown user or group, OSError when chown fails.
    """
    if (user is None and group is None) or os.geteuid() != 0:
        return
    uid, _, gid = _identity(user, group)
    os.chown(path, uid, gid)


def drop_privileges(user: str | None, group: str | None) -> None:
    """Switch to `user` and `group`; raise PrivilegeError when that is impossible."""
    if user is None and group is None:
        return
    uid, name, gid = _identity(user, group)
    if (uid, gid) == (os.getuid(), os.getgid()) and (uid, gid) == (os.geteuid(), os.getegid()):
        return
    who = f"user {user!r}" if user is not None else f"group {group!r}"
    if os.geteuid() != 0:
        raise PrivilegeError(f"cannot switch to {who}: only root can change identity")
    try:
        if name is not None:
            os.initgroups(name, gid)
        else:
            os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot switch to {who}: {exc.strerror or exc}") from None


def _identity(user: str | None, group: str | None) -> tuple[int, str | None, int]:
    """(uid, user name for initgroups or None, gid); the current uid when user is None."""
    uid, name, login_gid = (
        _resolve_user(user) if user is not None else (os.getuid(), None, os.getgid())
    )
    gid = _resolve_group(group) if group is not None else login_gid
    return uid, name, gid


def _resolve_user(user: str) -> tuple[int, str | None, int]:
    """(uid, name for initgroups or None, login gid) of a user name or numeric id."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():
            # A bare uid without a passwd entry (common in containers): its own group.
            return int(user), None, int(user)
        raise PrivilegeError(f"cannot switch to user {user!r}: no such user") from None
    return entry.pw_uid, entry.pw_name, entry.pw_gid


def _resolve_group(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise PrivilegeError(f"cannot switch to group {group!r}: no such group") from None
