//! MCP framing over a byte stream (virtio-vsock): each message is a u32 big-endian length
//! followed by that many bytes of UTF-8 JSON.
//!
//! The decoder is fed whatever chunks the stream delivers (one byte, half a header, several
//! frames at once) and yields complete frames in order. A length above the decoder's limit
//! (the protocol's: `mcp_core::MAX_FRAME`, passed to `FrameDecoder::new`) is refused
//! as soon as its 4 header bytes are in, before anything is allocated for it; the connection
//! is then poisoned (the caller answers with an error and closes it). Exactly the limit in
//! bytes is accepted. The body buffer grows with the bytes that really arrived, so a peer
//! announcing 1 MiB and sending 10 bytes costs 10 bytes plus the initial chunk.
#![no_std]
extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Bytes reserved up front for a body (it grows as data arrives).
const INITIAL_RESERVE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The header announced this many bytes, more than the decoder's limit.
    TooLarge(u32),
}

enum State {
    Header { have: usize, bytes: [u8; 4] },
    Body { len: usize, data: Vec<u8> },
    Poisoned(FrameError),
}

/// Incremental frame reader.
pub struct FrameDecoder {
    state: State,
    ready: VecDeque<Vec<u8>>,
    /// Total payload bytes consumed (for flow-control accounting).
    pub consumed: u64,
    /// Largest accepted body.
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder that accepts bodies of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { state: State::Header { have: 0, bytes: [0; 4] }, ready: VecDeque::new(), consumed: 0, max_frame }
    }

    /// Feed stream bytes. Complete frames queue up for `next_frame`; an oversize header
    /// poisons the decoder (later input is ignored) and is returned as the error.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), FrameError> {
        self.consumed += input.len() as u64;
        while !input.is_empty() {
            match &mut self.state {
                State::Poisoned(err) => return Err(*err),
                State::Header { have, bytes } => {
                    let take = (4 - *have).min(input.len());
                    bytes[*have..*have + take].copy_from_slice(&input[..take]);
                    *have += take;
                    input = &input[take..];
                    if *have == 4 {
                        let len = u32::from_be_bytes(*bytes);
                        if len as usize > self.max_frame {
                            let err = FrameError::TooLarge(len);
                            self.state = State::Poisoned(err);
                            return Err(err);
                        }
                        if len == 0 {
                            self.ready.push_back(Vec::new());
                            self.state = State::Header { have: 0, bytes: [0; 4] };
                        } else {
                            let data = Vec::with_capacity((len as usize).min(INITIAL_RESERVE));
                            self.state = State::Body { len: len as usize, data };
                        }
                    }
                }
                State::Body { len, data } => {
                    let take = (*len - data.len()).min(input.len());
                    data.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if data.len() == *len {
                        let frame = core::mem::take(data);
                        self.ready.push_back(frame);
                        self.state = State::Header { have: 0, bytes: [0; 4] };
                    }
                }
            }
        }
        match self.state {
            State::Poisoned(err) => Err(err),
            _ => Ok(()),
        }
    }

    /// The next complete frame, in arrival order.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }

    /// True while a frame is partly received (a close now truncates it).
    pub fn in_frame(&self) -> bool {
        match &self.state {
            State::Header { have, .. } => *have > 0,
            State::Body { .. } => true,
            State::Poisoned(_) => false,
        }
    }

    pub fn is_poisoned(&self) -> bool {
        matches!(self.state, State::Poisoned(_))
    }

    /// Bytes held by the partial frame (what a peer can make us buffer).
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Body { data, .. } => data.capacity(),
            _ => 0,
        }
    }
}

/// Append one frame (header + body) to `out`. Bodies that do not fit the u32 length are a
/// caller bug (the protocol's own limit is the caller's to enforce, as mcp_core does).
pub fn encode_frame_into(body: &[u8], out: &mut Vec<u8>) {
    assert!(u32::try_from(body.len()).is_ok(), "frame body above the u32 length");
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    encode_frame_into(body, &mut out);
    out
}

/// Outgoing byte queue that supports partial writes: `pending()` is what is left to send,
/// `advance(n)` drops what the transport accepted.
#[derive(Default)]
pub struct TxBuffer {
    data: VecDeque<u8>,
}

impl TxBuffer {
    pub fn new() -> Self {
        TxBuffer { data: VecDeque::new() }
    }

    pub fn push_frame(&mut self, body: &[u8]) {
        let mut framed = Vec::with_capacity(body.len() + 4);
        encode_frame_into(body, &mut framed);
        self.data.extend(framed);
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Copy up to `out.len()` pending bytes into `out`, keeping them queued.
    pub fn peek_into(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.data.len());
        let (a, b) = self.data.as_slices();
        let from_a = n.min(a.len());
        out[..from_a].copy_from_slice(&a[..from_a]);
        out[from_a..n].copy_from_slice(&b[..n - from_a]);
        n
    }

