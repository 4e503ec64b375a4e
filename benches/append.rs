//! Partition append of 1 MiB record batches through a real glommio executor
//! and real O_DIRECT segment files, in bytes per second: `Partition::append`
//! (validate, assign the offset, copy into the DMA tail buffer) and
//! `flush_to` (the io_uring write, plus the fdatasync under `always`).
//!
//! Target (issue 9): with `FsyncPolicy::Never`, at least 70% of the disk's
//! own sequential O_DIRECT write rate as `fio` measures it in the same
//! sitting (BENCHMARKS.md has both and the commands).
//!
//! Each criterion sample starts a fresh executor (pinned to the last CPU this
//! process may use, as a broker shard is) on a fresh partition under
//! `target/bench-data/append` (a real disk: O_DIRECT fails on tmpfs), times
//! only the appends and flushes on the executor thread, then closes the
//! partition and deletes its files, so disk use stays within one sample.
//! `direct_file_write_baseline` does the same 1 MiB writes through
//! `rt::DirectFile` without the partition: the gap to fio is glommio's and
//! the kernel's, the gap to the baseline is the partition's.
//!
//! Run: `cargo bench --bench append`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use shardlog::batch::BatchBuilder;
use shardlog::partition::{FsyncPolicy, Partition, PartitionConfig};
use shardlog::rt::{self, DirectFile, Placement};

/// Every batch is exactly this long, so each fills one 1 MiB tail buffer and
/// goes to the disk as one page-aligned 1 MiB write: the pattern of
/// `fio --bs=1M`.
const BATCH_BYTES: usize = 1 << 20;
/// Record values in a batch (the last record takes up the rest).
const VALUE_BYTES: usize = 1000;
/// The broker's default registered I/O memory per executor (`BrokerConfig`).
const IO_MEMORY_BYTES: usize = 4 << 20;
/// Flushes in flight at once in the pipelined mode (a few connections' worth).
const PIPELINE_WINDOW: usize = 4;
const TOPIC: &str = "bench";

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/append")
}

/// O_DIRECT needs a real file system; say so clearly instead of failing
/// with EINVAL deep in a write.
fn assert_not_tmpfs(dir: &Path) {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path without NUL");
    // SAFETY: statfs writes into the struct we own; zeroed is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statfs {}", dir.display());
    assert_ne!(
        st.f_type as i64,
        TMPFS_MAGIC,
        "{} is on tmpfs: O_DIRECT needs a real disk",
        dir.display()
    );
}

/// One batch of exactly `BATCH_BYTES`: 1 KiB-ish records, the last one sized
/// to fill the rest (varint lengths make the size move by a few bytes).
fn one_mib_batch() -> Bytes {
    let value = vec![0x61u8; VALUE_BYTES];
    let full_records = BATCH_BYTES / (VALUE_BYTES + 16) - 1;
    let ts = shardlog::rt::now_ms();
    let build = |last_bytes: usize| {
        let mut b = BatchBuilder::with_capacity(ts, BATCH_BYTES);
        for _ in 0..full_records {
            b.push(ts, None, Some(&value), &[]);
        }
        b.push(ts, None, Some(&vec![0x62u8; last_bytes]), &[]);
        b.finish()
    };
    let mut last_bytes = BATCH_BYTES - build(0).len();
    for _ in 0..8 {
        let b = build(last_bytes);
        if b.len() == BATCH_BYTES {
            return b;
        }
        last_bytes = (last_bytes as isize + BATCH_BYTES as isize - b.len() as isize) as usize;
    }
    panic!("cannot size a batch to exactly {BATCH_BYTES} bytes");
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Append, wait for its flush, append the next: one write in flight, as
    /// one producer waiting for each ack (`fio --iodepth=1`).
    OneInFlight,
    /// Up to `PIPELINE_WINDOW` flushes outstanding; the producer passes
    /// through the reactor after each append (as a connection reader waits
    /// for its socket), so the next batch is copied while the disk writes
    /// the previous one. Group commit still writes one buffer at a time.
    Pipelined,
}

