//! Kafka RecordBatch v2 (magic 2), byte for byte: the one record format of
//! shardlog, on disk and on both wire protocols.
//!
//! Owns: the 61-byte header layout, CRC-32C, batch validation, the in-place
//! patch of the base offset and leader epoch (the only fields outside the CRC),
//! encoding records into a batch, iterating a batch's records as `Bytes`
//! slices, scanning a byte run for its longest valid prefix of batches, and
//! decompressing a batch (gzip, snappy, lz4, zstd, with the `kafka-protocol`
//! crate's codecs) for consumers that show values.
//!
//! Must never: do I/O, allocate per record on the broker path, or touch a
//! byte covered by the CRC after the batch was sealed.
//!
//! Layout (all integers big-endian):
//! ```text
//!  0 base_offset        i64    -+ not covered by the CRC: the broker patches
//!  8 batch_length       i32     | base_offset and leader epoch in place
//! 12 leader_epoch       i32    -+
//! 16 magic              i8     (= 2)
//! 17 crc                u32    CRC-32C of bytes 21..end
//! 21 attributes         i16    bits 0-2 compression, 3 timestamp type, 4 txn, 5 control
//! 23 last_offset_delta  i32
//! 27 base_timestamp     i64
//! 35 max_timestamp      i64
//! 43 producer_id        i64
//! 51 producer_epoch     i16
//! 53 base_sequence      i32
//! 57 record_count       i32
//! 61 records...         each: varint length, i8 attributes, varlong timestamp
//!                       delta, varint offset delta, varint key length + key,
//!                       varint value length + value, varint header count,
//!                       headers (varint key length + key, varint value length + value)
//! ```
//! Varints are zigzag-encoded, as in Kafka; a length of -1 means null.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Size of the fixed header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before `batch_length` counts: base_offset (8) + batch_length (4).
pub const LOG_OVERHEAD: usize = 12;
pub const MAGIC: i8 = 2;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;

/// Compression codec bits of `attributes`.
const COMPRESSION_MASK: i16 = 0x07;
/// `attributes` bit: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// `attributes` bit: a control batch (transaction markers).
pub const ATTR_CONTROL: i16 = 0x20;
/// `attributes` bit (KIP-534): `base_timestamp` holds the time after which
/// the log cleaner may remove the batch's tombstones, set by the cleaning
/// that first kept them; record timestamps stay base + delta.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("batch length {0} is invalid")]
    BadLength(i32),
    #[error("unsupported magic {0} (only 2 is supported)")]
    BadMagic(i8),
    #[error("CRC mismatch: header says {expected:#010x}, data has {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("invalid batch header: {0}")]
    BadHeader(&'static str),
    #[error("malformed record: {0}")]
    BadRecord(&'static str),
    #[error("unknown compression codec {0} (0-4: none, gzip, snappy, lz4, zstd)")]
    Compressed(i16),
    #[error("cannot decompress a codec {codec} batch: {message}")]
    Decompress { codec: i16, message: String },
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The decoded fixed header of one batch. Cheap: read only, no record parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the fixed header. Checks only that 61 bytes are present.
    pub fn parse(b: &[u8]) -> Result<BatchHeader, BatchError> {
        if b.len() < HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: HEADER_BYTES,
                available: b.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(b, OFF_BASE_OFFSET),
            batch_length: be_i32(b, OFF_LENGTH),
            leader_epoch: be_i32(b, OFF_LEADER_EPOCH),
            magic: b[OFF_MAGIC] as i8,
            crc: be_u32(b, OFF_CRC),
            attributes: be_i16(b, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(b, OFF_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(b, OFF_BASE_TIMESTAMP),
            max_timestamp: be_i64(b, OFF_MAX_TIMESTAMP),
            producer_id: be_i64(b, OFF_PRODUCER_ID),
            producer_epoch: be_i16(b, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(b, OFF_BASE_SEQUENCE),
            record_count: be_i32(b, OFF_RECORD_COUNT),
        })
    }

    /// Total bytes of the batch including base offset and length fields.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        // Saturating: a header read from untrusted bytes must not overflow.
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    /// Number of offsets the batch occupies (last_offset_delta + 1).
    pub fn offset_count(&self) -> i64 {
        self.last_offset_delta as i64 + 1
    }

    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// When the log cleaner may drop this batch's tombstones (KIP-534).
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }
}

/// Validates the batch that starts at `b[0]`: length, magic, header sanity and
/// CRC. Returns the header; the batch occupies `header.total_bytes()` bytes.
/// Work is per batch (one CRC pass), never per record.
pub fn validate(b: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(b)?;
    if h.batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(h.batch_length));
    }
    let total = h.total_bytes();
    if b.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: b.len(),
        });
    }
    if h.magic != MAGIC {
        return Err(BatchError::BadMagic(h.magic));
    }
    let actual = crc32c::crc32c(&b[OFF_ATTRIBUTES..total]);
    if actual != h.crc {
        return Err(BatchError::CrcMismatch {
            expected: h.crc,
            actual,
        });
    }
    if h.record_count < 0 {
        return Err(BatchError::BadHeader("negative record count"));
    }
    if h.last_offset_delta < 0 {
        return Err(BatchError::BadHeader("negative last offset delta"));
    }
    if h.record_count > 0 && h.last_offset_delta < h.record_count - 1 {
        return Err(BatchError::BadHeader(
            "last offset delta smaller than record count",
        ));
    }
    Ok(h)
}

