//! What the commands share: the broker flag, JSON strings, and writes that
//! end the program quietly when the reader went away (`| head`).

use std::io::Write;

use anyhow::Result;
use clap::Args;

#[derive(Args, Clone)]
pub(super) struct BrokerArg {
    /// Broker address (host:port).
    #[arg(long, default_value = "127.0.0.1:9400", global = true)]
    pub(super) broker: String,
}

/// A JSON string literal (names and settings are ASCII, but escape anyway).
pub(super) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn write_or_quit(out: &mut impl Write, b: &[u8]) -> Result<()> {
    match out.write_all(b) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => Ok(r?),
    }
}

pub(super) fn flush_or_quit(out: &mut impl Write) -> Result<()> {
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => Ok(r?),
    }
}