/// Appends and flushes `iters` batches on a fresh executor and partition;
/// returns the time the appends and flushes took, and the write stages and
/// fdatasyncs the partition issued.
fn run(batch: &Bytes, fsync: FsyncPolicy, mode: Mode, iters: u64) -> (Duration, u64, u64) {
    let dir = data_dir();
    let batch = batch.clone();
    let out = on_executor(move || async move {
        rt::probe_polled_io(&dir).await.expect("polled-I/O probe");
        let cfg = PartitionConfig {
            fsync,
            ..Default::default()
        };
        let p = Partition::open(&dir, TOPIC, 0, cfg)
            .await
            .expect("open partition");
        let level = p.durable_level();
        let start = Instant::now();
        match mode {
            Mode::OneInFlight => {
                for _ in 0..iters {
                    let a = p.append(&batch).expect("append");
                    p.flush_to(a.next_offset, level).await.expect("flush");
                }
            }
            Mode::Pipelined => {
                let mut inflight = VecDeque::with_capacity(PIPELINE_WINDOW);
                for _ in 0..iters {
                    let a = p.append(&batch).expect("append");
                    let q = p.clone();
                    inflight.push_back(rt::spawn(
                        async move { q.flush_to(a.next_offset, level).await },
                    ));
                    if inflight.len() == PIPELINE_WINDOW {
                        let oldest = inflight.pop_front().expect("window is full");
                        oldest.await.expect("flush");
                    } else {
                        // One turn of the reactor: the flush just spawned
                        // submits its write before the next copy starts.
                        rt::sleep(Duration::from_micros(1)).await;
                    }
                }
                for f in inflight {
                    f.await.expect("flush");
                }
            }
        }
        let elapsed = start.elapsed();
        let io = p.io_counts();
        p.close().await.expect("close partition");
        (elapsed, io.write_stages, io.fdatasyncs)
    });
    std::fs::remove_dir_all(shardlog::storage::topic_dir(&data_dir(), TOPIC))
        .expect("remove the sample's segments");
    out
}

/// The baseline without the partition: `iters` times, an aligned 1 MiB
/// buffer from the executor, the batch copied in, one `DirectFile` write at
/// the end of the file, waited for. The partition's own cost is the gap
/// between this and `run` (validation, offsets, index, flush tasks, locks).
fn run_direct_file(batch: &Bytes, iters: u64) -> Duration {
    let dir = data_dir();
    let batch = batch.clone();
    let path = dir.join("direct-file.log");
    let out = on_executor(move || async move {
        rt::probe_polled_io(&dir).await.expect("polled-I/O probe");
        let f = DirectFile::open_rw(&path).await.expect("open");
        let start = Instant::now();
        for i in 0..iters {
            let mut buf = f.alloc(BATCH_BYTES);
            buf.as_bytes_mut().copy_from_slice(&batch);
            f.write_all_at(buf, i * BATCH_BYTES as u64)
                .await
                .expect("write");
        }
        let elapsed = start.elapsed();
        f.close().await.expect("close");
        std::fs::remove_file(&path).expect("remove the sample's file");
        elapsed
    });
    out
}

/// Runs `f()` on a fresh executor pinned to the last CPU this process may
/// use (as a broker shard is) and returns its output.
fn on_executor<G, F, T>(f: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let cpu = *rt::allowed_cpus().last().expect("at least one CPU");
    rt::spawn_executor("bench-append", Placement::Cpu(cpu), IO_MEMORY_BYTES, f)
        .expect("start executor")
        .join()
        .expect("executor thread")
}

fn bench_append(c: &mut Criterion) {
    let dir = data_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create target/bench-data/append");
    assert_not_tmpfs(&dir);
    let batch = one_mib_batch();

    let mut g = c.benchmark_group("partition_append_1MiB_batches");
    // Each iteration is about a millisecond of disk work: few, flat samples,
    // and short ones: at ~1.4 GiB/s every second of measuring writes that
    // much to the disk (about 3 GiB per benchmark, 15 GiB per run).
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(BATCH_BYTES as u64));
    for (fsync, name) in [
        (FsyncPolicy::Never, "never"),
        (FsyncPolicy::Always, "always"),
    ] {
        for mode in [Mode::OneInFlight, Mode::Pipelined] {
            let (mut batches, mut writes, mut syncs) = (0, 0, 0);
            let id = BenchmarkId::new(format!("fsync_{name}"), format!("{mode:?}"));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let (t, w, s) = run(&batch, fsync, mode, iters);
                    batches += iters;
                    writes += w;
                    syncs += s;
                    t
                })
            });
            // Group commit at work: batches per write stage and per fdatasync.
            eprintln!(
                "  fsync {name} {mode:?}: {batches} batches, {writes} write stages, {syncs} fdatasyncs"
            );
        }
    }
    g.bench_function("direct_file_write_baseline", |b| {
        b.iter_custom(|iters| run_direct_file(&batch, iters))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