/// Records in a run of stored batches, from their headers alone (the
/// broker's own log: offsets are one per record, so the header's count is
/// the truth). Stops at anything that is not a whole batch.
pub fn count_records(mut b: &[u8]) -> u64 {
    let mut n = 0u64;
    while let Ok(h) = BatchHeader::parse(b) {
        if h.batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 || h.total_bytes() > b.len() {
            break;
        }
        n += h.record_count.max(0) as u64;
        b = &b[h.total_bytes()..];
    }
    n
}

/// The same batch uncompressed (header kept: offsets, timestamps, producer
/// fields; compression bits cleared, length and CRC made to agree), for
/// consumers that pass batches on; [`Records`] decompresses by itself. An
/// uncompressed batch comes back as it is, with no copy. Never on the broker
/// path: the broker stores and serves batches as sent.
pub fn decompress(batch: Bytes) -> Result<Bytes, BatchError> {
    let h = validate(&batch)?;
    let codec = h.compression();
    if codec == 0 {
        return Ok(batch);
    }
    let records = decompress_records(codec, batch.slice(HEADER_BYTES..h.total_bytes()))?;
    let mut out = BytesMut::with_capacity(HEADER_BYTES + records.len());
    out.put_slice(&batch[..HEADER_BYTES]);
    out.put_slice(&records);
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = h.attributes & !COMPRESSION_MASK;
    out[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[OFF_ATTRIBUTES..]);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Splits a run of concatenated batches, validating each. Fails on the first
/// bad batch: a produce request is all-or-nothing per partition.
pub fn validate_all(b: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let h = validate(&b[pos..])?;
        pos += h.total_bytes();
        out.push(h);
    }
    Ok(out)
}

/// Result of scanning a byte run for whole, valid batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanResult {
    /// Bytes of the longest prefix made of whole, CRC-valid batches.
    pub valid_bytes: usize,
    pub batches: usize,
    /// Base offset of the first and one past the last offset, if any batch.
    pub first_offset: Option<i64>,
    pub next_offset: Option<i64>,
    pub max_timestamp: Option<i64>,
}

/// How a stored log's offsets follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetChain {
    /// Every batch starts where the one before ended: any other offset is
    /// damage (the base offset is not covered by the CRC).
    Contiguous,
    /// Offsets only increase: a compacted log, whose cleanings left holes.
    Increasing,
}

impl OffsetChain {
    /// Whether a batch at `base` may follow a log that ends before `next`.
    pub fn follows(self, base: i64, next: i64) -> bool {
        match self {
            OffsetChain::Contiguous => base == next,
            OffsetChain::Increasing => base >= next,
        }
    }
}

/// Scans `b` from its start and stops at the first byte that does not begin
/// a whole, CRC-valid batch whose offsets follow the previous one by
/// `chain` (zero padding, a torn write, garbage). Pure: recovery is built
/// on this. `on_batch(position, header)` is called for every valid batch.
pub fn scan(
    b: &[u8],
    chain: OffsetChain,
    mut on_batch: impl FnMut(usize, &BatchHeader),
) -> ScanResult {
    let mut r = ScanResult {
        valid_bytes: 0,
        batches: 0,
        first_offset: None,
        next_offset: None,
        max_timestamp: None,
    };
    let mut pos = 0;
    while pos < b.len() {
        let h = match validate(&b[pos..]) {
            Ok(h) => h,
            Err(_) => break,
        };
        if let Some(next) = r.next_offset {
            if !chain.follows(h.base_offset, next) {
                break;
            }
        } else if h.base_offset < 0 {
            break;
        }
        on_batch(pos, &h);
        r.first_offset.get_or_insert(h.base_offset);
        r.next_offset = Some(h.last_offset() + 1);
        r.max_timestamp = Some(
            r.max_timestamp
                .map_or(h.max_timestamp, |m| m.max(h.max_timestamp)),
        );
        r.batches += 1;
        pos += h.total_bytes();
        r.valid_bytes = pos;
    }
    r
}

