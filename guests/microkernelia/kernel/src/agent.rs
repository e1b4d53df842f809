//! The guest agent (docs/agent-protocol.md) over COM1: hello, ping, in, out, rd, wr, clock,
//! exit. Lines are `@><id> <command> [key=value ...] *<cs>`; replies `@@<id> ok|err ... *<cs>`.
use crate::sched::Task;
use crate::serial;
use crate::time;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

const LINE_MAX: usize = 256;
const E_BAD_FRAME: u32 = 1;
const E_UNKNOWN: u32 = 2;
const E_ARG: u32 = 3;
const E_WIDTH: u32 = 4;
const E_UNSUPPORTED: u32 = 8;
const CAPS: &str = "port,mmio,exit";

pub struct Agent {
    line: Vec<u8>,
    overflow: bool,
    next_poll_ns: u64,
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn send(id: &str, status: &str, body: &str) {
    let mut line = format!("@@{id} {status}");
    if !body.is_empty() {
        line.push(' ');
        line.push_str(body);
    }
    let cs = checksum(line.as_bytes());
    line.push_str(&format!(" *{cs:02x}\r\n"));
    // Straight to the UART, not the log ring: the console is the agent's channel.
    serial::write(line.as_bytes());
}

/// `@@ready proto=1 name=microkernelia *cs`
pub fn banner() {
    let body = "@@ready proto=1 name=microkernelia";
    let cs = checksum(body.as_bytes());
    serial::write(format!("{body} *{cs:02x}\r\n").as_bytes());
}

fn parse_int(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

struct Args<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Args<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
    fn int(&self, key: &str, default: Option<u64>, lo: u64, hi: u64) -> Result<u64, (u32, String)> {
        let v = match self.get(key) {
            Some(s) => parse_int(s).ok_or((E_ARG, format!("{key}")))?,
            None => default.ok_or((E_ARG, format!("missing {key}")))?,
        };
        if v < lo || v > hi {
            return Err((E_ARG, format!("{key} out of range")));
        }
        Ok(v)
    }
}

fn handle(cmd: &str, args: &Args<'_>) -> Result<String, (u32, String)> {
    match cmd {
        "hello" => Ok(format!(
            "name=microkernelia arch=x86_64 proto=1 cpus=1 tsc_khz={} caps={CAPS} ring=3",
            time::tsc_khz()
        )),
        "ping" => Ok(String::from("cpu=0")),
        "in" => {
            let port = args.int("port", None, 0, 0xffff)? as u16;
            let v = match args.int("width", Some(1), 1, 8)? {
                1 => serial::inb(port) as u64,
                2 => serial::inw(port) as u64,
                4 => serial::inl(port) as u64,
                _ => return Err((E_WIDTH, String::from("width"))),
            };
            Ok(format!("value={v:#x}"))
        }
        "out" => {
            let port = args.int("port", None, 0, 0xffff)? as u16;
            let width = args.int("width", None, 1, 8)?;
            let value = args.int("value", None, 0, u64::MAX)?;
            if width < 8 && value >> (8 * width) != 0 {
                return Err((E_ARG, String::from("value")));
            }
            match width {
                1 => serial::outb(port, value as u8),
                2 => serial::outw(port, value as u16),
                4 => serial::outl(port, value as u32),
                _ => return Err((E_WIDTH, String::from("width"))),
            }
            Ok(String::new())
        }
        "rd" | "wr" => {
            // Identity map of the first 4 GiB, user-accessible: reach it directly.
            let addr = args.int("addr", None, 0, (1 << 32) - 1)?;
            let width = args.int("width", Some(4), 1, 8)?;
            if !matches!(width, 1 | 2 | 4 | 8) {
                return Err((E_WIDTH, String::from("width")));
            }
            if addr % width != 0 || addr + width > 1 << 32 {
                return Err((E_ARG, String::from("addr")));
            }
            let guard = crate::pvh::guard_page() as u64;
            if addr + width > guard && addr < guard + 4096 {
                return Err((5, String::from("fault guard page")));
            }
            unsafe {
                if cmd == "rd" {
                    let v = match width {
                        1 => core::ptr::read_volatile(addr as *const u8) as u64,
                        2 => core::ptr::read_volatile(addr as *const u16) as u64,
                        4 => core::ptr::read_volatile(addr as *const u32) as u64,
                        _ => core::ptr::read_volatile(addr as *const u64),
                    };
                    Ok(format!("value={v:#x}"))
                } else {
                    let value = args.int("value", None, 0, u64::MAX)?;
                    if width < 8 && value >> (8 * width) != 0 {
                        return Err((E_ARG, String::from("value")));
                    }
                    match width {
                        1 => core::ptr::write_volatile(addr as *mut u8, value as u8),
                        2 => core::ptr::write_volatile(addr as *mut u16, value as u16),
                        4 => core::ptr::write_volatile(addr as *mut u32, value as u32),
                        _ => core::ptr::write_volatile(addr as *mut u64, value),
                    }
                    Ok(String::new())
                }
            }
        }
        "clock" => {
            let t = time::rdtsc();
            Ok(format!("tsc={t:#x} ns={} cpu=0", time::tsc_to_ns(t - time::boot_tsc())))
        }
        "exit" => {
            let status = args.int("status", Some(0), 0, 0x7fff_ffff)?;
            serial::outl(0xf4, status as u32);
            Err((E_UNSUPPORTED, String::from("exit port did not stop the machine")))
        }
        _ => Err((E_UNKNOWN, format!("unknown"))),
    }
}

impl Agent {
    pub fn new() -> Self {
        Agent { line: Vec::with_capacity(LINE_MAX), overflow: false, next_poll_ns: 0 }
    }

    fn dispatch(&mut self) {
        let line = core::mem::take(&mut self.line);
        let text = match core::str::from_utf8(&line) {
            Ok(t) => t.trim_end_matches('\r'),
            Err(_) => return,
        };
        let Some(start) = text.find("@>") else { return };
        let text = &text[start..];
        let Some(star) = text.rfind(" *") else { return };
        let (body, cs) = (&text[..star], &text[star + 2..]);
        let mut words = body[2..].split(' ');
        let id = words.next().unwrap_or("");
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.len() > 9 {
            return;
        }
        if u8::from_str_radix(cs, 16).ok() != Some(checksum(body.as_bytes())) {
            send(id, "err", &format!("{E_BAD_FRAME} checksum"));
            return;
        }
        let cmd = words.next().unwrap_or("");
        let mut args = Args(Vec::new());
        for w in words {
            match w.split_once('=') {
                Some((k, v)) => args.0.push((k, v)),
                None => {
                    send(id, "err", &format!("{E_BAD_FRAME} word"));
                    return;
                }
            }
        }
        match handle(cmd, &args) {
            Ok(body) => send(id, "ok", &body),
            Err((code, text)) => send(id, "err", &format!("{code} {text}")),
        }
    }
}

impl Task for Agent {
    fn name(&self) -> &'static str {
        "agent"
    }

    fn poll(&mut self, now: u64) -> bool {
        // Each UART status read is a gate call plus a VM exit: look once a millisecond.
        if now < self.next_poll_ns {
            return false;
        }
        self.next_poll_ns = now + 1_000_000;
        let mut busy = false;
        for _ in 0..64 {
            let Some(b) = serial::read_byte() else { break };
            busy = true;
            if b == b'\n' {
                if !self.overflow {
                    self.dispatch();
                }
                self.line.clear();
                self.overflow = false;
            } else if self.line.len() < LINE_MAX {
                self.line.push(b);
            } else {
                self.overflow = true;
            }
        }
        busy
    }
}
