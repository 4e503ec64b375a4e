//! A full disk through the real binary (issue 8): a failed write or
//! fdatasync fails the produce with a clear storage error (also every produce
//! waiting behind it), the partition refuses further writes, the log stays
//! readable up to the last acknowledged batch and the broker keeps serving.
//! SIGTERM on the full disk stops the broker in time, without a crash; a
//! restart on the still full disk recovers and serves reads; a restart on
//! freed space has every acknowledged batch, byte for byte, and takes
//! produces again.
//!
//! The disk is a small real filesystem: a loop-mounted ext4 image, or a
//! size-limited tmpfs (O_DIRECT works there since Linux 6.6) where loop
//! devices are missing. Both need root; without it (or without mount, mkfs,
//! loop devices) a test prints `SKIPPED: why` and passes.
//! `FULL_DISK_TEST_FS=ext4|tmpfs` picks one filesystem only. A filler
//! file takes all but a few MiB, so the broker fills the rest in a second.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use shardlog::batch::{self, BatchBuilder, Records};
use shardlog::client::{produce_request, Client, ClientError};
use shardlog::protocol::*;

/// Bound on each external command (mkfs, mount, umount).
const TOOL: Duration = Duration::from_secs(30);
/// Time a SIGTERM'ed broker gets to stop.
const STOP: Duration = Duration::from_secs(30);
/// Bound on the whole fill loop: a broker that hangs on a full disk fails here.
const FILL: Duration = Duration::from_secs(60);
/// Size of the ext4 image: small, so mkfs and the fill are quick.
const IMAGE_BYTES: u64 = 32 << 20;
/// Size limit of the tmpfs fallback.
const TMPFS_BYTES: u64 = 16 << 20;
/// Free space the filler file leaves for the broker to fill: about 48
/// batches, so the test is fast but the log spans several tail buffers.
const ROOM_BYTES: u64 = 3 << 20;
/// Each produce carries one batch of about this size.
const BATCH_BYTES: usize = 64 << 10;
const RECORDS_PER_BATCH: usize = 4;
/// Produces in flight on the producer connection: failures must reach the
/// waiting ones too (group commit), not only the one whose flush failed.
const WINDOW: usize = 4;
/// If this much was acknowledged the filesystem did not fill: a test bug.
const MAX_PRODUCED_BYTES: usize = 64 << 20;
const TOPIC: &str = "full";
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// Runs an external tool, killing it after `TOOL`. Err carries a readable
/// reason (exit status and stderr) for the SKIPPED line or a panic.
fn tool(program: &str, args: &[&str]) -> Result<(), String> {
    let what = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{what}`: {e}"))?;
    let status = match wait_deadline(&mut child, TOOL) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("`{what}` did not finish within {TOOL:?}"));
        }
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{what}` failed ({status}): {}", stderr.trim()))
    }
}

/// A small filesystem mounted for the test; unmounted (lazily if busy) and
/// removed on drop, also when the test panics. Declare it before the
/// `Broker`, so the broker is killed first and the mount is not busy.
struct SmallFs {
    kind: &'static str,
    /// The directory everything lives in (image file, mount point).
    dir: PathBuf,
    mount_point: PathBuf,
    mounted: bool,
}

impl SmallFs {
    fn new(tag: &str, kind: &'static str) -> SmallFs {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-{kind}-{}", std::process::id()));
        let mount_point = dir.join("mnt");
        SmallFs {
            kind,
            dir,
            mount_point,
            mounted: false,
        }
    }

    /// An ext4 image on a loop device (`mount -o loop` detaches it again on
    /// unmount). No reserved blocks (`-m 0`): the broker runs as root and
    /// would fill those too, after the filler left them.
    fn ext4(tag: &str) -> Result<SmallFs, String> {
        let mut fs = SmallFs::new(tag, "ext4");
        std::fs::create_dir_all(&fs.mount_point).map_err(|e| e.to_string())?;
        let image = fs.dir.join("disk.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(IMAGE_BYTES))
            .map_err(|e| format!("create {}: {e}", image.display()))?;
        let image = image.to_str().expect("utf-8 path");
        tool(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                image,
            ],
        )?;
        let mnt = fs.mount_point.to_str().expect("utf-8 path").to_owned();
        tool("mount", &["-o", "loop", image, &mnt])?;
        fs.mounted = true;
        Ok(fs)
    }