/// Writes the base offset and leader epoch of the batch at `b[0]`. These two
/// fields sit in the first 16 bytes, before the CRC'd region, so the batch
/// stays valid; `b` may be just those 16 bytes.
pub fn patch_base_offset(b: &mut [u8], base_offset: i64, leader_epoch: i32) {
    assert!(
        b.len() >= 16,
        "patching a buffer shorter than the unchecked header prefix"
    );
    debug_assert!(base_offset >= 0, "offsets are never negative");
    b[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    b[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

// ---- varints (zigzag, as Kafka) -------------------------------------------

fn put_varint(out: &mut BytesMut, v: i32) {
    put_varlong(out, v as i64)
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    let bits = 64 - (z | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn get_varlong(b: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let byte = *b
            .get(*pos)
            .ok_or(BatchError::BadRecord("varint runs past the batch"))?;
        *pos += 1;
        z |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(BatchError::BadRecord("varint longer than 10 bytes"))
}

fn get_varint(b: &[u8], pos: &mut usize) -> Result<i32, BatchError> {
    let v = get_varlong(b, pos)?;
    i32::try_from(v).map_err(|_| BatchError::BadRecord("varint out of i32 range"))
}

// ---- encoding --------------------------------------------------------------

/// One header of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Builds one uncompressed batch. Records are encoded straight into one
/// growing buffer (no per-record allocation); `finish` writes the header and
/// the CRC. The base offset is left 0: the broker assigns it.
pub struct BatchBuilder {
    buf: BytesMut,
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    /// (producer id, epoch, base sequence); -1s: not idempotent.
    producer: (i64, i16, i32),
    /// Attribute bits (transactional, control); never a codec: the
    /// builder writes records uncompressed.
    attributes: i16,
}

impl BatchBuilder {
    pub fn new(base_timestamp_ms: i64) -> BatchBuilder {
        Self::with_capacity(base_timestamp_ms, 16 * 1024)
    }

    pub fn with_capacity(base_timestamp_ms: i64, bytes: usize) -> BatchBuilder {
        let mut buf = BytesMut::with_capacity(bytes.max(HEADER_BYTES));
        buf.resize(HEADER_BYTES, 0);
        BatchBuilder {
            buf,
            base_timestamp: base_timestamp_ms,
            max_timestamp: base_timestamp_ms,
            count: 0,
            producer: (-1, -1, -1),
            attributes: 0,
        }
    }

    /// Marks the batch as part of its producer's transaction (Kafka's
    /// `isTransactional`): read_committed consumers see it once its
    /// transaction commits.
    pub fn transactional(mut self) -> BatchBuilder {
        self.attributes |= ATTR_TRANSACTIONAL;
        self
    }

    /// Marks the batch as an idempotent producer's (Kafka's producer id,
    /// epoch and the sequence of its first record).
    pub fn idempotent(mut self, producer_id: i64, epoch: i16, base_sequence: i32) -> BatchBuilder {
        self.producer = (producer_id, epoch, base_sequence);
        self
    }

    /// Number of records added so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size so far, header included.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends one record.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        let ts_delta = timestamp_ms - self.base_timestamp;
        put_record(&mut self.buf, ts_delta, self.count, key, value, headers);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
    }

    /// Seals the batch: writes the header and the CRC-32C.
    pub fn finish(self) -> Bytes {
        assert!(self.count > 0, "a batch holds at least one record");
        let mut b = self.buf;
        let batch_length = (b.len() - LOG_OVERHEAD) as i32;
        b[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&0i64.to_be_bytes());
        b[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
        b[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
        b[OFF_MAGIC] = MAGIC as u8;
        b[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&self.attributes.to_be_bytes());
        b[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&(self.count - 1).to_be_bytes());
        b[OFF_BASE_TIMESTAMP..OFF_BASE_TIMESTAMP + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        b[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        let (producer_id, epoch, sequence) = self.producer;
        b[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
        b[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
        b[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&sequence.to_be_bytes());
        b[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&b[OFF_ATTRIBUTES..]);
        b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }
}

/// How a transaction ended, as its marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Abort = 0,
    Commit = 1,
}

/// A transaction marker as Kafka writes it (`EndTransactionMarker`): a
/// transactional control batch of one record whose key is (version 0, the
/// marker type) and value (version 0, the coordinator epoch), both i16
/// big-endian then i32. Its producer fields are the transaction's; its
/// base sequence -1 (markers take no sequence).
pub fn control_batch(
    producer_id: i64,
    epoch: i16,
    marker: Marker,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Bytes {
    let mut key = [0u8; 4];
    key[2..].copy_from_slice(&(marker as i16).to_be_bytes());
    let mut value = [0u8; 6];
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    let mut b = BatchBuilder::with_capacity(timestamp_ms, 128).idempotent(producer_id, epoch, -1);
    b.attributes = ATTR_TRANSACTIONAL | ATTR_CONTROL;
    b.push(timestamp_ms, Some(&key), Some(&value), &[]);
    b.finish()
}

/// The marker a control batch holds; None for any other batch, or a
/// control record of another type (Kafka has others; none end a
/// transaction).
pub fn marker_of(batch: Bytes) -> Option<Marker> {
    let mut records = Records::new(batch).ok()?;
    if !records.header().is_control() {
        return None;
    }
    let key = records.next()?.ok()?.key?;
    if key.len() < 4 || key[..2] != [0, 0] {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(Marker::Abort),
        1 => Some(Marker::Commit),
        _ => None,
    }
}

/// Which fetched batches reach an application, as Kafka's consumers
/// decide it: never a control batch (markers are the broker's); under
/// read_committed, not the batches of a transaction the fetch named as
/// aborted, from its first offset up to its abort marker.
#[derive(Debug, Default)]
pub struct TxnFilter {
    /// (producer id, first offset), by first offset.
    aborted: Vec<(i64, i64)>,
    next: usize,
    /// Producers whose aborted transaction the batches are inside.
    skipping: std::collections::HashSet<i64>,
}

impl TxnFilter {
    /// `aborted`: what a read_committed fetch answered (empty for
    /// read_uncommitted).
    pub fn new(mut aborted: Vec<(i64, i64)>) -> TxnFilter {
        aborted.sort_by_key(|&(_, first)| first);
        TxnFilter {
            aborted,
            ..TxnFilter::default()
        }
    }

    /// Whether the records of the batch with header `h` (batches in
    /// offset order) reach the application.
    pub fn keep(&mut self, h: &BatchHeader) -> bool {
        while let Some(&(pid, first)) = self.aborted.get(self.next) {
            if first > h.last_offset() {
                break;
            }
            self.skipping.insert(pid);
            self.next += 1;
        }
        let transactional = h.attributes & ATTR_TRANSACTIONAL != 0;
        if h.is_control() {
            // The marker that ends a skipped transaction (an aborted one
            // cannot end with a commit).
            if transactional {
                self.skipping.remove(&h.producer_id);
            }
            return false;
        }
        !(transactional && self.skipping.contains(&h.producer_id))
    }
}

/// One record, length-prefixed, as v2 encodes it.
fn put_record(
    out: &mut BytesMut,
    ts_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) {
    let mut body_len = 1 + varlong_len(ts_delta) + varlong_len(offset_delta as i64);
    body_len += match key {
        Some(k) => varlong_len(k.len() as i64) + k.len(),
        None => 1,
    };
    body_len += match value {
        Some(v) => varlong_len(v.len() as i64) + v.len(),
        None => 1,
    };
    body_len += varlong_len(headers.len() as i64);
    for h in headers {
        body_len += varlong_len(h.key.len() as i64) + h.key.len();
        body_len += match &h.value {
            Some(v) => varlong_len(v.len() as i64) + v.len(),
            None => 1,
        };
    }
    out.reserve(body_len + 5);
    put_varint(out, body_len as i32);
    out.put_i8(0); // record attributes: unused in v2
    put_varlong(out, ts_delta);
    put_varint(out, offset_delta);
    put_opt_bytes(out, key);
    put_opt_bytes(out, value);
    put_varint(out, headers.len() as i32);
    for h in headers {
        put_opt_bytes(out, Some(&h.key));
        put_opt_bytes(out, h.value.as_deref());
    }
}

fn put_opt_bytes(out: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            put_varint(out, v.len() as i32);
            out.put_slice(v);
        }
        None => put_varint(out, -1),
    }
}

/// Encodes one batch whose header fields are given (`base_offset`,
/// `last_offset_delta`, `base_timestamp`, `attributes` with its codec, the
/// producer fields, `leader_epoch`; `max_timestamp` and the record count
/// are taken from `records`, or kept from `h` when there are none) around
/// `records`, whose offsets and timestamps become deltas from it. The log
/// cleaner rewrites batches so: offsets keep their holes, the producer
/// fields and the last offset stay, and a compressed batch is compressed
/// again with its own codec. An empty `records` gives an empty batch (what
/// Kafka keeps for a producer's last batch).
pub fn encode_batch(h: &BatchHeader, records: &[Record]) -> Result<Bytes, BatchError> {
    let codec = h.compression();
    let mut body = BytesMut::new();
    for r in records {
        let offset_delta = r.offset - h.base_offset;
        if !(0..=h.last_offset_delta as i64).contains(&offset_delta) {
            return Err(BatchError::BadRecord("record offset outside its batch"));
        }
        put_record(
            &mut body,
            r.timestamp_ms - h.base_timestamp,
            offset_delta as i32,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        );
    }
    let body = match codec {
        0 => body.freeze(),
        _ => compress_records(codec, &body)?,
    };
    let mut b = BytesMut::with_capacity(HEADER_BYTES + body.len());
    b.resize(HEADER_BYTES, 0);
    b.extend_from_slice(&body);
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp_ms)
        .max()
        .unwrap_or(h.max_timestamp);
    let batch_length = (b.len() - LOG_OVERHEAD) as i32;
    b[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&h.base_offset.to_be_bytes());
    b[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    b[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&h.leader_epoch.to_be_bytes());
    b[OFF_MAGIC] = MAGIC as u8;
    b[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&h.attributes.to_be_bytes());
    b[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4]
        .copy_from_slice(&h.last_offset_delta.to_be_bytes());
    b[OFF_BASE_TIMESTAMP..OFF_BASE_TIMESTAMP + 8].copy_from_slice(&h.base_timestamp.to_be_bytes());
    b[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    b[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&h.producer_id.to_be_bytes());
    b[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2].copy_from_slice(&h.producer_epoch.to_be_bytes());
    b[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&h.base_sequence.to_be_bytes());
    b[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4]
        .copy_from_slice(&(records.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&b[OFF_ATTRIBUTES..]);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(b.freeze())
}

/// A records section compressed with `codec` (Kafka's framing for each, as
/// the `kafka-protocol` crate writes it).
fn compress_records(codec: i16, body: &[u8]) -> Result<Bytes, BatchError> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let mut out = BytesMut::new();
    let fill = |b: &mut BytesMut| {
        b.extend_from_slice(body);
        Ok(())
    };
    match codec {
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        other => return Err(BatchError::Compressed(other)),
    }
    .map_err(|e| BatchError::Decompress {
        codec,
        message: format!("compressing: {e:#}"),
    })?;
    Ok(out.freeze())
}

// ---- decoding records -------------------------------------------------------

/// One record of a batch; key, value and header bytes are slices of the
/// batch's `Bytes` (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Most bytes one compressed batch may expand to when a client iterates it
/// (a bound against decompression bombs; the broker's largest batch is 16
/// MiB by default, and Kafka producers rarely reach 4x compression).
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// The records section of a compressed batch, decompressed. Clients only:
/// the broker stores and serves batches as they came, compressed or not.
fn decompress_records(codec: i16, data: Bytes) -> Result<Bytes, BatchError> {
    decompress_within(codec, data, MAX_DECOMPRESSED_BYTES)
}

/// Decompresses at most `max` bytes: the stream is read through a limit,
/// so a bomb (a few KiB that expand to many GiB) costs at most `max` (and
/// the buffer's doubling), never what it claims or would expand to. The
/// kafka-protocol crate's decompressors expand everything first, so only
/// snappy, whose decoder allocates what the stream claims after that claim
/// is checked, goes through it.
fn decompress_within(codec: i16, data: Bytes, max: usize) -> Result<Bytes, BatchError> {
    use std::io::Read;
    let err = |message: String| BatchError::Decompress { codec, message };
    let too_big = || err(format!("expands past {max} bytes"));
    let bounded = |r: &mut dyn Read| -> Result<Bytes, BatchError> {
        let mut out = Vec::new();
        r.take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
        if out.len() > max {
            return Err(too_big());
        }
        Ok(Bytes::from(out))
    };
    match codec {
        1 => bounded(&mut flate2::read::GzDecoder::new(&data[..])),
        2 => {
            use kafka_protocol::compression::{Decompressor, Snappy};
            if snappy_claims_too_much(&data, max) {
                return Err(err(format!("claims to expand past {max} bytes")));
            }
            let mut d = data;
            Snappy::decompress(&mut d, |b: &mut Bytes| Ok(std::mem::take(b)))
                .map_err(|e| err(format!("{e:#}")))
        }
        3 => bounded(&mut lz4::Decoder::new(&data[..]).map_err(|e| err(e.to_string()))?),
        4 => bounded(
            &mut zstd::stream::read::Decoder::with_buffer(&data[..])
                .map_err(|e| err(e.to_string()))?,
        ),
        other => Err(BatchError::Compressed(other)),
    }
}

/// Whether snappy data (raw, or in xerial's framing as Kafka's Java client
/// writes it) claims more than `max` bytes: the decoder allocates what
/// the stream claims before it reads a byte, so a lying length is refused
/// before it is believed.
fn snappy_claims_too_much(data: &[u8], max: usize) -> bool {
    const XERIAL: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    // A raw block starts with its uncompressed length as a varint.
    fn claimed(block: &[u8]) -> u64 {
        let mut v = 0u64;
        for (i, b) in block.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return v;
            }
        }
        u64::MAX
    }
    let max = max as u64;
    if !data.starts_with(XERIAL) {
        return claimed(data) > max;
    }
    let (mut at, mut total) = (XERIAL.len(), 0u64);
    while at + 4 <= data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 4;
        let end = at.saturating_add(len).min(data.len());
        total = total.saturating_add(claimed(&data[at..end]));
        if total > max {
            return true;
        }
        at = end;
    }
    false
}

/// Iterates the records of one validated batch; a compressed one is
/// decompressed first (gzip, snappy, lz4, zstd: what Kafka clients send).
pub struct Records {
    batch: Bytes,
    header: BatchHeader,
    pos: usize,
    end: usize,
    left: i32,
}

impl Records {
    /// `batch` must hold exactly one batch (extra bytes after it are ignored).
    /// Validates the CRC first: consumers verify what they read.
    pub fn new(batch: Bytes) -> Result<Records, BatchError> {
        let header = validate(&batch)?;
        let (batch, end) = match header.compression() {
            0 => (batch, header.total_bytes()),
            codec => {
                // Header as stored, then the records decompressed: the
                // same layout as an uncompressed batch, iterated alike.
                let records =
                    decompress_records(codec, batch.slice(HEADER_BYTES..header.total_bytes()))?;
                let mut whole = BytesMut::with_capacity(HEADER_BYTES + records.len());
                whole.extend_from_slice(&batch[..HEADER_BYTES]);
                whole.extend_from_slice(&records);
                let end = whole.len();
                (whole.freeze(), end)
            }
        };
        Ok(Records {
            batch,
            header,
            pos: HEADER_BYTES,
            end,
            left: header.record_count,
        })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    fn opt_bytes(&mut self) -> Result<Option<Bytes>, BatchError> {
        let len = get_varint(&self.batch[..self.end], &mut self.pos)?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        if self.pos + len > self.end {
            return Err(BatchError::BadRecord("field runs past the batch"));
        }
        let v = self.batch.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(Some(v))
    }

    fn next_record(&mut self) -> Result<Record, BatchError> {
        let b = &self.batch[..self.end];
        let len = get_varint(b, &mut self.pos)?;
        if len < 0 || self.pos + len as usize > self.end {
            return Err(BatchError::BadRecord("record length runs past the batch"));
        }
        let record_end = self.pos + len as usize;
        self.pos += 1; // attributes
        let ts_delta = get_varlong(b, &mut self.pos)?;
        let offset_delta = get_varint(b, &mut self.pos)?;
        let key = self.opt_bytes()?;
        let value = self.opt_bytes()?;
        let n_headers = get_varint(&self.batch[..self.end], &mut self.pos)?;
        if n_headers < 0 {
            return Err(BatchError::BadRecord("negative header count"));
        }
        let mut headers = Vec::new();
        for _ in 0..n_headers {
            let key = self
                .opt_bytes()?
                .ok_or(BatchError::BadRecord("null header key"))?;
            let value = self.opt_bytes()?;
            headers.push(Header { key, value });
        }
        if self.pos != record_end {
            return Err(BatchError::BadRecord(
                "record length disagrees with its fields",
            ));
        }
        // Deltas come from the producer: a CRC-valid batch can still carry
        // values that overflow; that is a bad record, not a panic.
        let offset = self
            .header
            .base_offset
            .checked_add(offset_delta as i64)
            .ok_or(BatchError::BadRecord("offset delta overflows"))?;
        let timestamp_ms = self
            .header
            .base_timestamp
            .checked_add(ts_delta)
            .ok_or(BatchError::BadRecord("timestamp delta overflows"))?;
        Ok(Record {
            offset,
            timestamp_ms,
            key,
            value,
            headers,
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left <= 0 {
            return None;
        }
        self.left -= 1;
        let r = self.next_record();
        if r.is_err() {
            self.left = 0;
        }
        Some(r)
    }
}

/// Splits a run of concatenated batches (as a fetch returns them) into one
/// `Bytes` per batch, without copying. A trailing partial batch is dropped
/// (Kafka fetches may end mid-batch); a corrupt batch is an error.
pub fn split_batches(run: &Bytes) -> Result<Vec<Bytes>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < run.len() {
        let rest = &run[pos..];
        if rest.len() < LOG_OVERHEAD {
            break;
        }
        let len = be_i32(rest, OFF_LENGTH);
        if len < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(len));
        }
        let total = LOG_OVERHEAD + len as usize;
        if rest.len() < total {
            break;
        }
        validate(&rest[..total])?;
        out.push(run.slice(pos..pos + total));
        pos += total;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_batch(n: usize) -> Bytes {
        let mut b = BatchBuilder::new(1_700_000_000_000);
        for i in 0..n {
            let v = format!("value-{i}");
            let headers = [Header {
                key: Bytes::from_static(b"h"),
                value: Some(Bytes::from(vec![i as u8])),
            }];
            b.push(
                1_700_000_000_000 + i as i64,
                Some(b"k"),
                Some(v.as_bytes()),
                &headers,
            );
        }
        b.finish()
    }

    #[test]
    fn header_is_61_bytes_and_crc_validates() {
        let b = sample_batch(3);
        let h = validate(&b).unwrap();
        assert_eq!(h.magic, 2);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.total_bytes(), b.len());
        let recs: Vec<_> = Records::new(b).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].value.as_deref(), Some(&b"value-2"[..]));
        assert_eq!(recs[2].timestamp_ms, 1_700_000_000_002);
        assert_eq!(recs[1].headers[0].value.as_deref(), Some(&[1u8][..]));
    }

    #[test]
    fn patching_base_offset_keeps_crc_valid() {
        let mut b = BytesMut::from(&sample_batch(5)[..]);
        patch_base_offset(&mut b, 1234, 7);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.leader_epoch, 7);
        let offs: Vec<i64> = Records::new(b.freeze())
            .unwrap()
            .map(|r| r.unwrap().offset)
            .collect();
        assert_eq!(offs, vec![1234, 1235, 1236, 1237, 1238]);
    }

    #[test]
    fn any_flipped_byte_in_crc_region_is_caught() {
        let b = sample_batch(2);
        for i in OFF_ATTRIBUTES..b.len() {
            let mut c = b.to_vec();
            c[i] ^= 0x40;
            assert!(
                matches!(validate(&c), Err(BatchError::CrcMismatch { .. })),
                "byte {i}"
            );
        }
    }

    #[test]
    fn truncated_and_lying_lengths_are_errors() {
        let b = sample_batch(2);
        assert!(matches!(
            validate(&b[..b.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate(&b[..30]),
            Err(BatchError::Truncated { .. })
        ));
        let mut c = b.to_vec();
        c[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(validate(&c), Err(BatchError::BadLength(10))));
        let mut c = b.to_vec();
        c[OFF_MAGIC] = 1;
        assert!(matches!(validate(&c), Err(BatchError::BadMagic(1))));
    }

    #[test]
    fn the_filter_skips_markers_and_the_aborted_transactions_named() {
        let header = |base: i64, pid: i64, attributes: i16| BatchHeader {
            base_offset: base,
            batch_length: 0,
            leader_epoch: 0,
            magic: MAGIC,
            crc: 0,
            attributes,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: 0,
            record_count: 1,
        };
        let (t, c) = (ATTR_TRANSACTIONAL, ATTR_TRANSACTIONAL | ATTR_CONTROL);
        // 7 aborts what it wrote at 1 and 3 (marker 4); 8 commits 2
        // (marker 5); 7 writes again at 6 (a new transaction).
        let log = [
            (header(0, -1, 0), true),
            (header(1, 7, t), false),
            (header(2, 8, t), true),
            (header(3, 7, t), false),
            (header(4, 7, c), false),
            (header(5, 8, c), false),
            (header(6, 7, t), true),
        ];
        let mut f = TxnFilter::new(vec![(7, 1)]);
        for (h, want) in &log {
            assert_eq!(f.keep(h), *want, "offset {}", h.base_offset);
        }
        // read_uncommitted: every data batch, no marker.
        let mut f = TxnFilter::new(vec![]);
        let kept: Vec<i64> = log
            .iter()
            .filter(|(h, _)| f.keep(h))
            .map(|(h, _)| h.base_offset)
            .collect();
        assert_eq!(kept, vec![0, 1, 2, 3, 6]);
    }

    #[test]
    fn markers_are_kafkas_control_batches() {
        use kafka_protocol::records::RecordBatchDecoder;
        for (marker, ty) in [(Marker::Commit, 1u8), (Marker::Abort, 0)] {
            let b = control_batch(77, 3, marker, 5, 1_700_000_000_000);
            let h = validate(&b).unwrap();
            assert!(h.is_control());
            assert_ne!(h.attributes & ATTR_TRANSACTIONAL, 0);
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (77, 3, -1)
            );
            assert_eq!(marker_of(b.clone()), Some(marker));
            let set = RecordBatchDecoder::decode(&mut b.clone()).unwrap();
            let r = &set.records[0];
            assert!(r.control && r.transactional);
            assert_eq!(r.key.as_deref(), Some(&[0, 0, 0, ty][..]));
            assert_eq!(r.value.as_deref(), Some(&[0, 0, 0, 0, 0, 5][..]));
        }
        assert_eq!(marker_of(sample_batch(1)), None, "a data batch");
        let mut txn = BatchBuilder::new(0).idempotent(1, 0, 0).transactional();
        txn.push(0, None, Some(b"v"), &[]);
        let t = txn.finish();
        let h = validate(&t).unwrap();
        assert!(!h.is_control());
        assert_eq!(h.attributes, ATTR_TRANSACTIONAL);
    }

    #[test]
    fn batch_matches_kafka_protocol_codec_both_ways() {
        use kafka_protocol::records::{
            Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
            RecordEncodeOptions, TimestampType,
        };
        // ours -> kafka-protocol
        let mut ours = BytesMut::from(&sample_batch(4)[..]);
        patch_base_offset(&mut ours, 100, 0);
        let mut buf = ours.clone().freeze();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(set.records.len(), 4);
        for (i, r) in set.records.iter().enumerate() {
            assert_eq!(r.offset, 100 + i as i64);
            assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
            assert_eq!(r.value.as_deref(), Some(format!("value-{i}").as_bytes()));
            assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
            assert_eq!(r.headers.len(), 1);
        }
        // kafka-protocol -> ours
        let krecs: Vec<KRecord> = (0..3)
            .map(|i| KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 50 + i,
                // the codec starts a new batch unless offset - sequence is constant
                sequence: i as i32,
                timestamp: 1_000 + i,
                key: if i == 1 {
                    None
                } else {
                    Some(Bytes::from(format!("key{i}")))
                },
                value: Some(Bytes::from(vec![b'x'; i as usize * 100])),
                headers: Default::default(),
            })
            .collect();
        let mut enc = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut enc,
            &krecs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        let h = validate(&enc).unwrap();
        assert_eq!(h.base_offset, 50);
        assert_eq!(h.record_count, 3);
        let recs: Vec<_> = Records::new(enc.freeze())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(recs[0].key.as_deref(), Some(&b"key0"[..]));
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[2].value.as_ref().map(|v| v.len()), Some(200));
        assert_eq!(recs[2].offset, 52);
        assert_eq!(recs[2].timestamp_ms, 1_002);
    }

    #[test]
    fn compressed_batches_from_kafka_clients_are_iterated() {
        use kafka_protocol::records::{
            Compression, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let krecs: Vec<KRecord> = (0..20)
            .map(|i| KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 5_000 + i,
                key: Some(Bytes::from(format!("key{i}"))),
                value: Some(Bytes::from(format!("value {i} ").repeat(20))),
                headers: Default::default(),
            })
            .collect();
        for (codec, compression) in [
            (1, Compression::Gzip),
            (2, Compression::Snappy),
            (3, Compression::Lz4),
            (4, Compression::Zstd),
        ] {
            let mut enc = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut enc,
                &krecs,
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .unwrap();
            let h = validate(&enc).unwrap();
            assert_eq!(h.compression(), codec);
            let recs: Vec<Record> = Records::new(enc.clone().freeze())
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(recs.len(), 20, "codec {codec}");
            for (i, r) in recs.iter().enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.timestamp_ms, 5_000 + i as i64);
                assert_eq!(r.key.as_deref(), Some(format!("key{i}").as_bytes()));
                assert_eq!(
                    r.value.as_deref(),
                    Some(format!("value {i} ").repeat(20).as_bytes())
                );
            }
            // Garbage in place of the compressed records, with a fixed-up
            // CRC: an error naming the codec, not a panic.
            let mut bad = enc.clone();
            for b in &mut bad[HEADER_BYTES..] {
                *b ^= 0x5a;
            }
            let crc = crc32c::crc32c(&bad[21..]);
            bad[17..21].copy_from_slice(&crc.to_be_bytes());
            // The public form: an uncompressed batch with the same records.
            let plain = decompress(enc.clone().freeze()).unwrap();
            let ph = validate(&plain).unwrap();
            assert_eq!((ph.compression(), ph.record_count), (0, 20));
            assert_eq!(Records::new(plain).unwrap().count(), 20);
            match Records::new(bad.freeze()) {
                Err(BatchError::Decompress { codec: c, .. }) => assert_eq!(c, codec),
                Ok(mut it) => assert!(it.any(|r| r.is_err()), "codec {codec}"),
                Err(e) => panic!("codec {codec}: {e}"),
            }
        }
        // Snappy that claims 4 GiB is refused before anything is allocated.
        let max = MAX_DECOMPRESSED_BYTES;
        assert!(snappy_claims_too_much(&[0xff, 0xff, 0xff, 0xff, 0x0f], max));
        assert!(!snappy_claims_too_much(&[0x80, 0x01], max));
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        xerial.extend_from_slice(&5u32.to_be_bytes());
        xerial.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(snappy_claims_too_much(&xerial, max));
    }

    #[test]
    fn a_decompression_bomb_is_refused_having_allocated_no_more_than_the_limit() {
        use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
        // 64 MiB of zeros shrink to a few KiB in every codec; the limit
        // here is 1 MiB.
        const BOMB: usize = 64 << 20;
        const MAX: usize = 1 << 20;
        let zeros = vec![0u8; BOMB];
        for codec in 1..=4i16 {
            let mut c = BytesMut::new();
            let fill = |b: &mut BytesMut| {
                b.extend_from_slice(&zeros);
                Ok(())
            };
            match codec {
                1 => Gzip::compress(&mut c, fill),
                2 => Snappy::compress(&mut c, fill),
                3 => Lz4::compress(&mut c, fill),
                _ => Zstd::compress(&mut c, fill),
            }
            .unwrap();
            let bomb = c.freeze();
            assert!(
                bomb.len() < BOMB / 16,
                "codec {codec}: {} bytes",
                bomb.len()
            );
            let (r, peak) =
                crate::alloc_count::peak_bytes(|| decompress_within(codec, bomb.clone(), MAX));
            assert!(
                matches!(r, Err(BatchError::Decompress { codec: c, .. }) if c == codec),
                "codec {codec}: {r:?}"
            );
            assert!(
                peak <= 4 * MAX,
                "codec {codec}: {peak} bytes allocated for a {MAX}-byte limit"
            );
            // Under the limit the same codec works.
            let (ok, _) = crate::alloc_count::peak_bytes(|| {
                decompress_within(codec, bomb.clone(), BOMB).map(|b| b.len())
            });
            assert_eq!(ok.unwrap(), BOMB, "codec {codec}");
        }
    }

    #[test]
    fn records_are_counted_from_batch_headers() {
        let mut b = BatchBuilder::with_capacity(0, 1024);
        for _ in 0..3 {
            b.push(0, None, Some(&b"x"[..]), &[]);
        }
        let one = b.finish();
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        assert_eq!(count_records(&one), 3);
        assert_eq!(count_records(&two), 6);
        assert_eq!(count_records(&two[..two.len() - 1]), 3);
        assert_eq!(count_records(&[]), 0);
    }

    #[test]
    fn scan_stops_at_zero_padding_and_broken_offset_chain() {
        let mut log = Vec::new();
        let mut next = 0;
        for n in [1, 3, 2] {
            let mut b = BytesMut::from(&sample_batch(n)[..]);
            patch_base_offset(&mut b, next, 0);
            next += n as i64;
            log.extend_from_slice(&b);
        }
        let whole = log.len();
        log.extend_from_slice(&[0u8; 4096]);
        let r = scan(&log, OffsetChain::Contiguous, |_, _| {});
        assert_eq!(r.valid_bytes, whole);
        assert_eq!(r.batches, 3);
        assert_eq!(r.next_offset, Some(6));
        // a batch whose base offset does not follow is not part of the log
        let mut b = BytesMut::from(&sample_batch(1)[..]);
        patch_base_offset(&mut b, 99, 0);
        log.truncate(whole);
        log.extend_from_slice(&b);
        assert_eq!(
            scan(&log, OffsetChain::Contiguous, |_, _| {}).valid_bytes,
            whole
        );
    }

    type ArbRecord = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
    );

    fn arb_record() -> impl Strategy<Value = ArbRecord> {
        (
            -1000i64..1_000_000,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..10),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                ),
                0..3,
            ),
        )
    }

    proptest! {
        #[test]
        fn encode_then_iterate_round_trips(
            base_ts in 0i64..2_000_000_000_000,
            base_offset in 0i64..(1 << 40),
            recs in proptest::collection::vec(arb_record(), 1..30),
        ) {
            let mut b = BatchBuilder::new(base_ts);
            for (dt, k, v, hs) in &recs {
                let hs: Vec<Header> = hs.iter().map(|(k, v)| Header {
                    key: Bytes::from(k.clone()), value: v.clone().map(Bytes::from) }).collect();
                b.push(base_ts + dt, k.as_deref(), v.as_deref(), &hs);
            }
            let mut bytes = BytesMut::from(&b.finish()[..]);
            patch_base_offset(&mut bytes, base_offset, 3);
            let h = validate(&bytes).unwrap();
            prop_assert_eq!(h.record_count as usize, recs.len());
            prop_assert_eq!(h.max_timestamp, recs.iter().map(|r| base_ts + r.0).max().unwrap().max(base_ts));
            let got: Vec<Record> = Records::new(bytes.freeze()).unwrap().map(|r| r.unwrap()).collect();
            prop_assert_eq!(got.len(), recs.len());
            for (i, (r, (dt, k, v, hs))) in got.iter().zip(&recs).enumerate() {
                prop_assert_eq!(r.offset, base_offset + i as i64);
                prop_assert_eq!(r.timestamp_ms, base_ts + dt);
                prop_assert_eq!(r.key.as_deref(), k.as_deref());
                prop_assert_eq!(r.value.as_deref(), v.as_deref());
                prop_assert_eq!(r.headers.len(), hs.len());
                for (rh, (hk, hv)) in r.headers.iter().zip(hs) {
                    prop_assert_eq!(&rh.key[..], &hk[..]);
                    prop_assert_eq!(rh.value.as_deref(), hv.as_deref());
                }
            }
        }

        /// The record decoder behind the CRC gate: mutate a valid batch
        /// anywhere after the CRC (header fields, varints, lengths), fix the
        /// CRC up so the batch passes `validate`, and iterate it. Every
        /// outcome is a value or an error, never a panic or a read out of
        /// bounds. (`.ci/run` runs the `fuzz_` tests with many more cases.)
        #[test]
        fn fuzz_record_decoder_behind_a_valid_crc(
            recs in proptest::collection::vec(arb_record(), 1..8),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let mut b = BatchBuilder::new(1000);
            for (dt, k, v, hs) in &recs {
                let hs: Vec<Header> = hs.iter().map(|(k, v)| Header {
                    key: Bytes::from(k.clone()), value: v.clone().map(Bytes::from) }).collect();
                b.push(1000 + dt, k.as_deref(), v.as_deref(), &hs);
            }
            let mut v = b.finish().to_vec();
            for (at, val) in edits {
                let i = OFF_ATTRIBUTES + at % (v.len() - OFF_ATTRIBUTES);
                v[i] = val;
            }
            if let Some(c) = cut {
                // a shorter body with the length field made to agree
                let n = HEADER_BYTES + c % (v.len() - HEADER_BYTES + 1);
                v.truncate(n);
                let len = (n - LOG_OVERHEAD) as i32;
                v[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
            }
            let crc = crc32c::crc32c(&v[OFF_ATTRIBUTES..]);
            v[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
            let bytes = Bytes::from(v);
            let _ = validate_all(&bytes);
            if let Ok(records) = Records::new(bytes.clone()) {
                for r in records.take(10_000).flatten() {
                    prop_assert!(r.value.as_ref().is_none_or(|v| v.len() <= bytes.len()));
                }
            }
        }

        #[test]
        fn fuzz_validate_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = validate(&bytes);
            let _ = scan(&bytes, OffsetChain::Contiguous, |_, _| {});
            let _ = scan(&bytes, OffsetChain::Increasing, |_, _| {});
            let _ = split_batches(&Bytes::from(bytes));
        }

        #[test]
        fn varint_round_trips(v in any::<i64>()) {
            let mut b = BytesMut::new();
            put_varlong(&mut b, v);
            prop_assert_eq!(b.len(), varlong_len(v));
            let mut pos = 0;
            prop_assert_eq!(get_varlong(&b, &mut pos).unwrap(), v);
            prop_assert_eq!(pos, b.len());
        }
    }
}
