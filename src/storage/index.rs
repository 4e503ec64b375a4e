//! The sparse indexes of one segment, in memory and in Kafka's file formats.
//!
//! Owns: `OffsetIndex` (batch base offset -> file position, `.index`: 8-byte
//! entries, offset relative to the segment base as u32 BE, position u32 BE)
//! and `TimeIndex` (timestamp -> offset, `.timeindex`: 12-byte entries,
//! timestamp i64 BE, relative offset u32 BE), the rules for when an entry is
//! added, lookups, and decoding a file with every check that tells a stale or
//! damaged index from a good one. Pure: no I/O.
//!
//! Must never: be trusted without `decode`'s checks; an index that fails them
//! is rebuilt from the log (the log is the truth, indexes are caches).

/// One index entry per this many log bytes (Kafka's `index.interval.bytes`).
pub const INDEX_INTERVAL_BYTES: u64 = 4096;
pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;
/// Positions and relative offsets are u32 in the file formats, so a segment
/// must stay below this many bytes (and offsets).
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

/// Sparse (base offset of a batch, its position), ascending in both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(i64, u64)>,
}

impl OffsetIndex {
    /// Records the batch starting at `pos` if the last entry is at least one
    /// interval back (the first batch is always indexed).
    pub fn on_batch(&mut self, offset: i64, pos: u64) {
        match self.entries.last() {
            Some(&(o, p)) if pos - p < INDEX_INTERVAL_BYTES => {
                debug_assert!(o < offset && p < pos);
            }
            last => {
                assert!(
                    last.is_none_or(|&(o, p)| o < offset && p < pos),
                    "index entries only grow"
                );
                self.entries.push((offset, pos));
            }
        }
    }

    /// Position of the indexed batch at or before `offset`: where a scan for
    /// the batch holding `offset` starts. 0 if none.
    pub fn locate(&self, offset: i64) -> u64 {
        let i = self.entries.partition_point(|&(o, _)| o <= offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn last(&self) -> Option<(i64, u64)> {
        self.entries.last().copied()
    }

    /// The last entry at or before byte position `pos`, if any.
    pub fn entry_at_or_before_pos(&self, pos: u64) -> Option<(i64, u64)> {
        let i = self.entries.partition_point(|&(_, p)| p <= pos);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// The entry at or before `offset`, if any.
    pub fn entry_at_or_before(&self, offset: i64) -> Option<(i64, u64)> {
        let i = self.entries.partition_point(|&(o, _)| o <= offset);
        (i > 0).then(|| self.entries[i - 1])
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries at or past `pos` (their batches were cut off).
    pub fn truncate_to_pos(&mut self, pos: u64) {
        self.entries.retain(|&(_, p)| p < pos);
    }

    pub fn encode(&self, base_offset: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&rel(o, base_offset).to_be_bytes());
            out.extend_from_slice(&(p as u32).to_be_bytes());
        }
        out
    }

    /// Decodes an `.index` file of the segment at `base_offset` whose log has
    /// `log_bytes` bytes. Err says why it cannot be trusted.
    pub fn decode(bytes: &[u8], base_offset: i64, log_bytes: u64) -> Result<OffsetIndex, String> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return Err(format!(
                "{} bytes is not a whole number of entries",
                bytes.len()
            ));
        }
        let mut idx = OffsetIndex::default();
        for e in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let o = base_offset
                .checked_add(u32::from_be_bytes(e[0..4].try_into().unwrap()) as i64)
                .ok_or("offset out of range")?;
            let p = u32::from_be_bytes(e[4..8].try_into().unwrap()) as u64;
            if let Some(&(lo, lp)) = idx.entries.last() {
                if o <= lo || p <= lp {
                    return Err(format!("entry ({o}, {p}) does not follow ({lo}, {lp})"));
                }
            } else if p != 0 || o != base_offset {
                return Err(format!("first entry ({o}, {p}) is not the segment start"));
            }
            if p >= log_bytes {
                return Err(format!(
                    "entry ({o}, {p}) points past the log's {log_bytes} bytes"
                ));
            }
            idx.entries.push((o, p));
        }
        Ok(idx)
    }
}

