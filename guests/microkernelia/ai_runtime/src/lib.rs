//! The in-kernel "AI runtime": a key/value table model read from a virtio-blk disk.
//!
//! Disk layout (written by `guests/microkernelia/mkdisk.py`): sector 0 holds an index,
//! `b"MKIADISK"`, u32 LE version (1), u32 LE entry count, then up to 7 entries of 64 bytes:
//! a NUL-padded name (48 bytes), u64 LE byte offset, u64 LE byte length.
//!
//! Model file (UTF-8 text): `# comment`, `@key value` metadata (`@name`, `@version`,
//! `@default`), and `prompt<TAB>answer` rows. `infer` normalizes the prompt (lowercase,
//! letters/digits only) and answers with the row whose prompt matches exactly, else the row
//! sharing the most words (Jaccard score), else `@default`.
#![no_std]
extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

pub const SECTOR: usize = 512;
pub const DISK_MAGIC: &[u8; 8] = b"MKIADISK";
/// Largest model file `load_model` accepts.
pub const MAX_MODEL: u64 = 4 << 20;

/// A readable block device (virtio-blk in the kernel, a Vec in tests).
pub trait BlockRead {
    /// Capacity in 512-byte sectors.
    fn sectors(&self) -> u64;
    /// Read `buf.len() / 512` sectors starting at `sector` (buf.len() is a multiple of 512).
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), String>;
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub offset: u64,
    pub length: u64,
}

/// The index in sector 0.
pub fn read_index(disk: &mut dyn BlockRead) -> Result<Vec<Entry>, String> {
    if disk.sectors() == 0 {
        return Err("disk is empty".into());
    }
    let mut s0 = [0u8; SECTOR];
    disk.read(0, &mut s0)?;
    if &s0[..8] != DISK_MAGIC {
        return Err("disk has no MKIADISK index in sector 0".into());
    }
    let version = u32::from_le_bytes(s0[8..12].try_into().unwrap());
    if version != 1 {
        return Err(alloc::format!("unsupported disk index version {version}"));
    }
    let count = u32::from_le_bytes(s0[12..16].try_into().unwrap()) as usize;
    if count > 7 {
        return Err(alloc::format!("bad entry count {count}"));
    }
    let mut entries = Vec::new();
    for i in 0..count {
        let e = &s0[16 + 64 * i..16 + 64 * (i + 1)];
        let name_len = e[..48].iter().position(|&b| b == 0).unwrap_or(48);
        let name = core::str::from_utf8(&e[..name_len]).map_err(|_| "entry name is not UTF-8")?.to_string();
        let offset = u64::from_le_bytes(e[48..56].try_into().unwrap());
        let length = u64::from_le_bytes(e[56..64].try_into().unwrap());
        entries.push(Entry { name, offset, length });
    }
    Ok(entries)
}

/// Read file `path` from the disk's index (whole file, bounds-checked against the disk).
pub fn read_file(disk: &mut dyn BlockRead, path: &str) -> Result<Vec<u8>, String> {
    let path = path.trim_start_matches('/');
    let entries = read_index(disk)?;
    let entry = entries
        .iter()
        .find(|e| e.name == path)
        .ok_or_else(|| alloc::format!("no file {path:?} on the model disk"))?;
    if entry.length > MAX_MODEL {
        return Err(alloc::format!("{path} is {} bytes, above the {} byte limit", entry.length, MAX_MODEL));
    }
    let end = entry.offset.checked_add(entry.length).ok_or("entry overflows")?;
    if end > disk.sectors() * SECTOR as u64 {
        return Err(alloc::format!("{path} extends past the end of the disk"));
    }
    let first = entry.offset / SECTOR as u64;
    let last = (end + SECTOR as u64 - 1) / SECTOR as u64;
    let mut raw = vec![0u8; ((last - first) as usize) * SECTOR];
    // Read in 64 KiB requests.
    let chunk = 128 * SECTOR;
    for (i, piece) in raw.chunks_mut(chunk).enumerate() {
        disk.read(first + (i * chunk / SECTOR) as u64, piece)?;
    }
    let skip = (entry.offset % SECTOR as u64) as usize;
    Ok(raw[skip..skip + entry.length as usize].to_vec())
}

