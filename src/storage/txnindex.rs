//! Aborted transactions, as read_committed fetches need them: pure.
//!
//! Owns: Kafka's `.txnindex` entry (`AbortedTxn`: version 0, producer id,
//! first offset, last offset (the abort marker's), the last stable offset
//! when the marker was written; 34 bytes big-endian, one file per segment
//! holding the aborts whose marker is in it); the query a fetch makes
//! (`collect`: the aborted ranges that overlap what it returns); and the
//! record of the transactions open at an offset (`OpenTxns`: version, the
//! offset, count, entries, CRC-32C) that `txnopen` keeps, so a restart
//! finds transactions that began before the log tail it replays.
//!
//! Must never: panic on file bytes (a damaged file is an error the caller
//! answers by rebuilding from the log), or allocate by a count read from a
//! file.

use thiserror::Error;

/// Bytes of one `.txnindex` entry.
pub const ENTRY_BYTES: usize = 34;
const ENTRY_VERSION: i16 = 0;
const OPEN_VERSION: u16 = 2;
/// Version, `at`, count.
const OPEN_HEADER_BYTES: usize = 2 + 8 + 4;
/// Bytes of one open transaction: producer id, epoch, first offset.
pub const OPEN_ENTRY_BYTES: usize = 8 + 2 + 8;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxnIndexError {
    #[error("damaged transaction index: {0}")]
    Corrupt(String),
}

/// One aborted transaction of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The abort marker's offset.
    pub last_offset: i64,
    /// The partition's last stable offset right after the marker: every
    /// transaction still open then starts at or after it.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Decodes a whole `.txnindex` file: entries in marker order.
pub fn decode_index(b: &[u8]) -> Result<Vec<AbortedTxn>, TxnIndexError> {
    if !b.len().is_multiple_of(ENTRY_BYTES) {
        return Err(TxnIndexError::Corrupt(format!(
            "{} bytes is not a whole number of {ENTRY_BYTES}-byte entries",
            b.len()
        )));
    }
    let mut out = Vec::with_capacity(b.len() / ENTRY_BYTES);
    let mut last = i64::MIN;
    for e in b.chunks_exact(ENTRY_BYTES) {
        let version = i16::from_be_bytes([e[0], e[1]]);
        if version != ENTRY_VERSION {
            return Err(TxnIndexError::Corrupt(format!("entry version {version}")));
        }
        let t = AbortedTxn {
            producer_id: i64_at(e, 2),
            first_offset: i64_at(e, 10),
            last_offset: i64_at(e, 18),
            last_stable_offset: i64_at(e, 26),
        };
        if t.producer_id < 0
            || t.first_offset < 0
            || t.first_offset > t.last_offset
            || t.last_offset <= last
        {
            return Err(TxnIndexError::Corrupt(format!("entry {t:?}")));
        }
        last = t.last_offset;
        out.push(t);
    }
    Ok(out)
}

/// The aborted transactions a fetch of `start..upper` must name (Kafka's
/// `collectAbortedTxns`): every one whose range overlaps it. `aborted` is
/// in marker order; the walk stops at the first abort whose last stable
/// offset is past `upper` (no later one can start before `upper`).
pub fn collect(aborted: &[AbortedTxn], start: i64, upper: i64) -> Vec<AbortedTxn> {
    let from = aborted.partition_point(|t| t.last_offset < start);
    let mut out = Vec::new();
    for t in &aborted[from..] {
        if t.first_offset < upper {
            out.push(*t);
        }
        if t.last_stable_offset > upper {
            break;
        }
    }
    out
}

/// The transactions open at offset `at` that had written below it:
/// (producer id, epoch, first offset), by producer id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenTxns {
    pub at: i64,
    pub txns: Vec<(i64, i16, i64)>,
}

