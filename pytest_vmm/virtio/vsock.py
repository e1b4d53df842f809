"""virtio-vsock packets (virtio 1.2 section 5.10.6) from the driver side: the receive queue
kept stocked with device-writable buffers, packets sent on the transmit queue."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_vmm.virtio.driver import Buffer, MmioDevice, VirtioError, poll
from pytest_vmm.virtio.layout import (
    VSOCK_CONFIG_GUEST_CID,
    VSOCK_EVENT,
    VSOCK_HDR,
    VSOCK_HOST_CID,
    VSOCK_RX,
    VSOCK_TX,
    VSOCK_TYPE_STREAM,
)

RX_BUFFER = 4096  # header + payload room per posted receive buffer
RX_POSTED = 8


@dataclass(frozen=True)
class Packet:
    src_cid: int
    dst_cid: int
    src_port: int
    dst_port: int
    length: int
    type: int
    op: int
    flags: int
    buf_alloc: int
    fwd_cnt: int
    payload: bytes = b""

    @classmethod
    def parse(cls, raw: bytes) -> Packet:
        f = VSOCK_HDR.unpack_from(raw)
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9],
                   payload=raw[VSOCK_HDR.size : VSOCK_HDR.size + f[4]])


class VsockDriver:
    """A guest-side vsock endpoint over one MmioDevice (queues rx, tx, event set up)."""

    def __init__(self, dev: MmioDevice) -> None:
        self.dev = dev
        self.rx_buffers: dict[int, int] = {}  # descriptor head -> buffer address
        self.inbox: list[Packet] = []
        for _ in range(RX_POSTED):
            self._post_rx()
        event = dev.arena.alloc(8)
        dev.queues[VSOCK_EVENT].add([Buffer(event, 8, writable=True)])
        dev.notify(VSOCK_RX)
        dev.notify(VSOCK_EVENT)

    @property
    def guest_cid(self) -> int:
        return self.dev.config_read(VSOCK_CONFIG_GUEST_CID, 4) | self.dev.config_read(VSOCK_CONFIG_GUEST_CID + 4, 4) << 32

    def _post_rx(self) -> None:
        addr = self.dev.arena.alloc(RX_BUFFER)
        head = self.dev.queues[VSOCK_RX].add([Buffer(addr, RX_BUFFER, writable=True)])
        self.rx_buffers[head] = addr

    def send(self, op: int, src_port: int, dst_port: int, payload: bytes = b"", flags: int = 0,
             buf_alloc: int = 65536, fwd_cnt: int = 0, dst_cid: int = VSOCK_HOST_CID) -> None:
        """One packet to the host on the transmit queue, waited for until the device used it."""
        header = VSOCK_HDR.pack(self.guest_cid, dst_cid, src_port, dst_port, len(payload), VSOCK_TYPE_STREAM,
                                op, flags, buf_alloc, fwd_cnt)
        mark = self.dev.arena.mark()
        try:
            addr = self.dev.arena.alloc(len(header) + len(payload))
            self.dev.mem.write(addr, header + payload)
            self.dev.transact(VSOCK_TX, [Buffer(addr, len(header) + len(payload))])
        finally:
            self.dev.arena.release(mark)

    def _collect(self) -> None:
        for used in self.dev.queues[VSOCK_RX].take_used():
            addr = self.rx_buffers.pop(used.head)
            raw = self.dev.mem.read(addr, min(used.length, RX_BUFFER))
            if used.length < VSOCK_HDR.size:
                raise VirtioError(f"vsock rx: used length {used.length} is shorter than the 44-byte header (5.10.6)")
            self.inbox.append(Packet.parse(raw))
            head = self.dev.queues[VSOCK_RX].add([Buffer(addr, RX_BUFFER, writable=True)])
            self.rx_buffers[head] = addr
        self.dev.notify(VSOCK_RX)

    def receive(self, timeout: float = 10.0, op: int | None = None) -> Packet:
        """The next packet from the device (of ``op`` if given; others are kept)."""
        def ready() -> bool:
            self._collect()
            return any(op is None or p.op == op for p in self.inbox)

        if not poll(ready, timeout, 0.02):
            raise VirtioError(f"no vsock packet{'' if op is None else f' with op {op}'} within {timeout:.0f}s "
                              f"(received: {self.inbox})")
        packet = next(p for p in self.inbox if op is None or p.op == op)
        self.inbox.remove(packet)
        return packet