#[derive(Debug, Clone)]
pub struct Row {
    pub prompt: String,
    pub words: Vec<String>,
    pub answer: String,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub path: String,
    pub name: String,
    pub version: String,
    pub default: String,
    pub rows: Vec<Row>,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    pub answer: String,
    /// 1000 = exact match, 0 = fell back to the default answer (Jaccard score × 1000 else).
    pub score_milli: u32,
    pub matched: Option<String>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// Lowercase words made of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            cur.extend(ch.to_lowercase());
        } else if !cur.is_empty() {
            out.push(core::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Model {
    pub fn parse(path: &str, data: &[u8]) -> Result<Model, String> {
        let text = core::str::from_utf8(data).map_err(|e| alloc::format!("model is not UTF-8: {e}"))?;
        let mut model = Model {
            path: path.to_string(),
            name: path.to_string(),
            version: "0".into(),
            default: "I do not know.".into(),
            rows: Vec::new(),
            bytes: data.len(),
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(meta) = line.strip_prefix('@') {
                let (key, value) = meta.split_once(' ').unwrap_or((meta, ""));
                let value = value.trim().to_string();
                match key {
                    "name" => model.name = value,
                    "version" => model.version = value,
                    "default" => model.default = value,
                    _ => {}
                }
                continue;
            }
            let (prompt, answer) =
                line.split_once('\t').ok_or_else(|| alloc::format!("line {}: no TAB between prompt and answer", n + 1))?;
            let w = words(prompt);
            if w.is_empty() {
                return Err(alloc::format!("line {}: empty prompt", n + 1));
            }
            model.rows.push(Row { prompt: prompt.to_string(), words: w, answer: answer.trim().to_string() });
        }
        if model.rows.is_empty() {
            return Err("model has no rows".into());
        }
        Ok(model)
    }

    pub fn infer(&self, prompt: &str) -> Inference {
        let pw = words(prompt);
        let mut best: Option<(u32, &Row)> = None;
        for row in &self.rows {
            let score = if row.words == pw {
                1000
            } else {
                let common = row.words.iter().filter(|w| pw.contains(w)).count();
                let union = row.words.len() + pw.len() - common;
                if union == 0 { 0 } else { (common * 1000 / union) as u32 }
            };
            if score > 0 && best.map_or(true, |(s, _)| score > s) {
                best = Some((score, row));
            }
        }
        let (answer, score, matched) = match best {
            Some((s, row)) => (row.answer.clone(), s, Some(row.prompt.clone())),
            None => (self.default.clone(), 0, None),
        };
        let completion_tokens = words(&answer).len();
        Inference { answer, score_milli: score, matched, prompt_tokens: pw.len(), completion_tokens }
    }
}

/// `load_model`: read `path` from the disk and parse it.
pub fn load_model(disk: &mut dyn BlockRead, path: &str) -> Result<Model, String> {
    let data = read_file(disk, path)?;
    Model::parse(path, &data)
}

/// A disk image in memory (tests, and the host-side format check).
pub struct MemDisk(pub Vec<u8>);

impl BlockRead for MemDisk {
    fn sectors(&self) -> u64 {
        (self.0.len() / SECTOR) as u64
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), String> {
        let start = sector as usize * SECTOR;
        let src = self.0.get(start..start + buf.len()).ok_or("read past the end of the disk")?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Build a disk image holding `files` (what mkdisk.py writes; used by tests).
pub fn make_disk(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut img = vec![0u8; SECTOR];
    img[..8].copy_from_slice(DISK_MAGIC);
    img[8..12].copy_from_slice(&1u32.to_le_bytes());
    img[12..16].copy_from_slice(&(files.len() as u32).to_le_bytes());
    for (i, (name, data)) in files.iter().enumerate() {
        let offset = img.len() as u64;
        img.extend_from_slice(data);
        img.resize(img.len().div_ceil(SECTOR) * SECTOR, 0);
        let e = 16 + 64 * i;
        img[e..e + name.len()].copy_from_slice(name.as_bytes());
        img[e + 48..e + 56].copy_from_slice(&offset.to_le_bytes());
        img[e + 56..e + 64].copy_from_slice(&(data.len() as u64).to_le_bytes());
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &[u8] = b"# test\n@name tiny\n@version 3\n@default no idea\nhello\tHi there!\nwhat is the capital of france\tParis\n";

    #[test]
    fn load_and_infer() {
        let mut disk = MemDisk(make_disk(&[("other", b"x"), ("model.kv", MODEL)]));
        let m = load_model(&mut disk, "/model.kv").unwrap();
        assert_eq!(m.name, "tiny");
        assert_eq!(m.rows.len(), 2);
        let exact = m.infer("  HELLO! ");
        assert_eq!((exact.answer.as_str(), exact.score_milli), ("Hi there!", 1000));
        let fuzzy = m.infer("capital of France?");
        assert_eq!(fuzzy.answer, "Paris");
        assert!(fuzzy.score_milli > 0 && fuzzy.score_milli < 1000);
        let none = m.infer("zzz");
        assert_eq!((none.answer.as_str(), none.score_milli, none.matched), ("no idea", 0, None));
    }

    #[test]
    fn errors_name_the_problem() {
        let mut disk = MemDisk(make_disk(&[("model.kv", MODEL)]));
        assert!(load_model(&mut disk, "missing").unwrap_err().contains("no file"));
        let mut blank = MemDisk(vec![0u8; 1024]);
        assert!(load_model(&mut blank, "model.kv").unwrap_err().contains("MKIADISK"));
        let mut bad = MemDisk(make_disk(&[("m", b"no tab here\n")]));
        assert!(load_model(&mut bad, "m").unwrap_err().contains("TAB"));
        // An index entry pointing past the end is refused, not read.
        let mut img = make_disk(&[("m", MODEL)]);
        img[16 + 56..16 + 64].copy_from_slice(&(1u64 << 20).to_le_bytes());
        assert!(load_model(&mut MemDisk(img), "m").unwrap_err().contains("past the end"));
    }
}