impl OpenTxns {
    /// Version, `at`, count, entries, CRC-32C of all before it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(OPEN_HEADER_BYTES + self.txns.len() * OPEN_ENTRY_BYTES + 4);
        out.extend_from_slice(&OPEN_VERSION.to_be_bytes());
        out.extend_from_slice(&self.at.to_be_bytes());
        out.extend_from_slice(&(self.txns.len() as u32).to_be_bytes());
        for &(pid, epoch, first) in &self.txns {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&first.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes one from the start of `b` (bytes after its end, such as
    /// padding, are ignored).
    pub fn decode(b: &[u8]) -> Result<OpenTxns, TxnIndexError> {
        let bad = |why: String| TxnIndexError::Corrupt(format!("open transactions: {why}"));
        if b.len() < OPEN_HEADER_BYTES + 4 {
            return Err(bad(format!("{} bytes", b.len())));
        }
        let version = u16::from_be_bytes([b[0], b[1]]);
        if version != OPEN_VERSION {
            return Err(bad(format!("version {version}")));
        }
        let at = i64_at(b, 2);
        let n = u32::from_be_bytes([b[10], b[11], b[12], b[13]]) as usize;
        // The count is checked against the bytes there before anything is
        // allocated by it.
        let len = n
            .checked_mul(OPEN_ENTRY_BYTES)
            .and_then(|e| e.checked_add(OPEN_HEADER_BYTES + 4))
            .filter(|&l| l <= b.len())
            .ok_or_else(|| bad(format!("{n} entries in {} bytes", b.len())))?;
        let (body, crc) = b[..len].split_at(len - 4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err(bad("CRC mismatch".into()));
        }
        if at < 0 {
            return Err(bad(format!("at {at}")));
        }
        let mut txns = Vec::with_capacity(n);
        for e in body[OPEN_HEADER_BYTES..].chunks_exact(OPEN_ENTRY_BYTES) {
            let (pid, epoch, first) = (
                i64_at(e, 0),
                i16::from_be_bytes([e[8], e[9]]),
                i64_at(e, 10),
            );
            if pid < 0 || epoch < 0 || first < 0 || first >= at {
                return Err(bad(format!("entry ({pid}, {epoch}, {first}) at {at}")));
            }
            txns.push((pid, epoch, first));
        }
        Ok(OpenTxns { at, txns })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_are_kafkas_34_bytes_and_round_trip() {
        let mut b = Vec::new();
        t(7, 10, 20, 15).encode_into(&mut b);
        assert_eq!(b.len(), ENTRY_BYTES);
        assert_eq!(&b[..2], &[0, 0], "version 0");
        assert_eq!(&b[2..10], &7i64.to_be_bytes());
        t(8, 12, 30, 31).encode_into(&mut b);
        assert_eq!(
            decode_index(&b).unwrap(),
            vec![t(7, 10, 20, 15), t(8, 12, 30, 31)]
        );
        assert!(decode_index(&b[..ENTRY_BYTES + 1]).is_err(), "a torn entry");
        let mut swapped = Vec::new();
        t(8, 12, 30, 31).encode_into(&mut swapped);
        t(7, 10, 20, 15).encode_into(&mut swapped);
        assert!(decode_index(&swapped).is_err(), "out of marker order");
    }

    #[test]
    fn a_fetch_gets_the_aborts_overlapping_its_range() {
        // 7 wrote 10..=19 (marker 20); 8 wrote 12..=29 (marker 30); 9 wrote
        // 40..=44 (marker 45).
        let idx = [t(7, 10, 20, 12), t(8, 12, 30, 31), t(9, 40, 45, 46)];
        let pids = |v: Vec<AbortedTxn>| v.iter().map(|t| t.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(collect(&idx, 0, 10)), Vec::<i64>::new());
        assert_eq!(pids(collect(&idx, 0, 11)), vec![7]);
        assert_eq!(pids(collect(&idx, 15, 25)), vec![7, 8]);
        assert_eq!(pids(collect(&idx, 21, 100)), vec![8, 9]);
        assert_eq!(pids(collect(&idx, 31, 40)), Vec::<i64>::new());
        assert_eq!(pids(collect(&idx, 46, 100)), Vec::<i64>::new());
    }

    #[test]
    fn open_transactions_round_trip_and_damage_is_detected() {
        let o = OpenTxns {
            at: 100,
            txns: vec![(1, 0, 5), (1 << 40, 3, 99)],
        };
        let b = o.encode();
        assert_eq!(OpenTxns::decode(&b).unwrap(), o);
        let mut padded = b.clone();
        padded.resize(4096, 0);
        assert_eq!(OpenTxns::decode(&padded).unwrap(), o, "padding after it");
        assert_eq!(
            OpenTxns::decode(&OpenTxns::default().encode()).unwrap(),
            OpenTxns::default()
        );
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 1;
            assert!(OpenTxns::decode(&d).is_err(), "flip at {i}");
        }
        assert!(OpenTxns::decode(&b[..b.len() - 1]).is_err());
        // A transaction cannot start at or past the offset it was open at.
        let late = OpenTxns {
            at: 99,
            txns: vec![(1, 0, 99)],
        };
        assert!(OpenTxns::decode(&late.encode()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn fuzz_decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_index(&b);
            let _ = OpenTxns::decode(&b);
        }

        /// `collect` is the plain overlap filter (the early stop never
        /// drops one) when last stable offsets are what a log gives.
        #[test]
        fn collect_is_the_overlap_filter(
            spans in proptest::collection::vec((0i64..50, 1i64..30), 0..12),
            start in 0i64..400, len in 0i64..200,
        ) {
            // Build a plausible index: marker offsets increase; a
            // transaction's range ends at its marker; the last stable offset
            // after a marker is the first offset of the oldest transaction
            // still open (those with a later marker and an earlier start).
            let mut ranges: Vec<(i64, i64)> = Vec::new();
            let mut marker = 0;
            for (gap, span) in spans {
                marker += gap + span + 1;
                ranges.push(((marker - span).max(0), marker));
            }
            let idx: Vec<AbortedTxn> = ranges.iter().enumerate().map(|(i, &(first, last))| {
                let lso = ranges[i + 1..].iter().filter(|r| r.0 <= last).map(|r| r.0).min().unwrap_or(last + 1);
                t(i as i64, first, last, lso)
            }).collect();
            let upper = start + len;
            let want: Vec<AbortedTxn> = idx.iter().copied()
                .filter(|t| t.last_offset >= start && t.first_offset < upper).collect();
            prop_assert_eq!(collect(&idx, start, upper), want);
        }
    }
}
