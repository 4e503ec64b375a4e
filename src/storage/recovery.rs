//! The scan that recovers a segment: pure logic over bytes, fed in chunks.
//!
//! Owns: deciding where the valid log ends. Starting at a known-good batch
//! boundary (the segment start, or the last entry of an index that checked
//! out), every batch must be whole, CRC-valid and continue the offset chain
//! (`OffsetChain`: contiguous, or only increasing for a compacted log whose
//! cleanings left holes); the log ends before the first that is not. Also tells zero padding (the
//! unwritten rest of the last O_DIRECT page) from a torn or corrupt tail.
//!
//! Must never: do I/O (the segment reads, this decides), or accept a batch
//! whose offsets do not follow the previous one (never one that goes back).

use crate::batch::{self, BatchHeader, OffsetChain, HEADER_BYTES, LOG_OVERHEAD};

/// Bytes asked for at a time (more when one batch is larger).
pub const CHUNK_BYTES: usize = 4 << 20;

/// The next thing the scanner needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read `len` bytes at `pos` (fewer may come back at the end of file).
    Read {
        pos: u64,
        len: usize,
    },
    Done,
}

#[derive(Debug, Clone)]
pub struct Scanner {
    pos: u64,
    file_bytes: u64,
    expected_offset: i64,
    want: usize,
    chunk: usize,
    chain: OffsetChain,
    done: bool,
    pub batches: usize,
    pub max_timestamp: i64,
}

impl Scanner {
    /// Scans from `start_pos` (a batch boundary) of a file of `file_bytes`;
    /// the first batch must have base offset `expected_offset` (at least
    /// that, with `OffsetChain::Increasing`).
    pub fn new(
        start_pos: u64,
        expected_offset: i64,
        file_bytes: u64,
        chain: OffsetChain,
    ) -> Scanner {
        Self::with_chunk(start_pos, expected_offset, file_bytes, CHUNK_BYTES, chain)
    }

    pub fn with_chunk(
        start_pos: u64,
        expected_offset: i64,
        file_bytes: u64,
        chunk: usize,
        chain: OffsetChain,
    ) -> Scanner {
        assert!(chunk >= HEADER_BYTES);
        Scanner {
            pos: start_pos,
            file_bytes,
            expected_offset,
            want: chunk,
            chunk,
            chain,
            done: start_pos >= file_bytes,
            batches: 0,
            max_timestamp: -1,
        }
    }

    pub fn step(&self) -> Step {
        if self.done {
            return Step::Done;
        }
        Step::Read {
            pos: self.pos,
            len: self.want.min((self.file_bytes - self.pos) as usize),
        }
    }

    /// End of the valid log so far (final once `step()` is `Done`).
    pub fn end_pos(&self) -> u64 {
        self.pos
    }

    /// One past the last valid offset so far.
    pub fn next_offset(&self) -> i64 {
        self.expected_offset
    }

    /// Feeds the bytes the last `Step::Read` asked for. `on_batch(pos, header)`
    /// sees every valid batch in order.
    pub fn feed(&mut self, buf: &[u8], mut on_batch: impl FnMut(u64, &BatchHeader)) {
        assert!(!self.done, "feed after the scan ended");
        let pos = self.pos;
        let mut chain_ok = true;
        let expected = self.expected_offset;
        let chain = self.chain;
        let r = batch::scan(buf, chain, |at, h| {
            if at == 0 && !chain.follows(h.base_offset, expected) {
                chain_ok = false;
            }
            if chain_ok {
                on_batch(pos + at as u64, h);
            }
        });
        if r.batches > 0 && chain_ok {
            self.batches += r.batches;
            self.expected_offset = r.next_offset.expect("batches imply a next offset");
            self.max_timestamp = self.max_timestamp.max(r.max_timestamp.unwrap_or(-1));
            self.pos += r.valid_bytes as u64;
            self.want = self.chunk;
            self.done = self.pos >= self.file_bytes;
            return;
        }
        // Nothing valid at `pos`: a batch larger than what was read, or the end.
        let left = self.file_bytes - self.pos;
        if chain_ok && buf.len() >= LOG_OVERHEAD && (buf.len() as u64) < left {
            if let Ok(h) = BatchHeader::parse(buf) {
                let total = h.total_bytes();
                if total > buf.len() && total >= HEADER_BYTES && total as u64 <= left {
                    self.want = total;
                    return;
                }
            }
        }
        self.done = true;
    }
}

/// Whether bytes cut after the valid end were only the zero padding of the
/// last page (a stop without a clean close) rather than a torn or corrupt tail.
pub fn is_zero_padding(cut: &[u8]) -> bool {
    cut.iter().all(|&b| b == 0)
}