    fn tmpfs(tag: &str) -> Result<SmallFs, String> {
        let mut fs = SmallFs::new(tag, "tmpfs");
        std::fs::create_dir_all(&fs.mount_point).map_err(|e| e.to_string())?;
        let mnt = fs.mount_point.to_str().expect("utf-8 path").to_owned();
        let size = format!("size={TMPFS_BYTES}");
        tool("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &mnt])?;
        fs.mounted = true;
        Ok(fs)
    }

    /// Whether an aligned O_DIRECT write and fdatasync work here (glommio
    /// opens every segment with O_DIRECT).
    fn check_direct_io(&self) -> Result<(), String> {
        use std::io::Write;
        let path = self.mount_point.join("direct-io-check");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .map_err(|e| format!("O_DIRECT open on {}: {e}", self.kind))?;
        let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("valid layout");
        // SAFETY: a non-zero size; freed below with the same layout.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!p.is_null(), "allocation of one page");
        // SAFETY: `p` points at 4096 initialised (zeroed) bytes we own.
        let page = unsafe { std::slice::from_raw_parts(p, 4096) };
        let r = f.write_all(page).and_then(|_| f.sync_data());
        // SAFETY: allocated above with `layout`, not used after this.
        unsafe { std::alloc::dealloc(p, layout) };
        drop(f);
        let _ = std::fs::remove_file(&path);
        r.map_err(|e| format!("O_DIRECT write on {}: {e}", self.kind))
    }

    /// Bytes this process may still allocate on the filesystem.
    fn free_bytes(&self) -> u64 {
        let c = CString::new(self.mount_point.as_os_str().as_bytes()).expect("no NUL in path");
        // SAFETY: statvfs fills the zeroed struct we own from a valid C string.
        unsafe {
            let mut s: libc::statvfs = std::mem::zeroed();
            assert_eq!(
                libc::statvfs(c.as_ptr(), &mut s),
                0,
                "statvfs {}: {}",
                self.mount_point.display(),
                std::io::Error::last_os_error()
            );
            s.f_bavail as u64 * s.f_frsize as u64
        }
    }

    /// Takes all but `room` bytes of the free space with one allocated file.
    fn fill_leaving(&self, name: &str, room: u64) -> PathBuf {
        use std::os::fd::AsRawFd;
        let path = self.mount_point.join(name);
        let want = self.free_bytes().saturating_sub(room);
        let f = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        // posix_fallocate (not set_len): the blocks must really be taken.
        // SAFETY: a valid open descriptor.
        let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, want as libc::off_t) };
        assert_eq!(
            rc,
            0,
            "fallocate {want} bytes for {}: {}",
            path.display(),
            std::io::Error::from_raw_os_error(rc)
        );
        f.sync_all().unwrap();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if self.mounted {
            let mnt = self.mount_point.to_str().expect("utf-8 path").to_owned();
            if let Err(e) = tool("umount", &[&mnt]) {
                eprintln!("{e}; unmounting lazily");
                if let Err(e) = tool("umount", &["-l", &mnt]) {
                    eprintln!("{e}: {mnt} is left mounted");
                    return;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The small filesystem to fill, or why there is none on this machine.
fn small_fs(tag: &str) -> Result<SmallFs, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("mounting a small filesystem needs root".into());
    }
    let choice = std::env::var("FULL_DISK_TEST_FS").unwrap_or_default();
    let mut why = Vec::new();
    if choice.is_empty() || choice == "ext4" {
        match SmallFs::ext4(tag).and_then(|fs| fs.check_direct_io().map(|_| fs)) {
            Ok(fs) => return Ok(fs),
            Err(e) => why.push(format!("loop-mounted ext4: {e}")),
        }
    }
    if choice.is_empty() || choice == "tmpfs" {
        match SmallFs::tmpfs(tag).and_then(|fs| fs.check_direct_io().map(|_| fs)) {
            Ok(fs) => return Ok(fs),
            Err(e) => why.push(format!("tmpfs: {e}")),
        }
    }
    if why.is_empty() {
        why.push(format!(
            "FULL_DISK_TEST_FS={choice:?} is neither ext4 nor tmpfs"
        ));
    }
    Err(why.join("; "))
}

/// splitmix64: record values that differ from batch to batch and do not
/// compress (not that the broker compresses, but zeros hide bugs).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Batch `seq` of phase `phase`: `RECORDS_PER_BATCH` records, about
/// `BATCH_BYTES` in all, each naming its phase, batch and index.
fn make_batch(phase: &str, seq: u64) -> Bytes {
    let mut rng = seq ^ 0x5eed;
    let value_bytes = BATCH_BYTES / RECORDS_PER_BATCH - 64;
    let mut b = BatchBuilder::with_capacity(BASE_TIMESTAMP_MS + seq as i64, BATCH_BYTES + 256);
    for i in 0..RECORDS_PER_BATCH {
        let key = format!("{phase}/{seq}/{i}");
        let mut value = format!("{key}|").into_bytes();
        while value.len() < value_bytes {
            value.extend_from_slice(&splitmix(&mut rng).to_le_bytes());
        }
        b.push(
            BASE_TIMESTAMP_MS + seq as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
    }
    b.finish()
}

fn offsets_of(b: &[u8]) -> i64 {
    batch::validate(b).expect("a batch we built").offset_count()
}

/// Whether `stored` is `sent` with only the broker's fields rewritten (base
/// offset and leader epoch, bytes 0..8 and 12..16, outside the CRC).
fn same_batch(stored: &[u8], sent: &[u8]) -> bool {
    stored.len() == sent.len() && stored[8..12] == sent[8..12] && stored[16..] == sent[16..]
}

/// A batch sent, and the base offset it was acknowledged at (None: the
/// produce failed, or its answer never came).
struct Sent {
    batch: Bytes,
    ack: Option<i64>,
}

/// Reads the partition from offset 0 to its high watermark: whole, CRC-valid
/// batches with contiguous offsets. Returns them and the high watermark.
fn read_all(c: &mut Client) -> (Vec<Bytes>, i64) {
    let mut out = Vec::new();
    let mut next = 0i64;
    loop {
        let r = c
            .fetch(
                TOPIC,
                &[FetchPartition {
                    partition: 0,
                    fetch_offset: next,
                    max_bytes: 1 << 20,
                }],
                1 << 20,
            )
            .unwrap_or_else(|e| panic!("fetch at {next}: {e}"));
        assert_eq!(r.len(), 1, "one answer for one partition");
        let r = &r[0];
        assert_eq!(r.error, None, "fetch at {next}");
        let batches = batch::split_batches(&r.records.to_bytes())
            .unwrap_or_else(|e| panic!("fetch at {next}: bad batch: {e}"));
        if batches.is_empty() {
            assert_eq!(
                next, r.high_watermark,
                "a fetch at {next}, below the high watermark, returned nothing"
            );
            return (out, next);
        }
        for b in batches {
            let records = Records::new(b.clone()).expect("split_batches validated it");
            let h = *records.header();
            assert_eq!(h.base_offset, next, "offsets are not contiguous");
            let mut count = 0;
            for rec in records {
                rec.unwrap_or_else(|e| panic!("record in batch at {next}: {e}"));
                count += 1;
            }
            assert_eq!(count, h.offset_count(), "batch at {next}: records");
            next += count;
            out.push(b);
        }
    }
}

/// Checks the log against `sent` (in send order): every acknowledged batch
/// at its offset, byte for byte; after the last one, at most a prefix of the
/// unacknowledged batches (a write that reached the disk before its fdatasync
/// failed survives a restart), and nothing else. `exact`: no unacknowledged
/// batch may be visible (a running broker shows only what it acknowledged).
/// Returns the high watermark.
fn check_log(c: &mut Client, sent: &[Sent], exact: bool) -> i64 {
    let (stored, hw) = read_all(c);
    let acked = sent.iter().take_while(|s| s.ack.is_some()).count();
    assert!(
        sent[acked..].iter().all(|s| s.ack.is_none()),
        "acknowledgements come in send order"
    );
    assert!(
        stored.len() >= acked,
        "the log holds {} batches up to offset {hw}, but {acked} were acknowledged",
        stored.len()
    );
    if exact {
        assert_eq!(
            stored.len(),
            acked,
            "batches past the last acknowledged one are visible"
        );
    }
    assert!(
        stored.len() <= sent.len(),
        "the log holds {} batches, only {} were sent",
        stored.len(),
        sent.len()
    );
    for (k, (s, x)) in stored.iter().zip(sent).enumerate() {
        let base = batch::validate(s).expect("validated").base_offset;
        assert!(
            same_batch(s, &x.batch),
            "batch #{k} (acked at {:?}) differs from the one at offset {base}",
            x.ack
        );
        if let Some(ack) = x.ack {
            assert_eq!(base, ack, "batch #{k} is stored at another offset");
        }
    }
    hw
}

/// What filling the disk produced.
struct Fill {
    /// Every batch sent, acknowledged ones first.
    sent: Vec<Sent>,
    /// The first refused produce's error.
    error: ClientError,
    /// Errors of the produces in flight behind it.
    later_errors: Vec<ClientError>,
}

/// Pipelines durable produces (`WINDOW` in flight) until one fails.
fn produce_until_refused(c: &mut Client) -> Fill {
    let start = Instant::now();
    let mut sent: Vec<Sent> = Vec::new();
    let mut in_flight = std::collections::VecDeque::with_capacity(WINDOW);
    let mut acked_end = 0i64;
    loop {
        assert!(
            start.elapsed() < FILL,
            "the disk did not fill within {FILL:?}"
        );
        assert!(
            sent.len() * BATCH_BYTES < MAX_PRODUCED_BYTES,
            "{} batches sent and no produce refused: the filesystem did not fill",
            sent.len()
        );
        while in_flight.len() < WINDOW {
            let b = make_batch("fill", sent.len() as u64);
            let id = c
                .send(produce_request(TOPIC, 0, b.clone(), Acks::Durable))
                .unwrap_or_else(|e| panic!("send produce #{}: {e}", sent.len()));
            in_flight.push_back((id, sent.len()));
            sent.push(Sent {
                batch: b,
                ack: None,
            });
        }
        let (id, k) = in_flight.pop_front().expect("window > 0");
        match c.recv_produce(id) {
            Ok(base) => {
                assert_eq!(base, acked_end, "produce #{k}: acknowledged offset");
                acked_end += offsets_of(&sent[k].batch);
                sent[k].ack = Some(base);
            }
            Err(error) => {
                // Every produce in flight behind it must be answered too, and
                // none acknowledged: the partition refuses writes now.
                let later_errors = in_flight
                    .into_iter()
                    .map(|(id, k)| match c.recv_produce(id) {
                        Ok(base) => panic!(
                            "produce #{k} acknowledged at {base} after an earlier one failed: {error}"
                        ),
                        Err(e) => e,
                    })
                    .collect();
                return Fill {
                    sent,
                    error,
                    later_errors,
                };
            }
        }
    }
}

/// Asserts `e` is the broker refusing with a storage error that names the
/// partition and what failed, and returns its message.
fn storage_error(e: &ClientError, what: &str) -> String {
    assert_eq!(
        e.code(),
        Some(ErrorCode::StorageError),
        "{what}: a storage error expected, got: {e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{TOPIC}/0")) && msg.contains("failed"),
        "{what}: the message names the partition and the failure: {msg}"
    );
    assert!(
        ["write to", "fdatasync of", "creating a segment"]
            .iter()
            .any(|op| msg.contains(op)),
        "{what}: the message says which operation failed: {msg}"
    );
    msg
}

/// The broker's WARN and ERROR lines, and its last line.
fn problems(log: &str) -> String {
    let log = plain(log);
    let mut lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.starts_with("error:"))
        .collect();
    if let Some(last) = log.lines().last() {
        if lines.last() != Some(&last) {
            lines.push(last);
        }
    }
    lines.join("\n")
}

