//! Bounds-checked big-endian reading of the internal logs' records (the
//! offsets log here, the transaction log in `txn::log`): pure.
//!
//! Owns: every read takes the bytes it needs or fails naming the field and
//! the shortfall; strings are u16-length-prefixed UTF-8 under a cap;
//! `finish` refuses trailing bytes.
//!
//! Must never: panic on stored bytes, or allocate by a length it has not
//! checked against the bytes there.

/// What is wrong with a record; each log turns it into its own "corrupt
/// record" error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed(format!(
                "{what}: need {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Malformed> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, Malformed> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub fn i16(&mut self, what: &str) -> Result<i16, Malformed> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    pub fn i32(&mut self, what: &str) -> Result<i32, Malformed> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    pub fn i64(&mut self, what: &str) -> Result<i64, Malformed> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// A u16-length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, what: &'static str, max: usize) -> Result<String, Malformed> {
        let len = self.u16(what)? as usize;
        if len > max {
            return Err(Malformed(format!("{what} of {len} bytes exceeds {max}")));
        }
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| Malformed(format!("{what} is not UTF-8")))
    }

    /// Every byte was read.
    pub fn finish(&self) -> Result<(), Malformed> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Malformed(format!("{} trailing bytes", self.buf.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_and_names_what_is_missing() {
        let mut b = vec![0, 3, b'a', b'b', b'c'];
        b.extend_from_slice(&(-2i64).to_be_bytes());
        b.push(7);
        let mut r = Reader::new(&b);
        assert_eq!(r.string("name", 10).unwrap(), "abc");
        assert_eq!(r.i64("offset").unwrap(), -2);
        assert_eq!(
            r.finish().unwrap_err(),
            Malformed("1 trailing bytes".into())
        );
        assert_eq!(r.u8("flag").unwrap(), 7);
        r.finish().unwrap();
        assert_eq!(
            r.u32("count").unwrap_err(),
            Malformed("count: need 4 bytes, 0 left".into())
        );
        assert!(
            Reader::new(&[0, 5, b'a']).string("name", 10).is_err(),
            "short"
        );
        assert!(
            Reader::new(&[0, 11]).string("name", 10).is_err(),
            "over the cap"
        );
        assert!(
            Reader::new(&[0, 1, 0xff]).string("name", 10).is_err(),
            "not UTF-8"
        );
    }
}
