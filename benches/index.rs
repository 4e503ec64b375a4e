//! Sparse index lookups on a full segment: `OffsetIndex::locate` (where a
//! fetch starts reading) and `TimeIndex::start_for` (where ListOffsets by
//! timestamp starts), against a linear scan of the same entries, plus the
//! decode of the index files that a segment open checks.
//!
//! A 1 GiB segment (the default `segment.bytes`) of 4 KiB batches holds one
//! entry per batch in each index (`INDEX_INTERVAL_BYTES` = 4 KiB): 262,144.
//!
//! Run: `cargo bench --bench index`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardlog::storage::index::{OffsetIndex, TimeIndex, INDEX_INTERVAL_BYTES};

const SEGMENT_BYTES: u64 = 1 << 30;
/// Records per 4 KiB batch (about 100 B each).
const RECORDS_PER_BATCH: i64 = 40;
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// Both indexes of a full segment, and the same entries in plain vectors
/// for the linear scans. Batch `i` holds offsets `40 i ..` at position
/// `4096 i`, its records stamped `BASE + i` ms.
struct Full {
    offsets: OffsetIndex,
    times: TimeIndex,
    offset_entries: Vec<(i64, u64)>,
    time_entries: Vec<(i64, i64)>,
    next_offset: i64,
}

fn full_segment() -> Full {
    let mut f = Full {
        offsets: OffsetIndex::default(),
        times: TimeIndex::default(),
        offset_entries: Vec::new(),
        time_entries: Vec::new(),
        next_offset: 0,
    };
    let batches = SEGMENT_BYTES / INDEX_INTERVAL_BYTES;
    for i in 0..batches {
        let offset = i as i64 * RECORDS_PER_BATCH;
        let pos = i * INDEX_INTERVAL_BYTES;
        let ts = BASE_TIMESTAMP_MS + i as i64;
        f.offsets.on_batch(offset, pos);
        f.times.on_batch(offset, ts, pos);
        f.offset_entries.push((offset, pos));
        f.time_entries.push((ts, offset));
    }
    f.next_offset = batches as i64 * RECORDS_PER_BATCH;
    assert_eq!(
        f.offsets.len(),
        batches as usize,
        "an entry per 4 KiB batch"
    );
    assert_eq!(f.times.len(), batches as usize);
    f
}

/// The naive lookups the sparse indexes replace: walk every entry.
fn locate_linear(entries: &[(i64, u64)], offset: i64) -> u64 {
    let mut at = 0;
    for &(o, p) in entries {
        if o > offset {
            break;
        }
        at = p;
    }
    at
}

fn start_for_linear(entries: &[(i64, i64)], target: i64) -> Option<i64> {
    let mut at = None;
    for &(t, o) in entries {
        if t >= target {
            break;
        }
        at = Some(o);
    }
    at
}

/// `n` lookup targets spread over `0..end` (an LCG: the same every run).
fn targets(n: usize, end: i64) -> Vec<i64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 33) % end as u64) as i64
        })
        .collect()
}

fn bench_lookups(c: &mut Criterion) {
    let f = full_segment();
    let offset_targets = targets(1024, f.next_offset);
    let time_targets: Vec<i64> = targets(1024, f.time_entries.len() as i64 + 1)
        .into_iter()
        .map(|t| BASE_TIMESTAMP_MS + t)
        .collect();
    for (&o, &t) in offset_targets.iter().zip(&time_targets) {
        assert_eq!(f.offsets.locate(o), locate_linear(&f.offset_entries, o));
        assert_eq!(f.times.start_for(t), start_for_linear(&f.time_entries, t));
    }
    // The linear scans walk half the segment's entries per lookup on average;
    // a few lookups per iteration are enough.
    let linear = 16;

    let mut g = c.benchmark_group("offset_index_1GiB_segment");
    g.throughput(Throughput::Elements(offset_targets.len() as u64));
    g.bench_function("locate", |b| {
        b.iter(|| {
            offset_targets
                .iter()
                .map(|&o| f.offsets.locate(black_box(o)))
                .sum::<u64>()
        })
    });
    g.throughput(Throughput::Elements(linear as u64));
    g.bench_function("linear_scan", |b| {
        b.iter(|| {
            offset_targets[..linear]
                .iter()
                .map(|&o| locate_linear(&f.offset_entries, black_box(o)))
                .sum::<u64>()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("time_index_1GiB_segment");
    g.throughput(Throughput::Elements(time_targets.len() as u64));
    g.bench_function("start_for", |b| {
        b.iter(|| {
            time_targets
                .iter()
                .filter_map(|&t| f.times.start_for(black_box(t)))
                .sum::<i64>()
        })
    });
    g.throughput(Throughput::Elements(linear as u64));
    g.bench_function("linear_scan", |b| {
        b.iter(|| {
            time_targets[..linear]
                .iter()
                .filter_map(|&t| start_for_linear(&f.time_entries, black_box(t)))
                .sum::<i64>()
        })
    });
    g.finish();

    // Opening a sealed segment decodes and checks both files whole.
    let mut g = c.benchmark_group("index_file_decode_1GiB_segment");
    let index_file = f.offsets.encode(0);
    g.throughput(Throughput::Bytes(index_file.len() as u64));
    g.bench_function("offset_index", |b| {
        b.iter(|| OffsetIndex::decode(black_box(&index_file), 0, SEGMENT_BYTES).expect("valid"))
    });
    let time_file = f.times.encode(0);
    g.throughput(Throughput::Bytes(time_file.len() as u64));
    g.bench_function("time_index", |b| {
        b.iter(|| TimeIndex::decode(black_box(&time_file), 0, f.next_offset).expect("valid"))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_lookups
}
criterion_main!(benches);
