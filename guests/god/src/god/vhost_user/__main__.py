"""python -m god.vhost_user --socket PATH --vsock-uds PATH --guest-cid N

Serves god's virtio-vsock device model to QEMU's vhost-user-vsock-device. The host side is
the same Firecracker-style hybrid socket god uses (--vsock-uds). Runs until SIGTERM/SIGINT
(or, with --once, until the first front-end disconnects).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m god.vhost_user",
                                description="vhost-user back-end for god's virtio-vsock")
    p.add_argument("--socket", required=True, help="vhost-user socket QEMU connects to")
    p.add_argument("--vsock-uds", required=True, help="hybrid host socket (Firecracker protocol)")
    p.add_argument("--guest-cid", type=int, default=3, help="guest CID (>= 3)")
    p.add_argument("--once", action="store_true", help="exit when the front-end disconnects")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="god.vhost_user: %(levelname)s %(message)s")

    from god.vhost_user.backend import VhostUserBackend, serve_forever
    from god.virtio.vsock import VirtioVsock

    def stop(signum: int, frame: object) -> None:
        """SIGTERM/SIGINT: remove the two socket paths this process listens on and exit here.
        Not by raising SystemExit: a signal that lands in a finalizer (a socket's, say) would
        have it swallowed, and the back-end would run on (pytest_vmm/lane_link.py had that bug).
        The kernel closes the descriptors; the guest's connections end with the process."""
        for path in (a.socket, a.vsock_uds):
            try:
                os.unlink(path)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        device = VirtioVsock(a.vsock_uds, a.guest_cid)
    except (ValueError, OSError) as e:
        print(f"god.vhost_user: error: {e}", file=sys.stderr)
        return 2
    serve_forever(a.socket, lambda: VhostUserBackend(device, nrings=2), once=a.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
