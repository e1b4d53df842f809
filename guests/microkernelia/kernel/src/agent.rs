//! The guest agent (docs/agent-protocol.md) over COM1: identity, port I/O, guarded MMIO,
//! interrupts (IOAPIC lines, vectors, EOI, self-IPIs), timers (clock, halt, LAPIC one-shot,
//! PIT) and the UART's receive path. Lines are `@><id> <command> [key=value ...] *<cs>`;
//! replies `@@<id> ok|err|go ... *<cs>`. Requests arrive through the console's receive
//! interrupt (boot.S fills a ring buffer); a slow poll of the UART is the safety net.
use crate::intr;
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
const E_FAULT: u32 = 5;
const E_TIMEOUT: u32 = 6;
const E_NOCPU: u32 = 7;
const E_UNSUPPORTED: u32 = 8;
const CAPS: &str = "port,mmio,irq,timer,uart,exit";

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

fn arg_line(args: &Args<'_>) -> Result<u32, (u32, String)> {
    Ok(args.int("line", None, 0, intr::NLINES as u64 - 1)? as u32)
}

fn ms_to_tsc(ms: u64) -> u64 {
    time::ns_to_tsc(ms * 1_000_000)
}

fn pit_fields() -> String {
    let (ticks, ns, hz, divisor, span, pin) = time::pit_report();
    format!("ticks={ticks} ns={ns} hz={hz} divisor={divisor} span_ns={span} pin={pin}")
}

/// The hypervisor's CPUID vendor (leaf 0x40000000), letters and digits only; `-` if none.
fn hv_vendor() -> String {
    let r = core::arch::x86_64::__cpuid_count(1, 0);
    if r.ecx & (1 << 31) == 0 {
        return String::from("-");
    }
    let v = core::arch::x86_64::__cpuid_count(0x4000_0000, 0);
    let mut s = String::new();
    for w in [v.ebx, v.ecx, v.edx] {
        for b in w.to_le_bytes() {
            if b.is_ascii_alphanumeric() {
                s.push(b as char);
            }
        }
    }
    if s.is_empty() { String::from("-") } else { s }
}

