//! virtio-vsock (virtio 1.2 §5.10): stream sockets, the guest listening, credit flow control.
//!
//! Queues: 0 rx, 1 tx, 2 event. Every packet starts with the 44-byte little-endian header.
//! RX buffers are two-descriptor chains (header, data); TX packets likewise (header only for
//! control packets). Flow control (§5.10.6.3): we advertise `BUF_ALLOC` and report `fwd_cnt`
//! (bytes the server consumed); we send at most `peer_buf_alloc - (tx_cnt - peer_fwd_cnt)`.
use crate::mmio::*;
use crate::queue::{dma_alloc, Virtqueue};
use alloc::alloc::{alloc, dealloc, Layout};
use alloc::collections::VecDeque;
use alloc::vec::Vec;

pub const HDR_LEN: usize = 44;
pub const TYPE_STREAM: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;
pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;
pub const HOST_CID: u64 = 2;

/// Receive window we advertise per connection.
pub const BUF_ALLOC: u32 = 256 * 1024;
const RX_BUF: usize = 16 * 1024;
const RX_COUNT: usize = 64;
const TX_PKT: usize = 60 * 1024;
const EVENT_COUNT: usize = 4;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hdr {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Hdr {
    pub fn encode(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Hdr {
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
        Hdr {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }
}

/// A connection: (peer cid, peer port, our port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnKey {
    pub peer_cid: u64,
    pub peer_port: u32,
    pub local_port: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// We sent SHUTDOWN and wait for the peer's RST (or give up at `deadline_ns`).
    Closing,
}

struct Conn {
    key: ConnKey,
    state: State,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    tx_cnt: u32,
    fwd_cnt: u32,
    reported_fwd: u32,
    credit_requested: bool,
    peer_shutdown: u32,
    close_at_ns: u64,
}

impl Conn {
    fn peer_free(&self) -> u32 {
        self.peer_buf_alloc.saturating_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt))
    }
}

pub enum Event<'a> {
    Connected(ConnKey),
    Data(ConnKey, &'a [u8]),
    /// The peer will send no more (SHUTDOWN with SEND): answer what is pending, then close.
    Eof(ConnKey),
    /// Gone (RST, full shutdown, transport reset).
    Closed(ConnKey),
}

struct TxInflight {
    buf: *mut u8,
    size: usize,
}

pub struct Vsock {
    t: MmioTransport,
    rx: Virtqueue,
    tx: Virtqueue,
    ev: Virtqueue,
    pub guest_cid: u64,
    listening: Vec<u32>,
    conns: Vec<Conn>,
    rx_bufs: Vec<*mut u8>,    // by head descriptor id: one RX_BUF + HDR_LEN allocation
    tx_inflight: Vec<Option<TxInflight>>,
    ev_bufs: Vec<*mut u8>,
    ctrl: VecDeque<Hdr>,      // control packets waiting for TX descriptors
    pub stats_rx_pkts: u64,
    pub stats_tx_pkts: u64,
    last_kick_ns: u64,
}