/// Sparse (T, O): T is the largest timestamp of every batch up to and
/// including the batch at base offset O. Ascending in both. So every batch
/// before O's has timestamps below any target > T: a lookup may skip them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, i64)>,
    /// Largest batch max-timestamp seen, -1 if none (Kafka's "no timestamp").
    max_timestamp: i64,
    /// Log position of the batch of the last entry.
    last_pos: Option<u64>,
}

impl Default for TimeIndex {
    fn default() -> Self {
        TimeIndex {
            entries: Vec::new(),
            max_timestamp: -1,
            last_pos: None,
        }
    }
}

impl TimeIndex {
    /// Records the batch (base offset `offset`, max timestamp `ts`) at `pos`:
    /// an entry when an interval passed since the last one and the maximum grew.
    pub fn on_batch(&mut self, offset: i64, ts: i64, pos: u64) {
        self.max_timestamp = self.max_timestamp.max(ts);
        let due = self
            .last_pos
            .is_none_or(|l| pos - l >= INDEX_INTERVAL_BYTES);
        let grew = self
            .entries
            .last()
            .is_none_or(|&(t, _)| self.max_timestamp > t);
        if due && grew && self.max_timestamp >= 0 {
            debug_assert!(self.entries.last().is_none_or(|&(_, o)| o < offset));
            self.entries.push((self.max_timestamp, offset));
            self.last_pos = Some(pos);
        }
    }

    /// The final entry of a sealed segment: its largest timestamp at its last
    /// batch, so the file alone tells the segment's age.
    pub fn seal(&mut self, last_batch_offset: i64) {
        let grew = self
            .entries
            .last()
            .is_none_or(|&(t, _)| self.max_timestamp > t);
        if grew && self.max_timestamp >= 0 {
            self.entries.push((self.max_timestamp, last_batch_offset));
        }
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// The offset a search for the first batch with a timestamp >= `target`
    /// starts at: the last entry whose T is below it (None: the segment start).
    pub fn start_for(&self, target: i64) -> Option<i64> {
        let i = self.entries.partition_point(|&(t, _)| t < target);
        (i > 0).then(|| self.entries[i - 1].1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries of batches at or after `offset`, which a scan from there
    /// adds again. The maximum stays: it covers batches up to the last entry,
    /// and the caller's scan starts at or before that entry's batch.
    pub fn drop_from(&mut self, offset: i64) {
        self.entries.retain(|&(_, o)| o < offset);
        self.last_pos = None;
    }

    /// Offset of the last entry, if any.
    pub fn last_offset(&self) -> Option<i64> {
        self.entries.last().map(|&(_, o)| o)
    }

    pub fn encode(&self, base_offset: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&rel(o, base_offset).to_be_bytes());
        }
        out
    }

    /// Decodes a `.timeindex` file; `next_offset` is one past the segment's
    /// last offset as the offset index and log say.
    pub fn decode(bytes: &[u8], base_offset: i64, next_offset: i64) -> Result<TimeIndex, String> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return Err(format!(
                "{} bytes is not a whole number of entries",
                bytes.len()
            ));
        }
        let mut idx = TimeIndex::default();
        for e in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let t = i64::from_be_bytes(e[0..8].try_into().unwrap());
            let o = base_offset
                .checked_add(u32::from_be_bytes(e[8..12].try_into().unwrap()) as i64)
                .ok_or("offset out of range")?;
            if let Some(&(lt, lo)) = idx.entries.last() {
                if t <= lt || o <= lo {
                    return Err(format!("entry ({t}, {o}) does not follow ({lt}, {lo})"));
                }
            }
            if t < 0 || o >= next_offset {
                return Err(format!(
                    "entry ({t}, {o}) is outside the segment (next offset {next_offset})"
                ));
            }
            idx.entries.push((t, o));
        }
        idx.max_timestamp = idx.entries.last().map_or(-1, |&(t, _)| t);
        Ok(idx)
    }
}