    /// Drop the first `n` pending bytes (what the transport accepted).
    pub fn advance(&mut self, n: usize) {
        self.data.drain(..n.min(self.data.len()));
    }

    /// Copy up to `out.len()` pending bytes into `out` and drop them from the queue.
    pub fn take_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.data.len());
        for (slot, byte) in out.iter_mut().zip(self.data.drain(..n)) {
            *slot = byte;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;

    /// Any limit will do: the decoder knows nothing of MCP's.
    const LIMIT: usize = 1 << 20;

    fn frames(dec: &mut FrameDecoder) -> Vec<Vec<u8>> {
        core::iter::from_fn(|| dec.next_frame()).collect()
    }

    #[test]
    fn one_frame_whole() {
        let mut d = FrameDecoder::new(LIMIT);
        d.feed(&encode_frame(b"{\"a\":1}")).unwrap();
        assert_eq!(frames(&mut d), vec![b"{\"a\":1}".to_vec()]);
        assert!(!d.in_frame());
    }

    #[test]
    fn byte_at_a_time_and_many_frames_in_one_chunk() {
        let mut wire = Vec::new();
        for i in 0..100u32 {
            encode_frame_into(alloc::format!("{{\"id\":{i}}}").as_bytes(), &mut wire);
        }
        let mut d = FrameDecoder::new(LIMIT);
        for b in &wire {
            d.feed(core::slice::from_ref(b)).unwrap();
        }
        let got = frames(&mut d);
        assert_eq!(got.len(), 100);
        assert_eq!(got[57], b"{\"id\":57}".to_vec());
        let mut d2 = FrameDecoder::new(LIMIT);
        d2.feed(&wire).unwrap();
        assert_eq!(frames(&mut d2), got);
    }

    #[test]
    fn zero_length_frame_is_a_frame() {
        let mut d = FrameDecoder::new(LIMIT);
        d.feed(&[0, 0, 0, 0, 0, 0, 0, 1, b'x']).unwrap();
        assert_eq!(frames(&mut d), vec![vec![], vec![b'x']]);
    }

    #[test]
    fn exactly_max_accepted_one_more_refused_before_allocation() {
        let mut d = FrameDecoder::new(LIMIT);
        d.feed(&(LIMIT as u32).to_be_bytes()).unwrap();
        assert!(d.buffered() <= INITIAL_RESERVE);
        d.feed(&vec![b' '; LIMIT]).unwrap();
        assert_eq!(frames(&mut d)[0].len(), LIMIT);

        let mut d = FrameDecoder::new(LIMIT);
        let err = d.feed(&(LIMIT as u32 + 1).to_be_bytes()).unwrap_err();
        assert_eq!(err, FrameError::TooLarge(LIMIT as u32 + 1));
        assert_eq!(d.buffered(), 0);
        assert!(d.is_poisoned());
        // Anything after it is ignored.
        assert!(d.feed(&encode_frame(b"{}")).is_err());
        assert!(d.next_frame().is_none());

        let mut d = FrameDecoder::new(LIMIT);
        assert_eq!(d.feed(&[0xff, 0xff, 0xff, 0xff]).unwrap_err(), FrameError::TooLarge(u32::MAX));
    }

    #[test]
    fn frames_before_an_oversize_header_are_kept() {
        let mut wire = encode_frame(b"1");
        wire.extend_from_slice(&[0x10, 0, 0, 0]);
        let mut d = FrameDecoder::new(LIMIT);
        assert!(d.feed(&wire).is_err());
        assert_eq!(d.next_frame(), Some(b"1".to_vec()));
    }

    #[test]
    fn truncated_frame_is_visible() {
        let mut d = FrameDecoder::new(LIMIT);
        d.feed(&[0, 0, 0, 9, b'{']).unwrap();
        assert!(d.in_frame());
        assert!(d.next_frame().is_none());
    }

    #[test]
    fn tx_buffer_partial_writes() {
        let mut tx = TxBuffer::new();
        tx.push_frame(b"abc");
        tx.push_frame(b"de");
        let mut out = [0u8; 3];
        let mut wire = Vec::new();
        while !tx.is_empty() {
            let n = tx.take_into(&mut out);
            wire.extend_from_slice(&out[..n]);
        }
        assert_eq!(wire, [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 2, b'd', b'e']);
        // peek + partial advance: a transport that takes 5 bytes, then the rest.
        tx.push_frame(b"xyz");
        let mut buf = [0u8; 16];
        assert_eq!(tx.peek_into(&mut buf), 7);
        tx.advance(5);
        assert_eq!(tx.peek_into(&mut buf), 2);
        assert_eq!(&buf[..2], b"yz");
    }
}