impl Vsock {
    pub fn init(t: MmioTransport) -> Result<Vsock, &'static str> {
        // Feature bit 0 (VIRTIO_VSOCK_F_STREAM) where offered; stream is the default anyway.
        t.begin_init(F_VERSION_1 | 1)?;
        let rx = Virtqueue::new(&t, 0, RX_COUNT as u16 * 2)?;
        let tx = Virtqueue::new(&t, 1, 256)?;
        let ev = Virtqueue::new(&t, 2, EVENT_COUNT as u16)?;
        let tx_size = tx.size as usize;
        let rx_size = rx.size as usize;
        let ev_size = ev.size as usize;
        let mut v = Vsock {
            t,
            rx,
            tx,
            ev,
            guest_cid: 0,
            listening: Vec::new(),
            conns: Vec::new(),
            rx_bufs: alloc::vec![core::ptr::null_mut(); rx_size],
            tx_inflight: (0..tx_size).map(|_| None).collect(),
            ev_bufs: alloc::vec![core::ptr::null_mut(); ev_size],
            ctrl: VecDeque::new(),
            stats_rx_pkts: 0,
            stats_tx_pkts: 0,
            last_kick_ns: 0,
        };
        while v.rx.num_free >= 2 {
            let buf = dma_alloc(HDR_LEN + RX_BUF);
            v.post_rx(buf);
        }
        for _ in 0..v.ev.size {
            let buf = dma_alloc(8);
            if let Some(head) = v.ev.add(&[(buf as u64, 8, true)]) {
                v.ev_bufs[head as usize] = buf;
            }
        }
        v.t.driver_ok();
        v.t.notify(0);
        v.t.notify(2);
        v.guest_cid = v.t.config_u64(0);
        Ok(v)
    }

    fn post_rx(&mut self, buf: *mut u8) {
        let a = buf as u64;
        if let Some(head) = self.rx.add(&[(a, HDR_LEN as u32, true), (a + HDR_LEN as u64, RX_BUF as u32, true)]) {
            self.rx_bufs[head as usize] = buf;
        }
    }

    pub fn listen(&mut self, port: u32) {
        if !self.listening.contains(&port) {
            self.listening.push(port);
        }
    }

    /// The transport's interrupt line (a GSI): what wakes a sleeping scheduler for this device.
    pub fn irq(&self) -> u32 {
        self.t.irq
    }

    /// Before the scheduler sleeps: acknowledge the device's interrupt so its line drops and
    /// its next used buffer raises it again (the line's IOAPIC pin is edge-triggered).
    pub fn quiet_interrupt(&self) {
        self.t.ack_interrupts();
    }

    pub fn connections(&self) -> usize {
        self.conns.iter().filter(|c| c.state == State::Open).count()
    }

    fn conn_mut(&mut self, key: &ConnKey) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.key == *key)
    }

    fn hdr_for(&self, key: &ConnKey, op: u16) -> Hdr {
        Hdr {
            src_cid: self.guest_cid,
            dst_cid: key.peer_cid,
            src_port: key.local_port,
            dst_port: key.peer_port,
            type_: TYPE_STREAM,
            op,
            buf_alloc: BUF_ALLOC,
            ..Hdr::default()
        }
    }

    /// Queue a packet with `payload`. False when the TX queue has no room.
    fn send_packet(&mut self, mut hdr: Hdr, payload: &[u8]) -> bool {
        let need = if payload.is_empty() { 1 } else { 2 };
        if (self.tx.num_free as usize) < need {
            self.reap_tx();
            if (self.tx.num_free as usize) < need {
                return false;
            }
        }
        hdr.len = payload.len() as u32;
        let size = HDR_LEN + payload.len();
        let layout = Layout::from_size_align(size, 16).unwrap();
        let buf = unsafe { alloc(layout) };
        if buf.is_null() {
            return false;
        }
        let slice = unsafe { core::slice::from_raw_parts_mut(buf, size) };
        hdr.encode(&mut slice[..HDR_LEN]);
        slice[HDR_LEN..].copy_from_slice(payload);
        let a = buf as u64;
        let head = if payload.is_empty() {
            self.tx.add(&[(a, HDR_LEN as u32, false)])
        } else {
            self.tx.add(&[(a, HDR_LEN as u32, false), (a + HDR_LEN as u64, payload.len() as u32, false)])
        };
        match head {
            Some(h) => {
                self.tx_inflight[h as usize] = Some(TxInflight { buf, size });
                self.t.notify(1);
                self.stats_tx_pkts += 1;
                true
            }
            None => {
                unsafe { dealloc(buf, layout) };
                false
            }
        }
    }

    fn send_ctrl(&mut self, hdr: Hdr) {
        if !self.ctrl.is_empty() || !self.send_packet(hdr, &[]) {
            self.ctrl.push_back(hdr);
        }
    }

    fn send_ctrl_for(&mut self, key: ConnKey, op: u16, flags: u32) {
        let mut h = self.hdr_for(&key, op);
        h.flags = flags;
        if let Some(c) = self.conn_mut(&key) {
            h.fwd_cnt = c.fwd_cnt;
            c.reported_fwd = c.fwd_cnt;
        }
        self.send_ctrl(h);
    }

    fn reap_tx(&mut self) {
        while let Some((head, _)) = self.tx.pop_used() {
            if let Some(t) = self.tx_inflight[head as usize].take() {
                unsafe { dealloc(t.buf, Layout::from_size_align(t.size, 16).unwrap()) };
            }
        }
    }

    fn reset_peer(&mut self, h: &Hdr) {
        if h.op == OP_RST {
            return; // never answer a RST with a RST
        }
        let rst = Hdr {
            src_cid: self.guest_cid,
            dst_cid: h.src_cid,
            src_port: h.dst_port,
            dst_port: h.src_port,
            type_: h.type_,
            op: OP_RST,
            ..Hdr::default()
        };
        self.send_ctrl(rst);
    }

    /// Process everything the device finished; report connection events to `on`.
    pub fn poll(&mut self, now_ns: u64, on: &mut dyn FnMut(Event<'_>)) -> bool {
        let mut busy = false;
        self.reap_tx();
        while let Some(h) = self.ctrl.front().copied() {
            if !self.send_packet(h, &[]) {
                break;
            }
            self.ctrl.pop_front();
        }
        // Event queue: a transport reset drops every connection (§5.10.6.6).
        while let Some((head, _)) = self.ev.pop_used() {
            busy = true;
            let buf = self.ev_bufs[head as usize];
            let id = unsafe { core::ptr::read_volatile(buf as *const u32) };
            if id == 0 {
                for c in core::mem::take(&mut self.conns) {
                    on(Event::Closed(c.key));
                }
                self.guest_cid = self.t.config_u64(0);
            }
            if let Some(h) = self.ev.add(&[(buf as u64, 8, true)]) {
                self.ev_bufs[h as usize] = buf;
            }
            self.t.notify(2);
        }
        let mut reposted = false;
        while let Some((head, written)) = self.rx.pop_used() {
            busy = true;
            self.stats_rx_pkts += 1;
            let buf = self.rx_bufs[head as usize];
            if buf.is_null() {
                continue;
            }
            let raw = unsafe { core::slice::from_raw_parts(buf, HDR_LEN + RX_BUF) };
            if (written as usize) >= HDR_LEN {
                let h = Hdr::decode(&raw[..HDR_LEN]);
                let avail = (written as usize - HDR_LEN).min(RX_BUF);
                let len = (h.len as usize).min(avail);
                self.handle_rx(&h, &raw[HDR_LEN..HDR_LEN + len], on);
            }
            self.post_rx(buf);
            reposted = true;
        }
        if reposted {
            self.t.notify(0);
        }
        // Re-notify now and then while TX packets are outstanding, and for RX: a spurious
        // notification is harmless (§2.7.13), a lost one would stall the connection.
        if now_ns.saturating_sub(self.last_kick_ns) >= 5_000_000 {
            self.last_kick_ns = now_ns;
            // We poll the rings while busy (the line only wakes an idle scheduler); acknowledging
            // keeps it quiet. Not on every poll: each register access is a VM exit that competes
            // with the device model.
            self.t.ack_interrupts();
            if self.tx.num_free < self.tx.size {
                self.t.notify(1);
            }
            self.t.notify(0);
        }
        // Connections we are closing whose peer never sent RST.
        let mut expired = Vec::new();
        for c in &self.conns {
            if c.state == State::Closing && now_ns >= c.close_at_ns {
                expired.push(c.key);
            }
        }
        for key in expired {
            self.send_ctrl_for(key, OP_RST, 0);
            self.conns.retain(|c| c.key != key);
            on(Event::Closed(key));
        }
        busy
    }

    fn handle_rx(&mut self, h: &Hdr, data: &[u8], on: &mut dyn FnMut(Event<'_>)) {
        if h.dst_cid != self.guest_cid && h.dst_cid != u64::MAX {
            return;
        }
        let key = ConnKey { peer_cid: h.src_cid, peer_port: h.src_port, local_port: h.dst_port };
        if h.type_ != TYPE_STREAM {
            self.reset_peer(h);
            return;
        }
        let known = self.conns.iter().position(|c| c.key == key);
        let Some(i) = known else {
            if h.op == OP_REQUEST && self.listening.contains(&h.dst_port) {
                self.conns.push(Conn {
                    key,
                    state: State::Open,
                    peer_buf_alloc: h.buf_alloc,
                    peer_fwd_cnt: h.fwd_cnt,
                    tx_cnt: 0,
                    fwd_cnt: 0,
                    reported_fwd: 0,
                    credit_requested: false,
                    peer_shutdown: 0,
                    close_at_ns: 0,
                });
                self.send_ctrl_for(key, OP_RESPONSE, 0);
                on(Event::Connected(key));
            } else {
                self.reset_peer(h);
            }
            return;
        };
        {
            let c = &mut self.conns[i];
            c.peer_buf_alloc = h.buf_alloc;
            c.peer_fwd_cnt = h.fwd_cnt;
            if c.peer_free() > 0 {
                c.credit_requested = false;
            }
        }
        match h.op {
            OP_RW => {
                if self.conns[i].state == State::Open && !data.is_empty() {
                    on(Event::Data(key, data));
                }
            }
            OP_CREDIT_REQUEST => self.send_ctrl_for(key, OP_CREDIT_UPDATE, 0),
            OP_CREDIT_UPDATE => {}
            OP_SHUTDOWN => {
                let c = &mut self.conns[i];
                c.peer_shutdown |= h.flags & 3;
                let closing = c.state == State::Closing;
                if c.peer_shutdown == 3 || closing {
                    self.send_ctrl_for(key, OP_RST, 0);
                    self.conns.remove(i);
                    on(Event::Closed(key));
                } else if h.flags & SHUTDOWN_SEND != 0 {
                    on(Event::Eof(key));
                }
            }
            OP_RST => {
                self.conns.remove(i);
                on(Event::Closed(key));
            }
            OP_REQUEST => {
                // A second REQUEST on a live connection: the peer lost track; reset it.
                self.send_ctrl_for(key, OP_RST, 0);
                self.conns.remove(i);
                on(Event::Closed(key));
            }
            _ => {}
        }
    }

    /// The server consumed `n` received bytes: they count toward the window we grant.
    pub fn consumed(&mut self, key: &ConnKey, n: usize) {
        let mut update = false;
        if let Some(c) = self.conn_mut(key) {
            c.fwd_cnt = c.fwd_cnt.wrapping_add(n as u32);
            update = c.fwd_cnt.wrapping_sub(c.reported_fwd) >= BUF_ALLOC / 4;
        }
        if update {
            self.send_ctrl_for(*key, OP_CREDIT_UPDATE, 0);
        }
    }

    /// Send as much of `data` as the peer's credit and the TX queue allow; returns the bytes
    /// taken (0 when blocked: call again after `poll`).
    pub fn send(&mut self, key: &ConnKey, data: &[u8]) -> usize {
        let mut sent = 0;
        while sent < data.len() {
            let Some(c) = self.conns.iter().find(|c| c.key == *key) else { return sent };
            if c.state != State::Open {
                return sent;
            }
            let free = c.peer_free() as usize;
            if free == 0 {
                if !c.credit_requested {
                    self.send_ctrl_for(*key, OP_CREDIT_REQUEST, 0);
                    if let Some(c) = self.conn_mut(key) {
                        c.credit_requested = true;
                    }
                }
                return sent;
            }
            let n = (data.len() - sent).min(free).min(TX_PKT);
            let mut h = self.hdr_for(key, OP_RW);
            let fwd = c.fwd_cnt;
            h.fwd_cnt = fwd;
            if !self.send_packet(h, &data[sent..sent + n]) {
                return sent;
            }
            let c = self.conn_mut(key).unwrap();
            c.tx_cnt = c.tx_cnt.wrapping_add(n as u32);
            c.reported_fwd = fwd;
            sent += n;
        }
        sent
    }

    /// Start an orderly close: SHUTDOWN both ways, then wait for the peer's RST.
    pub fn close(&mut self, key: &ConnKey, now_ns: u64) {
        let Some(c) = self.conn_mut(key) else { return };
        if c.state != State::Open {
            return;
        }
        c.state = State::Closing;
        c.close_at_ns = now_ns + 2_000_000_000;
        self.send_ctrl_for(*key, OP_SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND);
    }

    pub fn is_open(&self, key: &ConnKey) -> bool {
        self.conns.iter().any(|c| c.key == *key && c.state == State::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Hdr { src_cid: 2, dst_cid: 3, src_port: 1234, dst_port: 5000, len: 7, type_: 1, op: OP_RW,
                      flags: 0, buf_alloc: BUF_ALLOC, fwd_cnt: 99 };
        let mut b = [0u8; HDR_LEN];
        h.encode(&mut b);
        assert_eq!(Hdr::decode(&b), h);
        assert_eq!(&b[24..28], &7u32.to_le_bytes());
        assert_eq!(&b[30..32], &OP_RW.to_le_bytes());
    }
}
