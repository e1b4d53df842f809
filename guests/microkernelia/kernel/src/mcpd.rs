//! The MCP server task: virtio-vsock connections -> frames -> mcp_core -> frames back.
use crate::sched::Task;
use ai_runtime::BlockRead;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use drivers_virtio::blk::Blk;
use drivers_virtio::vsock::{ConnKey, Event, Vsock};
use logging::serial_println;
use mcp_core::{Platform, Server, Session};
use mcp_vsock_transport::{FrameDecoder, FrameError, TxBuffer};

/// Stop answering a connection whose peer does not read once this much output is queued.
const TX_HIGH: usize = 2 << 20;
const MAX_CONNS: usize = 64;

struct Conn {
    key: ConnKey,
    decoder: FrameDecoder,
    session: Session,
    tx: TxBuffer,
    /// Bytes received but not yet reported consumed (held back while congested).
    unacked: usize,
    /// Close once the output is flushed (oversize frame, or the peer's EOF).
    close_after_flush: bool,
    /// An oversize header was refused: its error reply goes out after the replies to the
    /// frames before it (responses stay in request order).
    refused: Option<u32>,
}

/// The model disk as ai_runtime reads it (drivers_virtio knows nothing of ai_runtime).
pub struct ModelDisk<'a>(pub &'a mut Blk);

impl BlockRead for ModelDisk<'_> {
    fn sectors(&self) -> u64 {
        self.0.capacity
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), String> {
        self.0.read_sectors(sector, buf)
    }
}

struct KernelPlatform<'a> {
    disk: Option<ModelDisk<'a>>,
    connections: usize,
    cid: u64,
}

impl Platform for KernelPlatform<'_> {
    fn uptime_ns(&self) -> u64 {
        crate::time::now_ns()
    }
    fn heap(&self) -> (usize, usize) {
        crate::heap::stats()
    }
    fn disk(&mut self) -> Option<&mut dyn BlockRead> {
        match self.disk.as_mut() {
            Some(d) => Some(d as &mut dyn BlockRead),
            None => None,
        }
    }
    fn connections(&self) -> usize {
        self.connections
    }
    fn transport(&self) -> String {
        format!("virtio-vsock cid {} port {}", self.cid, mcp_core::MCP_PORT)
    }
}

pub struct McpServer {
    vsock: Vsock,
    blk: Option<Blk>,
    server: Server,
    conns: Vec<Conn>,
    scratch: Vec<u8>,
}

impl McpServer {
    pub fn new(vsock: Vsock, blk: Option<Blk>) -> Self {
        McpServer { vsock, blk, server: Server::new(), conns: Vec::new(), scratch: alloc::vec![0u8; 64 * 1024] }
    }
}

impl Task for McpServer {
    fn name(&self) -> &'static str {
        "mcp-vsock"
    }

    fn before_sleep(&mut self) {
        self.vsock.quiet_interrupt();
    }

    fn poll(&mut self, now: u64) -> bool {
        let McpServer { vsock, blk, server, conns, scratch } = self;
        let mut busy = false;
        let mut refused: Vec<ConnKey> = Vec::new();
        let mut gone: Vec<ConnKey> = Vec::new();
        let mut eof: Vec<ConnKey> = Vec::new();
        // Data events borrow the driver's RX buffer: feed decoders right away. A connection is
        // registered as soon as it is accepted: its first data may come in the same batch.
        busy |= vsock.poll(now, &mut |ev| match ev {
            Event::Connected(k) => {
                if conns.len() >= MAX_CONNS {
                    refused.push(k);
                } else {
                    conns.push(Conn {
                        key: k,
                        decoder: FrameDecoder::new(mcp_core::MAX_FRAME),
                        session: Session::default(),
                        tx: TxBuffer::new(),
                        unacked: 0,
                        close_after_flush: false,
                        refused: None,
                    });
                }
            }
            Event::Data(k, data) => {
                if let Some(c) = conns.iter_mut().find(|c| c.key == k) {
                    c.unacked += data.len();
                    if let Err(FrameError::TooLarge(len)) = c.decoder.feed(data) {
                        if !c.close_after_flush {
                            serial_println!("microkernelia: conn {}: frame length {} refused", k.peer_port, len);
                            c.close_after_flush = true;
                            c.refused = Some(len);
                        }
                    }
                }
            }
            Event::Eof(k) => eof.push(k),
            Event::Closed(k) => gone.push(k),
        });
        for k in refused {
            vsock.close(&k, now);
        }
        for k in eof {
            if let Some(c) = conns.iter_mut().find(|c| c.key == k) {
                c.close_after_flush = true;
            }
        }
        conns.retain(|c| !gone.contains(&c.key));
        let open = conns.len();
        let cid = vsock.guest_cid;
        for c in conns.iter_mut() {
            // Answer complete frames, in order, unless the peer is not reading.
            let mut drained = false;
            while c.tx.len() < TX_HIGH {
                let Some(frame) = c.decoder.next_frame() else {
                    drained = true;
                    break;
                };
                busy = true;
                let mut plat = KernelPlatform { disk: blk.as_mut().map(ModelDisk), connections: open, cid };
                if let Some(reply) = server.handle_frame(&mut plat, &mut c.session, &frame) {
                    c.tx.push_frame(&reply);
                }
            }
            if drained {
                if let Some(len) = c.refused.take() {
                    c.tx.push_frame(&server.frame_too_large(len));
                    busy = true;
                }
            }
            if c.unacked > 0 && c.tx.len() < TX_HIGH {
                vsock.consumed(&c.key, c.unacked);
                c.unacked = 0;
            }
            // Partial writes: send what the credit window takes now, keep the rest.
            while !c.tx.is_empty() {
                let n = c.tx.peek_into(&mut scratch[..]);
                let sent = vsock.send(&c.key, &scratch[..n]);
                c.tx.advance(sent);
                if sent < n {
                    break;
                }
                busy = true;
            }
            if c.close_after_flush && c.refused.is_none() && c.tx.is_empty() && vsock.is_open(&c.key) {
                vsock.close(&c.key, now);
            }
        }
        busy
    }
}