/// SIGTERM; the broker must exit by itself within `STOP` with an exit code
/// (not killed by a signal) and without a panic. Returns the status.
fn stop_without_crash(b: &mut Broker, when: &str) -> ExitStatus {
    let status = b.terminate(STOP);
    let log = b.log();
    eprintln!(
        "full_disk: SIGTERM {when}: {status}; warnings, errors and the last line:\n{}",
        problems(&log)
    );
    assert!(
        status.code().is_some() && !log.contains("panicked"),
        "SIGTERM {when}: the broker crashed ({status}); log:\n{log}"
    );
    status
}

/// After a restart: checks the log against `sent` and makes `sent` what the
/// log holds: unacknowledged batches that reached the disk (a prefix of
/// them, checked) count as acknowledged where they landed; the rest are
/// dropped. Returns the end of the log and how many such batches survived.
fn settle_after_restart(c: &mut Client, sent: &mut Vec<Sent>) -> (i64, usize) {
    let hw = check_log(c, sent, false);
    let mut at = 0;
    let mut kept = 0;
    sent.retain_mut(|s| {
        if at >= hw {
            return false;
        }
        if s.ack.is_none() {
            s.ack = Some(at);
            kept += 1;
        }
        at += offsets_of(&s.batch);
        true
    });
    assert_eq!(at, hw, "the log ends on a batch boundary");
    (hw, kept)
}