fn rel(offset: i64, base_offset: i64) -> u32 {
    let r = offset - base_offset;
    assert!(
        (0..=u32::MAX as i64).contains(&r),
        "offset {offset} out of the segment at {base_offset}"
    );
    r as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A log of `n` batches: (base offset, position, max timestamp).
    fn batches(sizes: &[(u64, i64, i64)], base: i64) -> Vec<(i64, u64, i64)> {
        let mut out = Vec::new();
        let (mut o, mut p) = (base, 0u64);
        for &(size, count, ts) in sizes {
            out.push((o, p, ts));
            o += count;
            p += size;
        }
        out
    }

    proptest! {
        /// The sparse offset index answers like a linear scan: the indexed
        /// position is at or before the batch holding the offset, and never
        /// more than one interval plus that batch before it.
        #[test]
        fn offset_lookup_matches_linear_scan(
            sizes in prop::collection::vec((61u64..20_000, 1i64..50, 0i64..1_000_000), 1..200),
            base in 0i64..1_000_000,
            probe in 0i64..20_000,
        ) {
            let log = batches(&sizes, base);
            let mut idx = OffsetIndex::default();
            for &(o, p, _) in &log { idx.on_batch(o, p); }
            let end = log.last().map(|&(o, _, _)| o).unwrap() + sizes.last().unwrap().1;
            let target = base + probe % (end - base);
            // linear scan: the batch holding target
            let holder = log.iter().rev().find(|&&(o, _, _)| o <= target).unwrap();
            let at = idx.locate(target);
            prop_assert!(at <= holder.1);
            // at is a batch start, and no indexed batch lies between at and holder
            prop_assert!(log.iter().any(|&(_, p, _)| p == at));
            let decoded = OffsetIndex::decode(&idx.encode(base), base, u64::MAX).unwrap();
            prop_assert_eq!(decoded, idx);
        }

        /// Time lookups never skip a batch whose timestamp reaches the target.
        #[test]
        fn time_lookup_never_skips_a_match(
            sizes in prop::collection::vec((61u64..20_000, 1i64..50, 0i64..1_000_000), 1..200),
            target in 0i64..1_100_000,
        ) {
            let log = batches(&sizes, 0);
            let mut t = TimeIndex::default();
            for &(o, p, ts) in &log { t.on_batch(o, ts, p); }
            let first_match = log.iter().find(|&&(_, _, ts)| ts >= target).map(|&(o, _, _)| o);
            let start = t.start_for(target).unwrap_or(0);
            if let Some(m) = first_match {
                prop_assert!(start <= m, "start {} skips match {}", start, m);
            }
            // every batch before start is below target
            prop_assert!(log.iter().filter(|&&(o, _, _)| o < start).all(|&(_, _, ts)| ts < target));
            let next = log.last().unwrap().0 + sizes.last().unwrap().1;
            let mut sealed = t.clone();
            sealed.seal(log.last().unwrap().0);
            let decoded = TimeIndex::decode(&sealed.encode(0), 0, next).unwrap();
            prop_assert_eq!(decoded.max_timestamp(), log.iter().map(|b| b.2).max().unwrap());
        }
    }

    #[test]
    fn damaged_index_files_are_rejected() {
        let mut idx = OffsetIndex::default();
        idx.on_batch(100, 0);
        idx.on_batch(150, 5000);
        idx.on_batch(190, 9100);
        let good = idx.encode(100);
        assert!(OffsetIndex::decode(&good, 100, 10_000).is_ok());
        assert!(OffsetIndex::decode(&good[..good.len() - 3], 100, 10_000).is_err());
        assert!(
            OffsetIndex::decode(&good, 100, 9000).is_err(),
            "points past the log"
        );
        // entries out of order
        let mut swapped = good[..8].to_vec();
        swapped.extend_from_slice(&good[16..24]);
        swapped.extend_from_slice(&good[8..16]);
        assert!(OffsetIndex::decode(&swapped, 100, 10_000).is_err());
        let mut t = TimeIndex::default();
        t.on_batch(100, 50, 0);
        t.on_batch(150, 70, 5000);
        let tb = t.encode(100);
        assert!(TimeIndex::decode(&tb, 100, 200).is_ok());
        assert!(
            TimeIndex::decode(&tb, 100, 150).is_err(),
            "entry past the segment end"
        );
    }
}