fn handle(id: &str, cmd: &str, args: &Args<'_>) -> Result<String, (u32, String)> {
    if let Some(cpu) = args.get("cpu") {
        if parse_int(cpu) != Some(0) {
            return Err((E_NOCPU, String::from("no such cpu (microkernelia runs on one vCPU)")));
        }
    }
    match cmd {
        "hello" => Ok(format!(
            "name=microkernelia arch=x86_64 proto=1 cpus=1 tsc_khz={} lapic_khz={} boot=pvh hv={} mptable={} pit_pin={} \
             clock={} caps={CAPS} ring=3",
            time::tsc_khz(),
            time::lapic_khz(),
            hv_vendor(),
            intr::mptable_found() as u32,
            intr::line_pin(0),
            time::calibrated_by(),
        )),
        "ping" => Ok(String::from("cpu=0")),
        "cpuid" => {
            let leaf = args.int("leaf", None, 0, 0xffff_ffff)? as u32;
            let sub = args.int("sub", Some(0), 0, 0xffff_ffff)? as u32;
            let r = core::arch::x86_64::__cpuid_count(leaf, sub);
            Ok(format!("eax={:#x} ebx={:#x} ecx={:#x} edx={:#x}", r.eax, r.ebx, r.ecx, r.edx))
        }
        "in" => {
            let port = args.int("port", None, 0, 0xffff)? as u16;
            let v = match args.int("width", Some(1), 1, 8)? {
                1 => serial::inb(port) as u64,
                2 => serial::inw(port) as u64,
                4 => serial::inl(port) as u64,
                _ => return Err((E_WIDTH, String::from("port width must be 1, 2 or 4"))),
            };
            Ok(format!("value={v:#x}"))
        }
        "out" => {
            let port = args.int("port", None, 0, 0xffff)? as u16;
            let width = args.int("width", Some(1), 1, 8)?;
            let value = args.int("value", None, 0, u64::MAX)?;
            if !matches!(width, 1 | 2 | 4) {
                return Err((E_WIDTH, String::from("port width must be 1, 2 or 4")));
            }
            if value >> (8 * width) != 0 {
                return Err((E_ARG, String::from("value")));
            }
            match width {
                1 => serial::outb(port, value as u8),
                2 => serial::outw(port, value as u16),
                _ => serial::outl(port, value as u32),
            }
            Ok(String::new())
        }
        "rd" | "wr" => {
            // Any address: the identity map covers 4 GiB (user-accessible); a fault anywhere
            // (unmapped, guard page, non-canonical) comes back as err 5 (boot.S: guarded_*).
            let addr = args.int("addr", None, 0, u64::MAX)?;
            let width = args.int("width", Some(4), 1, 8)?;
            if !matches!(width, 1 | 2 | 4 | 8) {
                return Err((E_WIDTH, String::from("width must be 1, 2, 4 or 8")));
            }
            let result = if cmd == "rd" {
                intr::guarded_read(addr, width).map(|v| format!("value={v:#x}"))
            } else {
                let value = args.int("value", None, 0, u64::MAX)?;
                if width < 8 && value >> (8 * width) != 0 {
                    return Err((E_ARG, String::from("value")));
                }
                intr::guarded_write(addr, width, value).map(|_| String::new())
            };
            result.map_err(|vector| {
                let what = if vector == 14 { "page fault at" } else { "general protection fault at" };
                (E_FAULT, format!("{what} {addr:#x}"))
            })
        }
        // ------------------------------------------------------------------ interrupts
        "irq_arm" => {
            let line = arg_line(args)?;
            let pin = args.int("pin", Some(intr::line_pin(line) as u64), 0, intr::NLINES as u64 - 1)? as u32;
            let level = match args.get("trig") {
                None | Some("edge") => false,
                Some("level") => true,
                Some(_) => return Err((E_ARG, String::from("trig"))),
            };
            let manual = match args.get("eoi") {
                None | Some("auto") => false,
                Some("manual") => true,
                Some(_) => return Err((E_ARG, String::from("eoi"))),
            };
            if line == intr::UART_LINE && manual {
                return Err((E_ARG, String::from("the console line cannot hold its EOI")));
            }
            intr::line_set_manual_eoi(line, manual);
            intr::line_route(line, pin, level, false);
            Ok(format!("vector={:#x} pin={pin}", intr::line_vector(line)))
        }
        "irq_mask" | "irq_unmask" => {
            let line = arg_line(args)?;
            intr::line_set_mask(line, cmd == "irq_mask");
            Ok(String::new())
        }
        "irq_count" => {
            let line = arg_line(args)?;
            Ok(format!(
                "count={} vector={:#x} masked={}",
                intr::line_count(line),
                intr::line_vector(line),
                intr::line_masked(line) as u32
            ))
        }
        "vec_count" => {
            let v = args.int("vector", None, 0, 255)? as u32;
            Ok(format!("count={}", intr::count(v)))
        }
        "counts_reset" => {
            intr::reset_all();
            Ok(String::new())
        }
        "eoi" => Ok(format!("sent={}", intr::eoi_held())),
        "irq_hold" => {
            let line = arg_line(args)?;
            let ms = args.int("ms", Some(200), 0, 60_000)?;
            let level = match args.get("trig") {
                None | Some("level") => true,
                Some("edge") => false,
                Some(_) => return Err((E_ARG, String::from("trig"))),
            };
            let pin = intr::line_pin(line);
            intr::line_route(line, pin, level, true);
            let before = intr::line_count(line);
            send(id, "go", &format!("before={before}"));
            time::wait_until(time::rdtsc() + ms_to_tsc(ms), || false);
            let masked = intr::line_count(line);
            intr::cli();
            intr::line_set_mask(line, false);
            // Interrupts off until the first delivery is seen (taken inside HLT, as the probe
            // kernel waits): `after` counts that delivery, not what the platform sends next.
            time::wait_until_cli(time::rdtsc() + ms_to_tsc(500), || intr::line_count(line) != masked);
            let after = intr::line_count(line);
            intr::sti();
            intr::line_route(line, pin, false, false); // back to the edge default, unmasked
            Ok(format!("before={before} masked={masked} after={after} vector={:#x}", intr::line_vector(line)))
        }
        "ipi" => {
            let to = args.int("to", None, 0, 255)?;
            let vector = args.int("vector", None, 0, 255)? as u32;
            let n = args.int("n", Some(1), 1, 100_000)?;
            if to != 0 {
                return Err((E_NOCPU, String::from("target cpu is not online (one vCPU)")));
            }
            if !(0x50..=0xdf).contains(&vector) {
                return Err((E_ARG, String::from("vector must be 0x50..0xdf")));
            }
            let base = intr::count(vector);
            let (mut sent, mut got) = (0u32, 0u32);
            for _ in 0..n {
                if !intr::ipi_send(intr::apic_id(), 0x4000 | vector) {
                    break;
                }
                sent += 1;
                let end = time::rdtsc() + ms_to_tsc(100);
                while intr::count(vector).wrapping_sub(base) < sent && time::rdtsc() < end {
                    core::hint::spin_loop();
                }
                got = intr::count(vector).wrapping_sub(base);
                if got < sent {
                    break;
                }
            }
            Ok(format!("sent={sent} received={got}"))
        }
        // ------------------------------------------------------------------ time
        "clock" => {
            let t = time::rdtsc();
            Ok(format!("tsc={t:#x} ns={} cpu=0", time::tsc_to_ns(t - time::boot_tsc())))
        }
        "halt" => {
            let ms = args.int("ms", None, 0, 600_000)?;
            let t0 = time::rdtsc();
            let wakeups = time::wait_until(t0 + ms_to_tsc(ms), || false);
            Ok(format!("ns={} wakeups={wakeups}", time::tsc_to_ns(time::rdtsc() - t0)))
        }
        "lapic_oneshot" => {
            let us = args.int("us", None, 1, 60_000_000)?;
            match time::lapic_oneshot(us) {
                Some((req, elapsed, fired, count)) => {
                    Ok(format!("requested_ns={req} elapsed_ns={elapsed} fired={fired} count={count}"))
                }
                None => Err((E_ARG, String::from("us out of the timer's range"))),
            }
        }
        "pit_start" | "pit_measure" => {
            let hz = args.int("hz", Some(1000), 0, 100_000)?;
            let pin = args.int("pin", Some(intr::line_pin(0) as u64), 0, intr::NLINES as u64 - 1)? as u32;
            let ms = if cmd == "pit_measure" { args.int("ms", None, 1, 600_000)? } else { 0 };
            let poll = args.int("poll", Some(0), 0, 1)?;
            if !time::pit_start(hz, pin) {
                return Err((E_ARG, String::from("hz must be 19..100000")));
            }
            if cmd == "pit_start" {
                return Ok(pit_fields());
            }
            let end = time::pit().start_tsc + ms_to_tsc(ms);
            if poll == 1 {
                while time::rdtsc() < end {
                    core::hint::spin_loop();
                }
            } else {
                time::wait_until(end, || false);
            }
            let stop = time::rdtsc();
            time::pit_stop();
            let (ticks, _, hz, divisor, span, pin) = time::pit_report();
            let ns = time::tsc_to_ns(stop - time::pit().start_tsc);
            Ok(format!("ticks={ticks} ns={ns} hz={hz} divisor={divisor} span_ns={span} pin={pin}"))
        }
        "pit_read" => Ok(pit_fields()),
        "pit_stop" => {
            time::pit_stop();
            Ok(pit_fields())
        }
        // ------------------------------------------------------------------ UART
        "uart_stats" => {
            let (bytes, irqs, overruns, dropped) = intr::uart_stats();
            Ok(format!("rx_bytes={bytes} rx_irqs={irqs} overruns={overruns} dropped={dropped}"))
        }
        "uart_loopback" => {
            // Interrupts off and the RX interrupt disabled: the echoed byte is read here and
            // never reaches the agent's own input.
            let value = args.int("value", Some(0x5a), 0, 255)? as u8;
            let com1 = serial::COM1;
            intr::cli();
            let (ier, mcr) = (serial::inb(com1 + 1), serial::inb(com1 + 4));
            serial::outb(com1 + 1, 0);
            serial::outb(com1 + 4, mcr | 0x10);
            let msr = serial::inb(com1 + 6);
            serial::outb(com1, value);
            let mut got = None;
            let mut lsr = 0;
            for _ in 0..100_000 {
                lsr = serial::inb(com1 + 5);
                if lsr & 1 != 0 {
                    got = Some(serial::inb(com1));
                    break;
                }
            }
            serial::outb(com1 + 4, mcr);
            serial::outb(com1 + 1, ier);
            intr::sti();
            match got {
                Some(v) => Ok(format!("value={v:#x} msr={msr:#x} lsr={lsr:#x} mcr={mcr:#x}")),
                None => Err((E_TIMEOUT, String::from("no byte came back in loopback mode"))),
            }
        }
        "rx_burst" => {
            let n = args.int("n", None, 1, 1_000_000)?;
            let ms = args.int("ms", Some(5000), 0, 600_000)?;
            let (_, irq0, ovr0, drop0) = intr::uart_stats();
            intr::rx_flush(); // anything left from before belongs to no one
            send(id, "go", "");
            let end = time::rdtsc() + ms_to_tsc(ms);
            let (mut got, mut h) = (0u64, 0x811c_9dc5u32);
            while got < n {
                match intr::rx_getc() {
                    Some(c) => {
                        h = (h ^ c as u32).wrapping_mul(0x0100_0193);
                        got += 1;
                    }
                    None => {
                        time::wait_until(end, intr::rx_available);
                        if !intr::rx_available() {
                            break;
                        }
                    }
                }
            }
            let (_, irqs, ovr, drop) = intr::uart_stats();
            Ok(format!(
                "bytes={got} irqs={} fnv={h:#x} overruns={} dropped={} timed_out={}",
                irqs - irq0,
                ovr - ovr0,
                drop - drop0,
                (got < n) as u32
            ))
        }
        "exit" => {
            let status = args.int("status", Some(0), 0, 0x7fff_ffff)?;
            serial::outl(0xf4, status as u32);
            Err((E_UNSUPPORTED, String::from("exit port did not stop the machine")))
        }
        _ => Err((E_UNKNOWN, format!("unknown command"))),
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
        match handle(id, cmd, &args) {
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
        // The receive interrupt fills the ring (a memory read here, no trap). Every 20 ms the
        // UART itself is looked at too (a trap and a VM exit): the console keeps working with
        // its line masked or an edge lost.
        if now >= self.next_poll_ns {
            self.next_poll_ns = now + 20_000_000;
            if !intr::rx_available() {
                intr::uart_poll();
            }
        }
        let mut busy = false;
        for _ in 0..256 {
            let Some(b) = intr::rx_getc() else { break };
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
