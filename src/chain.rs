//! A run of stored bytes in fragments: whole record batches as the broker
//! holds them (slices of produce requests in the batch cache, a read buffer
//! from the disk), carried from the log to the socket without being joined.
//!
//! Owns: the fragment list and its length, equality by content, the few
//! reads the data path makes across fragments (batch headers), joining for
//! the callers that need one slice.
//!
//! Must never: copy on the broker's fetch path (`to_bytes` is for clients,
//! tests and the old native protocol version), or hold an empty fragment.

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchHeader, HEADER_BYTES};

/// Bytes in fragments, in order. Cloning clones reference counts only.
#[derive(Clone, Default)]
pub struct Chain {
    parts: Vec<Bytes>,
    len: usize,
}

impl Chain {
    pub fn new() -> Chain {
        Chain::default()
    }

    pub fn with_capacity(fragments: usize) -> Chain {
        Chain {
            parts: Vec::with_capacity(fragments),
            len: 0,
        }
    }

    /// Appends a fragment (an empty one is dropped).
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.parts.push(b);
        }
    }

    /// Appends every fragment of `other`.
    pub fn extend(&mut self, other: Chain) {
        self.len += other.len;
        self.parts.extend(other.parts);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn fragments(&self) -> &[Bytes] {
        &self.parts
    }

    /// The bytes as one slice: free for zero or one fragment, a copy
    /// otherwise.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(self.len);
                for p in many {
                    out.extend_from_slice(p);
                }
                out.freeze()
            }
        }
    }

    /// Copies `out.len()` bytes from logical position `pos`; false when the
    /// chain ends first.
    pub fn copy_at(&self, mut pos: usize, out: &mut [u8]) -> bool {
        if pos.checked_add(out.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        let mut filled = 0;
        for p in &self.parts {
            if pos >= p.len() {
                pos -= p.len();
                continue;
            }
            let n = (p.len() - pos).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&p[pos..pos + n]);
            filled += n;
            pos = 0;
            if filled == out.len() {
                break;
            }
        }
        true
    }

    /// Records in the chain's whole batches, from their headers alone (see
    /// `batch::count_records`); stops at anything that is not a whole batch.
    pub fn count_records(&self) -> u64 {
        if let [one] = self.parts.as_slice() {
            return batch::count_records(one);
        }
        let (mut n, mut pos) = (0u64, 0usize);
        let mut head = [0u8; HEADER_BYTES];
        while self.copy_at(pos, &mut head) {
            let Ok(h) = BatchHeader::parse(&head) else {
                break;
            };
            if h.batch_length < (HEADER_BYTES - batch::LOG_OVERHEAD) as i32
                || pos + h.total_bytes() > self.len
            {
                break;
            }
            n += h.record_count.max(0) as u64;
            pos += h.total_bytes();
        }
        n
    }
}

impl From<Bytes> for Chain {
    fn from(b: Bytes) -> Chain {
        let mut c = Chain::new();
        c.push(b);
        c
    }
}

impl From<Vec<u8>> for Chain {
    fn from(v: Vec<u8>) -> Chain {
        Chain::from(Bytes::from(v))
    }
}

/// Equal when the bytes are, however they are cut.
impl PartialEq for Chain {
    fn eq(&self, other: &Chain) -> bool {
        if self.len != other.len {
            return false;
        }
        let mut a = self.parts.iter().flat_map(|p| p.iter());
        let mut b = other.parts.iter().flat_map(|p| p.iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (x, y) if x != y => return false,
                _ => {}
            }
        }
    }
}

impl Eq for Chain {}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Chain({} bytes in {} fragments)",
            self.len,
            self.parts.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    fn cut(b: &Bytes, at: &[usize]) -> Chain {
        let mut c = Chain::new();
        let mut from = 0;
        for &to in at.iter().chain([b.len()].iter()) {
            c.push(b.slice(from..to));
            from = to;
        }
        c
    }

    fn batches(n: usize, records: usize) -> Bytes {
        let mut out = BytesMut::new();
        for i in 0..n {
            let mut bb = BatchBuilder::new(1_000);
            for r in 0..records {
                bb.push(1_000, None, Some(format!("v{i}-{r}").as_bytes()), &[]);
            }
            out.extend_from_slice(&bb.finish());
        }
        out.freeze()
    }

    #[test]
    fn equality_and_joining_ignore_where_the_fragments_are_cut() {
        let b = batches(3, 4);
        let whole = Chain::from(b.clone());
        for at in [vec![], vec![1], vec![16, 61], vec![5, 6, 7, b.len() - 1]] {
            let c = cut(&b, &at);
            assert_eq!(c, whole, "{at:?}");
            assert_eq!(c.to_bytes(), b);
            assert_eq!(c.len(), b.len());
        }
        let mut other = b.to_vec();
        *other.last_mut().unwrap() ^= 1;
        assert_ne!(cut(&b, &[10]), Chain::from(other));
        assert!(!cut(&b, &[]).fragments().iter().any(|f| f.is_empty()));
    }

    #[test]
    fn records_are_counted_across_fragment_boundaries() {
        let b = batches(5, 3);
        for at in [vec![], vec![16], vec![3, 60, 62, 200]] {
            assert_eq!(cut(&b, &at).count_records(), 15, "{at:?}");
        }
        // A torn last batch is not counted.
        let torn = b.slice(..b.len() - 1);
        assert_eq!(cut(&torn, &[16]).count_records(), 12);
    }

    #[test]
    fn copy_at_refuses_to_read_past_the_end() {
        let c = cut(&Bytes::from_static(b"abcdef"), &[2, 3]);
        let mut out = [0u8; 3];
        assert!(c.copy_at(1, &mut out));
        assert_eq!(&out, b"bcd");
        assert!(!c.copy_at(4, &mut out));
        assert!(!c.copy_at(usize::MAX, &mut out));
    }
}