/// Durable produces one at a time of batches `phase/0..max`, recorded in
/// `sent`, until one is refused (its error is returned) or `max` succeeded.
fn produce_one_by_one(
    c: &mut Client,
    sent: &mut Vec<Sent>,
    next: &mut i64,
    phase: &str,
    max: u64,
) -> Option<ClientError> {
    for k in 0..max {
        let batch = make_batch(phase, k);
        sent.push(Sent {
            batch: batch.clone(),
            ack: None,
        });
        match c.produce(TOPIC, 0, batch.clone(), Acks::Durable) {
            Ok(base) => {
                assert_eq!(base, *next, "{phase} produce #{k}: acknowledged offset");
                *next += offsets_of(&batch);
                sent.last_mut().expect("just pushed").ack = Some(base);
            }
            Err(e) => return Some(e),
        }
    }
    None
}

/// The scenario of both tests below, with segments of `segment_bytes`;
/// `tag` names the test's directory. Panics where a check fails.
fn full_disk_scenario(test: &str, tag: &str, segment_bytes: u64) {
    let test_start = Instant::now();
    let fs = match small_fs(tag) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: {test}: {why}");
            return;
        }
    };
    // The mount point is the data directory: the broker's own log file goes
    // next to the data directory (`Broker::start`), so it stays on the big
    // disk and keeps every line while this one is full.
    let data = fs.mount_point.clone();
    let segment_bytes = segment_bytes.to_string();
    // No retention by age: the records carry 2023 timestamps.
    let args = [
        "--fsync",
        "always",
        "--retention-ms",
        "-1",
        "--segment-bytes",
        &segment_bytes,
    ];
    let mut b = Broker::start(&data, &args);
    let mut producer = Client::connect(&b.broker_arg()).unwrap();
    producer.create_topic(TOPIC, 1).unwrap();
    let filler = fs.fill_leaving("filler", ROOM_BYTES);
    eprintln!(
        "full_disk: {} at {}, {} KiB left for the broker",
        fs.kind,
        data.display(),
        fs.free_bytes() >> 10
    );

    // 1. Produce until the disk is full: a clean storage error, for the
    //    failed produce and for every one in flight behind it.
    let fill = produce_until_refused(&mut producer);
    let acked = fill.sent.iter().filter(|s| s.ack.is_some()).count();
    let acked_end: i64 = fill
        .sent
        .iter()
        .filter(|s| s.ack.is_some())
        .map(|s| offsets_of(&s.batch))
        .sum();
    assert!(acked > 0, "the disk was full before the first batch");
    let msg = storage_error(&fill.error, "the produce that hit the full disk");
    eprintln!(
        "full_disk: {acked} batches acknowledged (offsets 0..{acked_end}) in {:?}, then: {msg}; \
         the {} in flight behind it were refused too; {} KiB free",
        test_start.elapsed(),
        fill.later_errors.len(),
        fs.free_bytes() >> 10
    );
    for e in &fill.later_errors {
        storage_error(e, "a produce in flight behind the failed one");
    }
    if !msg.contains("No space left on device") {
        eprintln!("full_disk: note: the error does not say ENOSPC");
    }

    // 2. The disk is still full. Another connection reads every acknowledged
    //    batch back from offset 0 (and nothing else), metadata answers, and
    //    the partition refuses writes.
    let mut reader = Client::connect(&b.broker_arg()).unwrap();
    let t = reader.topic(TOPIC).unwrap();
    assert_eq!(t.partitions.len(), 1, "metadata of {TOPIC}");
    assert_eq!(check_log(&mut reader, &fill.sent, true), acked_end);
    assert_eq!(
        reader.list_offset(TOPIC, 0, LIST_LATEST).unwrap(),
        acked_end,
        "latest offset"
    );
    let e = producer
        .produce(TOPIC, 0, make_batch("refused", 0), Acks::Durable)
        .expect_err("a produce to the failed partition");
    let again = storage_error(&e, "a produce after the failure");
    eprintln!("full_disk: a further produce: {again}");
    // The producer's connection survived its errors: it reads too.
    assert_eq!(check_log(&mut producer, &fill.sent, true), acked_end);
    drop((producer, reader));
    let mut sent = fill.sent;

    // 3. SIGTERM with the disk still full: the final flush of the failed
    //    partition cannot succeed; the broker must stop anyway, in time.
    stop_without_crash(&mut b, "with the disk full");

    // 4. Restart with the disk still full (a broker restarted after the
    //    failure): it recovers, serves every acknowledged batch, and takes
    //    produces while recovery freed room (the torn tail it cut), then
    //    refuses them cleanly again.
    b = Broker::start(&data, &args);
    eprintln!(
        "full_disk: restarted on the full disk ({} KiB free); warnings, errors and the last line:\n{}",
        fs.free_bytes() >> 10,
        problems(&b.log())
    );
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    let (mut next, kept) = settle_after_restart(&mut c, &mut sent);
    let before = sent.len();
    let e = produce_one_by_one(&mut c, &mut sent, &mut next, "still-full", 64)
        .expect("the disk fills again");
    let msg = storage_error(&e, "a produce after the restart on the full disk");
    eprintln!(
        "full_disk: after the restart on the full disk: the log ended at {} ({kept} \
         unacknowledged batches kept), {} more acknowledged, then: {msg}",
        sent[..before]
            .iter()
            .map(|s| offsets_of(&s.batch))
            .sum::<i64>(),
        sent.len() - before - 1,
    );
    assert_eq!(check_log(&mut c, &sent, true), next);
    drop(c);
    stop_without_crash(&mut b, "after the restart on the full disk");

    // 5. Free the space and restart: every acknowledged batch is there, and
    //    produces succeed again.
    std::fs::remove_file(&filler).unwrap();
    b = Broker::start(&data, &args);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    let (mut next, kept) = settle_after_restart(&mut c, &mut sent);
    eprintln!(
        "full_disk: filler removed ({} KiB free), restarted: the log ends at {next} ({kept} \
         unacknowledged batches kept); warnings, errors and the last line:\n{}",
        fs.free_bytes() >> 10,
        problems(&b.log())
    );
    if let Some(e) = produce_one_by_one(&mut c, &mut sent, &mut next, "freed", 8) {
        panic!("a produce after space was freed: {e}");
    }
    assert_eq!(check_log(&mut c, &sent, true), next);
    drop(c);
    let status = stop_without_crash(&mut b, "after space was freed");
    assert!(status.success(), "SIGTERM once space was freed: {status}");
    eprintln!(
        "full_disk: {test}: done on {} in {:?}",
        fs.kind,
        test_start.elapsed()
    );
}

#[test]
fn full_disk_fails_produces_cleanly_and_keeps_the_log() {
    // Default-sized segments: the disk fills inside the first one.
    full_disk_scenario(
        "full_disk_fails_produces_cleanly_and_keeps_the_log",
        "full-disk",
        1 << 30,
    );
}

/// With segments that roll just before the disk fills, writing the sealed
/// segment's index files fails (a warning: they are rebuilt from the log on
/// the next start). On that start, with the disk still full, the rebuild
/// writes them again, fails, and the broker refuses to start at all, so
/// nothing is readable until space is freed.
#[test]
fn restart_on_full_disk_after_a_failed_seal_serves_reads() {
    // 47 batches of ~65,430 bytes: the roll comes one batch before the disk
    // is full, so the seal's index writes hit it (on the ext4 image here).
    full_disk_scenario(
        "restart_on_full_disk_after_a_failed_seal_serves_reads",
        "full-disk-seal",
        3_100_000,
    );
}
