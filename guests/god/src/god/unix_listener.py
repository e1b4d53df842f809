"""A Unix-socket listener whose path appears only once it accepts connections.

bind() creates the path before listen() makes it accept, so a client that waits for the path
(the plugin, the lane's tests, QEMU's vhost-user front-end) could connect in between and be
refused. Binding a temporary name and renaming it into place closes that window: rename(2) is
atomic, and a socket keeps listening under its new name.
"""

from __future__ import annotations

import os
import socket


def listen_unix(path: str, backlog: int) -> socket.socket:
    """A listening SOCK_STREAM socket at ``path`` (an old file there is replaced)."""
    staging = f"{path}.{os.getpid()}.tmp"
    for stale in (path, staging):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(staging)
        server.listen(backlog)
        os.rename(staging, path)
    except BaseException:
        server.close()
        try:
            os.unlink(staging)
        except FileNotFoundError:
            pass
        raise
    return server
