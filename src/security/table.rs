//! The framing the security tables' files share (the SCRAM users, the
//! ACLs, the client quotas): `u16 version | body | u32 CRC-32C of what
//! precedes`, and a bounds-checked reader of the body.
//!
//! Owns: sealing (the checksum) and opening (length, checksum, version);
//! reading fields without ever reading past the end.
//!
//! Must never: panic on any bytes, or hand out a body whose checksum
//! failed.

use bytes::{BufMut, BytesMut};

/// Why a file is not one: what the caller's `Corrupt` error says.
pub type Corrupt = String;

/// The file's bytes: `b` (which starts with the version) and its checksum.
pub fn seal(mut b: BytesMut) -> Vec<u8> {
    let crc = crc32c::crc32c(&b);
    b.put_u32(crc);
    b.to_vec()
}

/// A reader of the body of `bytes`, once its checksum and `version` hold.
pub fn open(bytes: &[u8], version: u16) -> Result<Reader<'_>, Corrupt> {
    if bytes.len() < 6 {
        return Err("shorter than a header".into());
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_be_bytes(tail.try_into().expect("4 bytes")) {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader { b: body, at: 0 };
    if r.u16()? != version {
        return Err("unknown version".into());
    }
    Ok(r)
}

/// Fields off a checked body, in order.
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| Corrupt::from("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Corrupt> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    pub fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub fn f64(&mut self) -> Result<f64, Corrupt> {
        Ok(f64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    /// A `u16`-length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<String, Corrupt> {
        let len = self.u16()? as usize;
        std::str::from_utf8(self.take(len)?)
            .map(str::to_owned)
            .map_err(|_| Corrupt::from("a string that is not UTF-8"))
    }
    /// Every byte was read.
    pub fn finish(self) -> Result<(), Corrupt> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err("trailing bytes".into())
        }
    }
}