/// Runs a scan over an in-memory log: (end position, next offset, batches).
pub fn scan_bytes(
    log: &[u8],
    start_pos: u64,
    expected_offset: i64,
    chunk: usize,
    chain: OffsetChain,
) -> (u64, i64, usize) {
    let mut s = Scanner::with_chunk(start_pos, expected_offset, log.len() as u64, chunk, chain);
    while let Step::Read { pos, len } = s.step() {
        let p = pos as usize;
        s.feed(&log[p..p + len], |_, _| {});
    }
    (s.end_pos(), s.next_offset(), s.batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{patch_base_offset, BatchBuilder};
    use proptest::prelude::*;

    fn log_of(sizes: &[(usize, usize)]) -> (Vec<u8>, Vec<(u64, i64)>) {
        let mut log = Vec::new();
        let mut bounds = vec![(0u64, 0i64)];
        let mut offset = 0i64;
        for (i, &(records, value_bytes)) in sizes.iter().enumerate() {
            let mut b = BatchBuilder::new(1_000 + i as i64);
            for r in 0..records {
                b.push(
                    1_000 + i as i64,
                    None,
                    Some(&vec![(r % 250) as u8 + 1; value_bytes]),
                    &[],
                );
            }
            let mut v = b.finish().to_vec();
            patch_base_offset(&mut v, offset, 0);
            offset += records as i64;
            log.extend_from_slice(&v);
            bounds.push((log.len() as u64, offset));
        }
        (log, bounds)
    }

    proptest! {
        /// Any prefix of a valid log plus any garbage recovers to the longest
        /// valid prefix: the last whole batch boundary within the prefix.
        #[test]
        fn prefix_plus_garbage_recovers_to_longest_valid_prefix(
            sizes in prop::collection::vec((1usize..6, 0usize..3000), 1..30),
            cut_frac in 0.0f64..=1.0,
            garbage in prop::collection::vec(any::<u8>(), 0..5000),
            chunk in 61usize..20_000,
        ) {
            let (log, bounds) = log_of(&sizes);
            let cut = (log.len() as f64 * cut_frac) as usize;
            let mut damaged = log[..cut].to_vec();
            damaged.extend_from_slice(&garbage);
            let (want_pos, want_next) = *bounds.iter().rev().find(|&&(p, _)| p as usize <= cut).unwrap();
            let (end, next, _) = scan_bytes(&damaged, 0, 0, chunk, OffsetChain::Contiguous);
            // Garbage could by chance continue the log with a valid batch only
            // if it carried a correct CRC-32C and a following offset: we treat a
            // longer recovery as a failure too.
            prop_assert_eq!((end, next), (want_pos, want_next));
        }

        /// Starting from a known-good boundary gives the same end as a full scan.
        #[test]
        fn scan_from_a_boundary_agrees_with_full_scan(
            sizes in prop::collection::vec((1usize..6, 0usize..3000), 2..30),
            from in 0usize..30,
            cut_back in 0usize..200,
        ) {
            let (log, bounds) = log_of(&sizes);
            let log = &log[..log.len() - cut_back.min(log.len())];
            let (start, expected) = bounds[from % bounds.len()];
            prop_assume!(start as usize <= log.len());
            let full = scan_bytes(log, 0, 0, 4096, OffsetChain::Contiguous);
            prop_assume!(full.0 >= start);
            let part = scan_bytes(log, start, expected, 4096, OffsetChain::Contiguous);
            prop_assert_eq!((part.0, part.1), (full.0, full.1));
        }
    }

    #[test]
    fn broken_offset_chain_ends_the_log() {
        let (mut log, bounds) = log_of(&[(2, 10), (3, 10), (1, 10)]);
        // the third batch claims offset 7 instead of 5
        let third = bounds[2].0 as usize;
        patch_base_offset(&mut log[third..], 7, 0);
        assert_eq!(
            scan_bytes(&log, 0, 0, 64, OffsetChain::Contiguous),
            (bounds[2].0, 5, 2)
        );
        // a segment whose first batch is not its base offset holds nothing
        assert_eq!(
            scan_bytes(&log, 0, 1, 64, OffsetChain::Contiguous),
            (0, 1, 0)
        );
    }

    #[test]
    fn a_compacted_log_may_skip_offsets_but_never_go_back() {
        let (mut log, bounds) = log_of(&[(2, 10), (3, 10), (1, 10)]);
        let inc = OffsetChain::Increasing;
        // A cleaning dropped offsets 5 and 6: the third batch starts at 7.
        let third = bounds[2].0 as usize;
        patch_base_offset(&mut log[third..], 7, 0);
        assert_eq!(scan_bytes(&log, 0, 0, 64, inc), (log.len() as u64, 8, 3));
        let mut from_base = log.clone();
        patch_base_offset(&mut from_base, 1, 0); // 1..2, then 2..4: overlap
        assert_eq!(scan_bytes(&from_base, 0, 0, 64, inc), (bounds[1].0, 3, 1));
        // Going back ends the log, as damage.
        patch_base_offset(&mut log[third..], 4, 0);
        assert_eq!(scan_bytes(&log, 0, 0, 64, inc), (bounds[2].0, 5, 2));
    }

    #[test]
    fn batches_larger_than_a_chunk_are_read_whole() {
        let (log, bounds) = log_of(&[(3, 9000), (2, 20_000)]);
        assert_eq!(
            scan_bytes(&log, 0, 0, 100, OffsetChain::Contiguous),
            (bounds[2].0, 5, 2)
        );
        assert!(is_zero_padding(&[0; 100]));
        assert!(!is_zero_padding(&[0, 0, 1]));
    }
}
