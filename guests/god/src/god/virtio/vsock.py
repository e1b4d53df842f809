"""virtio-vsock (virtio 1.2 section 5.10) with Firecracker's hybrid host socket.

Host side (Firecracker's protocol, docs/virtio.md):
  * host-initiated: a host process connects to the Unix socket PATH and sends
    "CONNECT <port>\\n"; once the guest accepts, the device answers "OK <hostport>\\n" and
    the socket carries the stream both ways; if the guest refuses, the socket is closed.
  * guest-initiated: a guest connection to CID 2 port P is connected to the Unix socket
    "PATH_P"; nobody listening there means RST to the guest.

Flow control is the spec's credit scheme: each side advertises buf_alloc (its receive
buffer) and fwd_cnt (bytes it has consumed); a sender may have at most
buf_alloc - (sent - fwd_cnt) bytes in flight. Towards the guest the device reads a host
socket only while the guest has credit and a receive buffer is posted, so back-pressure
reaches the host process through its socket and nothing is dropped. Towards the host,
bytes the host socket cannot take yet wait in a per-connection buffer bounded by our
buf_alloc, and fwd_cnt advances only as they really leave.

One worker thread owns all state; the transports (virtio-mmio in god, vhost-user for QEMU)
only wake it through eventfds.
"""

from __future__ import annotations

import collections
import errno
import os
import selectors
import socket
import struct

from god.devices.diag import say
from god.memory import GuestMemoryError
from god.unix_listener import listen_unix
from god.virtio.device import DEVICE_ID_VSOCK, ActiveQueues, VirtioDevice, Worker, drain_eventfd
from god.virtio.queue import Chain, QueueError, Virtqueue

HOST_CID = 2
RXQ, TXQ, EVQ = 0, 1, 2
QUEUE_SIZE = 256
HDR = struct.Struct("<QQIIIHHIII")   # src_cid dst_cid src_port dst_port len type op flags
HDR_SIZE = HDR.size                  #   buf_alloc fwd_cnt  (44 bytes)
TYPE_STREAM = 1
OP_REQUEST, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW = 1, 2, 3, 4, 5
OP_CREDIT_UPDATE, OP_CREDIT_REQUEST = 6, 7
SHUT_RCV, SHUT_SEND = 1, 2
BUF_ALLOC = 256 * 1024       # what we advertise per connection (host-bound buffer bound)
MAX_PKT = 64 * 1024          # largest payload we put in one guest receive buffer
HANDSHAKE_MAX = 64           # "CONNECT 4294967295\n" fits; more is garbage
FIRST_HOST_PORT = 1 << 30    # local ports we invent for host-initiated connections


class Conn:
    """One host connection and its stream's state (virtio 1.2 section 5.10.6)."""

    # A plain class, not a dataclass: god's start-up time (see god/machine.py).
    def __init__(self, sock: socket.socket, host_port: int = 0, guest_port: int = 0,
                 state: str = "handshake", peer_buf_alloc: int = 0, peer_fwd_cnt: int = 0) -> None:
        self.sock = sock
        self.host_port = host_port
        self.guest_port = guest_port
        self.state = state                # handshake -> connecting -> open -> closed
        self.line = b""                   # handshake bytes so far
        self.to_host = bytearray()        # guest data not yet written
        self.early = b""                  # host bytes that followed the CONNECT line
        self.fwd_cnt = 0                  # guest->host bytes delivered to the host socket
        self.fwd_sent = 0                 # fwd_cnt we last told the guest
        self.tx_cnt = 0                   # host->guest bytes sent
        self.peer_buf_alloc = peer_buf_alloc
        self.peer_fwd_cnt = peer_fwd_cnt
        self.host_eof = False             # host shut its write side (we told the guest SEND)
        self.guest_no_send = False        # guest SHUTDOWN SEND: shut host write when drained
        self.guest_no_recv = False        # guest SHUTDOWN RCV: stop reading the host
        self.mask = 0                     # selector interest currently registered

    def credit(self) -> int:
        return self.peer_buf_alloc - ((self.tx_cnt - self.peer_fwd_cnt) & 0xFFFFFFFF)


