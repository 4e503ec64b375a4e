//! The batch layer on its own (pure, no I/O): encode, CRC-32C, validation,
//! record iteration and the recovery scan, in bytes per second on one core.
//!
//! Target (issue 9): encode and CRC at several GB/s per core, far above the
//! disk, so that the produce path stays disk-bound. Figures: BENCHMARKS.md.
//!
//! Run: `cargo bench --bench codec`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardlog::batch::{self, BatchBuilder, Records};
use shardlog::storage::recovery;

const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Bytes of records per encoded batch: about the 1 MiB of the append bench.
const BATCH_PAYLOAD_BYTES: usize = 1 << 20;
/// Record value sizes: small log lines and 1 KiB messages.
const VALUE_SIZES: [usize; 2] = [100, 1024];

/// Encodes `count` records of `value_bytes` each (no key, no headers, one
/// millisecond apart), as a client does before a produce.
fn encode(count: usize, value: &[u8]) -> Bytes {
    let mut b = BatchBuilder::with_capacity(BASE_TIMESTAMP_MS, count * (value.len() + 16));
    for i in 0..count {
        b.push(BASE_TIMESTAMP_MS + i as i64, None, Some(value), &[]);
    }
    b.finish()
}

/// A value of `n` bytes that is not all one byte (the CRC does not care; a
/// reader of a dump might).
fn value_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for value_bytes in VALUE_SIZES {
        let value = value_of(value_bytes);
        let count = BATCH_PAYLOAD_BYTES / value_bytes;
        let batch_bytes = encode(count, &value).len() as u64;
        // Throughput counts the encoded batch (header, varints and CRC included).
        g.throughput(Throughput::Bytes(batch_bytes));
        g.bench_with_input(
            BenchmarkId::new("batch_builder", format!("{count}x{value_bytes}B")),
            &value,
            |b, value| b.iter(|| encode(count, black_box(value))),
        );
    }
    g.finish();
}

fn bench_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for len in [4 << 10, 64 << 10, 1 << 20] {
        let buf = value_of(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(len), &buf, |b, buf| {
            b.iter(|| crc32c::crc32c(black_box(buf)))
        });
    }
    g.finish();
}

fn bench_validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate");
    let one = encode(BATCH_PAYLOAD_BYTES / 1024, &value_of(1024));
    g.throughput(Throughput::Bytes(one.len() as u64));
    // What `Partition::append` does per batch before copying it: header
    // checks plus one CRC-32C pass.
    g.bench_function("1MiB_batch", |b| {
        b.iter(|| batch::validate(black_box(&one)).expect("valid batch"))
    });
    // A produce of 64 batches of 16 KiB (Kafka's default batch.size).
    let run: Vec<u8> = (0..64)
        .flat_map(|_| encode(16, &value_of(1000)).to_vec())
        .collect();
    g.throughput(Throughput::Bytes(run.len() as u64));
    g.bench_function("validate_all_64x16KiB", |b| {
        b.iter(|| batch::validate_all(black_box(&run)).expect("valid run"))
    });
    g.finish();
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for value_bytes in VALUE_SIZES {
        let count = BATCH_PAYLOAD_BYTES / value_bytes;
        let one = encode(count, &value_of(value_bytes));
        g.throughput(Throughput::Bytes(one.len() as u64));
        // A consumer's work per batch: CRC check, then every record as
        // `Bytes` slices of the batch (no copy of keys or values).
        g.bench_with_input(
            BenchmarkId::new("records", format!("{count}x{value_bytes}B")),
            &one,
            |b, one| {
                b.iter(|| {
                    let mut value_bytes = 0usize;
                    for r in Records::new(black_box(one.clone())).expect("valid batch") {
                        value_bytes += r.expect("valid record").value.map_or(0, |v| v.len());
                    }
                    value_bytes
                })
            },
        );
    }
    g.finish();
}

fn bench_recovery_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("recovery");
    // 32 MiB of 16 KiB batches with chained offsets, as a segment holds them.
    let value = value_of(1000);
    let mut log = Vec::with_capacity(33 << 20);
    let mut offset = 0i64;
    while log.len() < 32 << 20 {
        let mut b = encode(16, &value).to_vec();
        batch::patch_base_offset(&mut b, offset, 0);
        offset += 16;
        log.extend_from_slice(&b);
    }
    let (end, next, _) = recovery::scan_bytes(
        &log,
        0,
        0,
        recovery::CHUNK_BYTES,
        shardlog::batch::OffsetChain::Contiguous,
    );
    assert_eq!(
        (end, next),
        (log.len() as u64, offset),
        "the whole log is valid"
    );
    g.throughput(Throughput::Bytes(log.len() as u64));
    g.bench_function("scan_bytes_32MiB_of_16KiB_batches", |b| {
        b.iter(|| {
            recovery::scan_bytes(
                black_box(&log),
                0,
                0,
                recovery::CHUNK_BYTES,
                shardlog::batch::OffsetChain::Contiguous,
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // Short runs: these are stable to a few percent within seconds.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_encode, bench_crc, bench_validate, bench_decode, bench_recovery_scan
}
criterion_main!(benches);