class VirtioVsock(VirtioDevice):
    device_id = DEVICE_ID_VSOCK
    name = "virtio-vsock"
    queue_sizes = (QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE)

    def __init__(self, uds_path: str, guest_cid: int) -> None:
        if not 3 <= guest_cid <= 0xFFFFFFFE:
            raise ValueError(f"vsock guest CID {guest_cid}: must be 3..4294967294 "
                             "(0-2 are reserved, 2 is the host)")
        self.uds_path = uds_path
        self.guest_cid = guest_cid
        self.listener = listen_unix(uds_path, 128)
        self.listener.setblocking(False)
        self._worker: Worker | None = None
        self._active: ActiveQueues | None = None
        self.conns: dict[tuple[int, int], Conn] = {}   # (host_port, guest_port) -> Conn
        self.pending: list[Conn] = []                   # still reading "CONNECT n\n"
        self.lingering: list[Conn] = []                 # guest gone, host still draining
        self.control: collections.deque[bytes] = collections.deque()  # headers to send
        self._next_port = FIRST_HOST_PORT
        self._rx_starved = False
        self._broken = False
        self._tx_used = False
        self._rx_used = False
        self._rr = 0

    def config(self) -> bytes:
        return struct.pack("<Q", self.guest_cid)

    # --- lifecycle ----------------------------------------------------------------------------
    def activate(self, active: ActiveQueues) -> None:
        self.reset()
        self._active = active
        self._broken = False
        # While starved of receive buffers we rely on the driver's kick; the short timeout
        # re-checks the ring anyway, so a kick lost to store/load reordering between our
        # NO_NOTIFY write and the driver's index update costs at most 10 ms, never a hang.
        w = Worker(f"god-{self.name}", self._step, active.fail,
                   lambda: 0.01 if self._rx_starved else None)
        rxq = active.queues[RXQ]
        if rxq is not None:
            rxq.set_notify(False)  # we look at the receive ring whenever we have data
        for i, fd in enumerate(active.kicks[:2]):
            if fd is not None and active.queues[i] is not None:
                w.sel.register(fd, selectors.EVENT_READ, ("kick", i))
        w.sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
        self._worker = w
        w.start()
        for fd in active.kicks[:2]:
            if fd is not None:
                os.eventfd_write(fd, 1)  # look at buffers posted before activation

    def reset(self) -> None:
        """Driver reset: every connection is gone (the guest forgets them too)."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        for c in list(self.conns.values()) + self.pending + self.lingering:
            c.sock.close()
        self.conns.clear()
        self.pending.clear()
        self.lingering.clear()
        self.control.clear()
        self._active = None
        self._rx_starved = False

    def close(self) -> None:
        self.reset()
        self.listener.close()
        try:
            os.unlink(self.uds_path)
        except OSError:
            pass

    # --- worker ---------------------------------------------------------------------------------
    def _step(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        a = self._active
        for key, mask in events:
            kind, arg = key.data
            if kind == "kick":
                drain_eventfd(key.fd)  # starvation ends below, once buffers are really there
            elif kind == "listen":
                self._accept()
            elif kind == "hs":
                self._handshake(arg)
            elif kind == "conn" and mask & selectors.EVENT_WRITE:
                self._flush(arg)
        if a is None or self._broken:
            return
        try:
            rxq = a.queues[RXQ]
            if self._rx_starved and rxq is not None and rxq.pending():
                self._rx_starved = False
                rxq.set_notify(False)
            self._process_tx(a)
            self._fill_rx(a, [k.data[1] for k, m in events
                              if k.data[0] == "conn" and m & selectors.EVENT_READ])
        except (QueueError, GuestMemoryError) as e:
            self._broken = True
            a.fail(str(e))
            return
        if self._tx_used:
            self._tx_used = False
            q = a.queues[TXQ]
            if q is not None and q.wants_interrupt():
                a.interrupt(TXQ)
        if self._rx_used:
            self._rx_used = False
            q = a.queues[RXQ]
            if q is not None and q.wants_interrupt():
                a.interrupt(RXQ)
        self._update_interest()

    def _update_interest(self) -> None:
        w = self._worker
        if w is None:
            return
        for c in list(self.conns.values()) + self.lingering:
            want = 0
            if c.to_host:
                want |= selectors.EVENT_WRITE
            if self._wants_read(c) and not self._rx_starved:
                want |= selectors.EVENT_READ
            if want != c.mask:
                if c.mask and want:
                    w.sel.modify(c.sock, want, ("conn", c))
                elif want:
                    w.sel.register(c.sock, want, ("conn", c))
                else:
                    w.sel.unregister(c.sock)
                c.mask = want

    @staticmethod
    def _wants_read(c: Conn) -> bool:
        return (c.state == "open" and not c.host_eof and not c.guest_no_recv
                and c.credit() > 0)

    # --- host side: accept and handshake ---------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                say(f"vsock: accept failed: {e}")
                return
            s.setblocking(False)
            c = Conn(s)
            self.pending.append(c)
            assert self._worker is not None
            self._worker.sel.register(s, selectors.EVENT_READ, ("hs", c))

    def _drop_pending(self, c: Conn) -> None:
        if self._worker is not None:
            try:
                self._worker.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.sock.close()
        if c in self.pending:
            self.pending.remove(c)

    def _handshake(self, c: Conn) -> None:
        try:
            data = c.sock.recv(HANDSHAKE_MAX)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_pending(c)
            return
        c.line += data
        nl = c.line.find(b"\n")
        if nl < 0:
            if len(c.line) >= HANDSHAKE_MAX:
                say(f"vsock: handshake without a newline in {HANDSHAKE_MAX} bytes")
                self._drop_pending(c)
            return
        line, c.early = c.line[:nl], c.line[nl + 1:]
        parts = line.split()
        port = -1
        if len(parts) == 2 and parts[0] == b"CONNECT" and parts[1].isdigit():
            port = int(parts[1])
        if not 0 <= port <= 0xFFFFFFFF:
            say(f"vsock: bad handshake {line[:40]!r} (want 'CONNECT <port>')")
            self._drop_pending(c)
            return
        assert self._worker is not None
        self._worker.sel.unregister(c.sock)
        self.pending.remove(c)
        if self._active is None:
            c.sock.close()  # no driver: nobody can accept
            return
        c.host_port, c.guest_port, c.state = self._alloc_port(), port, "connecting"
        self.conns[(c.host_port, c.guest_port)] = c
        self._send_ctrl(c, OP_REQUEST)

    def _alloc_port(self) -> int:
        while True:
            p = self._next_port
            self._next_port = FIRST_HOST_PORT + ((p + 1 - FIRST_HOST_PORT) % (1 << 30))
            if not any(k[0] == p for k in self.conns):
                return p

    # --- packets ----------------------------------------------------------------------------------
    def _hdr(self, c: Conn | None, op: int, length: int = 0, flags: int = 0,
             host_port: int = 0, guest_port: int = 0) -> bytes:
        if c is not None:
            host_port, guest_port = c.host_port, c.guest_port
            c.fwd_sent = c.fwd_cnt
            fwd = c.fwd_cnt & 0xFFFFFFFF
        else:
            fwd = 0
        return HDR.pack(HOST_CID, self.guest_cid, host_port, guest_port, length, TYPE_STREAM,
                        op, flags, BUF_ALLOC, fwd)

    def _send_ctrl(self, c: Conn | None, op: int, flags: int = 0, host_port: int = 0,
                   guest_port: int = 0) -> None:
        self.control.append(self._hdr(c, op, 0, flags, host_port, guest_port))

    def _process_tx(self, a: ActiveQueues) -> None:
        q = a.queues[TXQ]
        if q is None:
            return
        while True:
            chain = q.pop()
            if chain is None:
                return
            self._tx_packet(a, chain)
            q.push(chain.head, 0)
            self._tx_used = True

    def _tx_packet(self, a: ActiveQueues, chain: Chain) -> None:
        if chain.writable:
            raise QueueError("transmit chain has device-writable buffers")
        if chain.readable_len < HDR_SIZE:
            raise QueueError(f"transmit chain of {chain.readable_len} bytes is shorter than "
                             f"the {HDR_SIZE}-byte packet header")
        (src_cid, dst_cid, src_port, dst_port, length, typ, op, flags, buf_alloc,
         fwd_cnt) = HDR.unpack(chain.read(a.mem, 0, HDR_SIZE))
        key = (dst_port, src_port)
        c = self.conns.get(key)
        if (dst_cid != HOST_CID or src_cid != self.guest_cid or typ != TYPE_STREAM
                or length > chain.readable_len - HDR_SIZE):
            say(f"vsock: dropping bad packet op {op} {src_cid}:{src_port} -> {dst_cid}:{dst_port} "
                f"type {typ} len {length}")
            if op != OP_RST:
                self._send_ctrl(None, OP_RST, host_port=dst_port, guest_port=src_port)
            if c is not None:
                self._close(c, rst=False)
            return
        if c is not None:
            c.peer_buf_alloc, c.peer_fwd_cnt = buf_alloc, fwd_cnt
        if op == OP_REQUEST:
            if c is not None:
                self._close(c, rst=True)
                return
            self._guest_connect(dst_port, src_port, buf_alloc, fwd_cnt)
            return
        if c is None:
            if op != OP_RST:
                self._send_ctrl(None, OP_RST, host_port=dst_port, guest_port=src_port)
            return
        if op == OP_RESPONSE:
            if c.state == "connecting":
                c.state = "open"
                c.to_host += f"OK {c.host_port}\n".encode()
                self._flush(c, count=False)  # c.early goes out with the next _fill_rx
            else:
                self._close(c, rst=True)
        elif op == OP_RW:
            if c.state != "open" or c.guest_no_send:
                self._close(c, rst=True)
                return
            if len(c.to_host) + length > 2 * BUF_ALLOC:
                say(f"vsock: guest port {c.guest_port} overran its credit; resetting")
                self._close(c, rst=True)
                return
            c.to_host += chain.read(a.mem, HDR_SIZE, length)
            self._flush(c)
        elif op == OP_CREDIT_REQUEST:
            self._send_ctrl(c, OP_CREDIT_UPDATE)
        elif op == OP_CREDIT_UPDATE:
            pass  # the header fields above were the point
        elif op == OP_SHUTDOWN:
            c.guest_no_send |= bool(flags & SHUT_SEND)
            c.guest_no_recv |= bool(flags & SHUT_RCV)
            if c.guest_no_send and c.guest_no_recv:
                # Full shutdown: acknowledge with RST (the connection is gone for the guest),
                # but still deliver what the host has not taken yet.
                self._send_ctrl(c, OP_RST)
                self._linger(c)
            elif c.guest_no_send:
                self._flush(c)
        elif op == OP_RST:
            self._linger(c)

    def _guest_connect(self, host_port: int, guest_port: int, buf_alloc: int, fwd: int) -> None:
        path = f"{self.uds_path}_{host_port}"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(1.0)
            s.connect(path)
        except OSError:
            s.close()
            # No host listener on that port: the RST is the answer (virtio 1.2 5.10.6.5), not
            # worth a line on stderr.
            self._send_ctrl(None, OP_RST, host_port=host_port, guest_port=guest_port)
            return
        s.setblocking(False)
        c = Conn(s, host_port, guest_port, "open", peer_buf_alloc=buf_alloc, peer_fwd_cnt=fwd)
        self.conns[(host_port, guest_port)] = c
        self._send_ctrl(c, OP_RESPONSE)

    def _flush(self, c: Conn, count: bool = True) -> None:
        """Write pending guest data to the host socket; advance fwd_cnt by what left."""
        if c.state == "closed":
            return
        while c.to_host:
            try:
                n = c.sock.send(c.to_host)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                    say(f"vsock: host socket of port {c.host_port}: {e}")
                self._close(c, rst=True)
                return
            del c.to_host[:n]
            if count:
                c.fwd_cnt += n
        if c.state == "lingering":
            if not c.to_host:
                self._close(c, rst=False)
            return
        # Every packet to the guest carries fwd_cnt; an explicit update is only needed when
        # the guest may be running low (a quarter of its window consumed) or asks for one.
        if c.fwd_cnt - c.fwd_sent >= BUF_ALLOC // 4:
            self._send_ctrl(c, OP_CREDIT_UPDATE)
        if not c.to_host and c.guest_no_send:
            self._shut_host_write(c)

    def _linger(self, c: Conn) -> None:
        """The guest is gone from this connection: forget it on the guest side at once
        (the port may be reused), but write out bytes it already sent before closing."""
        self._flush(c)
        if c.state == "closed":
            return
        if not c.to_host:
            self._close(c, rst=False)
            return
        self.conns.pop((c.host_port, c.guest_port), None)
        c.state = "lingering"
        self.lingering.append(c)

    def _shut_host_write(self, c: Conn) -> None:
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if c.host_eof:
            self._close(c, rst=True)

    def _close(self, c: Conn, rst: bool) -> None:
        if c.state == "closed":
            return
        if rst and c.state != "lingering":
            self._send_ctrl(c, OP_RST)
        if c.mask and self._worker is not None:
            self._worker.sel.unregister(c.sock)
            c.mask = 0
        c.sock.close()
        if c.state == "lingering":
            self.lingering.remove(c)
        elif self.conns.get((c.host_port, c.guest_port)) is c:
            del self.conns[(c.host_port, c.guest_port)]
        c.state = "closed"

    # --- device -> guest --------------------------------------------------------------------------
    def _fill_rx(self, a: ActiveQueues, readable: list[Conn]) -> None:
        q = a.queues[RXQ]
        if q is None:
            return
        while self.control:
            chain = self._rx_pop(q)
            if chain is None:
                return
            hdr = self.control.popleft()
            self._deliver(a, q, chain, hdr, b"")
        # Data: connections with early bytes first, then those the selector saw readable.
        ready = [c for c in self.conns.values() if c.early and c.state == "open"]
        ready += [c for c in readable if c.state == "open"]
        for c in ready:
            while self._wants_read(c):
                chain = self._rx_pop(q)
                if chain is None:
                    return
                room = min(chain.writable_len - HDR_SIZE, c.credit(), MAX_PKT)
                if room <= 0:
                    if chain.writable_len < HDR_SIZE:
                        raise QueueError(f"receive buffer of {chain.writable_len} bytes cannot "
                                         "hold a packet header")
                    q.unpop()
                    break
                if c.early:
                    data, c.early = c.early[:room], c.early[room:]
                else:
                    try:
                        data = c.sock.recv(room)
                    except (BlockingIOError, InterruptedError):
                        q.unpop()
                        break
                    except OSError:
                        data = b""
                    if not data:
                        q.unpop()
                        c.host_eof = True
                        if c.guest_no_send:   # both directions done: close with RST
                            self._close(c, rst=True)
                        else:                 # "the host will send no more"
                            self._send_ctrl(c, OP_SHUTDOWN, SHUT_SEND)
                        break
                c.tx_cnt += len(data)
                self._deliver(a, q, chain, self._hdr(c, OP_RW, len(data)), data)
                if c.early:
                    continue
                if len(data) < room:
                    break  # drained for now; the selector tells us when there is more
        while self.control:  # e.g. SHUTDOWN just queued above
            chain = self._rx_pop(q)
            if chain is None:
                return
            self._deliver(a, q, chain, self.control.popleft(), b"")

    def _rx_pop(self, q: Virtqueue) -> Chain | None:
        chain = q.pop()
        if chain is None:
            q.set_notify(True)          # out of buffers: now we do want the driver's kick
            if q.pending():             # ... unless buffers arrived in between
                q.set_notify(False)
                return q.pop()
            self._rx_starved = True
        return chain

    def _deliver(self, a: ActiveQueues, q: Virtqueue, chain: Chain, hdr: bytes,
                 data: bytes) -> None:
        if chain.readable:
            raise QueueError("receive chain has device-readable buffers")
        if chain.writable_len < HDR_SIZE + len(data):
            raise QueueError(f"receive buffer of {chain.writable_len} bytes cannot hold a "
                             "packet header")
        chain.write(a.mem, hdr)
        if data:
            chain.write(a.mem, data, HDR_SIZE)
        q.push(chain.head, HDR_SIZE + len(data))
        self._rx_used = True
