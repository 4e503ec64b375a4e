//! `shardlog-bench`: the load generator. Parses and validates the flags,
//! starts a broker if asked (`--spawn-broker`), creates the topic, runs the
//! producers and consumers, prints a progress line every second and a final
//! table, and writes JSON on request.
//!
//! Exit status: 0 after a complete run, 1 on a failure, 2 on bad
//! arguments, and 128 + the signal (130 for SIGINT, 143 for SIGTERM) after
//! a run stopped by Ctrl-C or SIGTERM, which still prints the partial
//! report, writes JSON/HTML and removes a spawned broker's directory.
//!
//! Layering: this binary -> shardlog's client (and, for `--spawn-broker`,
//! its server as a library). The one place with `anyhow` and process exit:
//! every failure ends as one line on stderr and a non-zero status.

mod args;
mod assigned;
mod brokercpu;
mod cpus;
mod html;
mod kafka;
mod machine;
mod report;
mod signals;
mod spawn;
mod stats;
mod workload;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use shardlog::client::RoutedClient;
use shardlog::protocol::{ErrorCode, LIST_EARLIEST, LIST_LATEST};

use args::{Args, FromArg, Params, Stop, Target};
use stats::{ActorResult, Live, Percentiles, Second, MIB};
use workload::Shared;

fn main() {
    // Before any thread starts, so that every thread inherits the mask.
    if let Err(e) = signals::install() {
        fail(&format!("cannot set up signal handling: {e}"), 1);
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                let _ = e.print();
                std::process::exit(0);
            }
            // clap explains over several lines; keep the first (the error).
            _ => fail(
                e.to_string()
                    .lines()
                    .next()
                    .unwrap_or("bad arguments")
                    .trim_start_matches("error: "),
                2,
            ),
        },
    };
    let params = match args::validate(args) {
        Ok(p) => p,
        Err(e) => fail(&e, 2),
    };
    if let Err(e) = run(&params) {
        // A second Ctrl-C makes every actor give up at once: say so, not
        // "stopped because another actor failed".
        if let (true, Some(sig)) = (signals::abort_requested(), signals::stopped_by()) {
            fail(
                &format!("aborted by a second {}: no report", signals::name(sig)),
                128 + sig,
            );
        }
        fail(&format!("{e:#}"), 1);
    }
    if let Some(sig) = signals::stopped_by() {
        std::process::exit(128 + sig);
    }
}

fn fail(msg: &str, code: i32) -> ! {
    let one_line = msg.replace('\n', " ");
    eprintln!("shardlog-bench: error: {one_line}");
    std::process::exit(code);
}

fn run(p: &Params) -> Result<()> {
    if let Some(tls) = &p.tls {
        shardlog::client::tls::use_tls(tls).context("--tls-ca")?;
    }
    if let Some(login) = &p.sasl {
        match p.target {
            Target::Kafka(_) => kafka::use_sasl(login.clone()),
            _ => shardlog::client::sasl::use_sasl(login.clone()).map_err(|e| anyhow!(e))?,
        }
    }
    let machine = machine::describe();
    // The guard stops the broker and removes its directory when dropped, so
    // every `?` below cleans up.
    let spawned = match &p.target {
        Target::Spawn {
            shards,
            fsync,
            tmp_dir,
            metrics,
            ..
        } => Some(spawn::SpawnedBroker::start(
            *shards,
            *fsync,
            tmp_dir.as_deref(),
            *metrics,
        )?),
        Target::Broker(_) | Target::Kafka(_) => None,
    };
    let broker_addr = match (&p.target, &spawned) {
        (_, Some(s)) => s.addr.clone(),
        (Target::Broker(b) | Target::Kafka(b), None) => b.clone(),
        (Target::Spawn { .. }, None) => unreachable!("spawned above"),
    };
    let start_offsets = prepare_topic(p, &broker_addr)?;
    // Group consumers join before the clock starts.
    let mut group_consumers: Vec<Option<shardlog::client::consumer::GroupConsumer>> = Vec::new();
    if let Some(g) = &p.consumer_group {
        let (cs, took) = assigned::join(&broker_addr, &p.topic, p.partitions, g, p.consumers)?;
        if !p.quiet {
            eprintln!(
                "group {g}: {} consumers own all {} partitions after {} ms",
                p.consumers,
                p.partitions,
                took.as_millis()
            );
        }
        group_consumers = cs.into_iter().map(Some).collect();
    }

    // The broker's CPU from here to the end of the actors.
    let cpu_before = p.broker_cpu.as_ref().map(|s| s.read());
    let main_cpu_before = brokercpu::thread_cpu_s();
    let live = Live::new();
    let sh = Shared {
        params: p,
        broker: &broker_addr,
        kafka: matches!(p.target, Target::Kafka(_)),
        t0: Instant::now(),
        live: &live,
        remaining: AtomicU64::new(match p.stop {
            Stop::Messages(n) | Stop::Bytes(n) => n,
            Stop::After(_) => u64::MAX,
        }),
        produced: (0..p.partitions).map(|_| AtomicU64::new(0)).collect(),
        key_seq: AtomicU64::new(0),
    };
    // Group consumers: where this run's reading of each partition stands.
    let group_next: Vec<std::sync::atomic::AtomicI64> = start_offsets
        .iter()
        .map(|&o| std::sync::atomic::AtomicI64::new(o))
        .collect();
    // Thread per core: producers, then consumers, one CPU each (if any).
    let pins = cpus::plan(p.pin_cpus, p.producers + p.consumers, &cpus::allowed());
    let pin = |k: usize| {
        if let Some(cpu) = pins.as_ref().map(|v| v[k]) {
            if let Err(e) = cpus::pin_current(cpu) {
                eprintln!(
                    "shardlog-bench: cannot pin a thread to CPU {cpu} ({e}); it runs unpinned"
                );
            }
        }
    };
    let progress_done = std::sync::atomic::AtomicBool::new(false);
    let (producers, consumers, series) = std::thread::scope(|s| {
        let progress = s.spawn(|| {
            let series = progress(&sh, &progress_done);
            (series, brokercpu::thread_cpu_s())
        });
        // Whatever happens below (a panic included), the progress thread
        // must end, or the scope would wait for it forever.
        let _guard = ScopeGuard {
            progress_done: &progress_done,
            live: &live,
        };
        let consumers: Vec<_> = workload::assign(p.partitions, p.consumers)
            .into_iter()
            .enumerate()
            .map(|(i, parts)| {
                let gc = group_consumers.get_mut(i).and_then(Option::take);
                let parts: Vec<(u32, i64)> = parts
                    .into_iter()
                    .map(|q| (q, start_offsets[q as usize]))
                    .collect();
                let (sh, pin, group_next) = (&sh, &pin, &group_next);
                std::thread::Builder::new()
                    .name(format!("consumer-{i}"))
                    .spawn_scoped(s, move || {
                        pin(p.producers + i);
                        let r = match (&p.consumer_group, gc) {
                            (Some(g), Some(c)) => assigned::consume(i, sh, c, g, group_next),
                            _ => workload::consume(i, parts, sh),
                        };
                        abort_on_err(sh, r.map(with_cpu))
                    })
            })
            .collect();
        let producers: Vec<_> = (0..p.producers)
            .map(|i| {
                let (sh, pin) = (&sh, &pin);
                std::thread::Builder::new()
                    .name(format!("producer-{i}"))
                    .spawn_scoped(s, move || {
                        pin(i);
                        abort_on_err(sh, workload::produce(i, sh).map(with_cpu))
                    })
            })
            .collect();
        let producers = join_all(producers);
        live.producers_done.store(true, Ordering::Release);
        let consumers = join_all(consumers);
        progress_done.store(true, Ordering::Relaxed);
        let (series, progress_cpu) = progress.join().unwrap_or_default();
        (producers, consumers, (series, progress_cpu))
    });
    let (series, progress_cpu) = series;
    let elapsed_s = sh.t0.elapsed().as_secs_f64();
    let producers = producers?;
    let consumers = consumers?;
    let broker_cpu = broker_cpu_used(
        p.broker_cpu.as_ref(),
        cpu_before,
        // This tool's own threads, when the broker shares the process.
        producers
            .iter()
            .chain(&consumers)
            .map(|a| a.cpu_s)
            .sum::<f64>()
            + progress_cpu
            + (brokercpu::thread_cpu_s() - main_cpu_before),
    );

    let produce = (p.producers > 0).then(|| stats::summarize(&producers, p.warmup));
    let consume = (p.consumers > 0).then(|| stats::summarize(&consumers, p.warmup));
    if let (Some(pr), Some(co)) = (&produce, &consume) {
        if pr.messages != co.messages {
            bail!(
                "consumers read {} messages but producers had {} acknowledged",
                co.messages,
                pr.messages
            );
        }
    }
    let info = report::RunInfo {
        params: p,
        broker_addr: &broker_addr,
        data_dir: spawned.as_ref().map(|s| s.data_dir.display().to_string()),
        filesystem: spawned.as_ref().map(|s| s.filesystem.clone()),
        machine: &machine,
        elapsed_s,
        stopped_by: signals::stopped_by().map(signals::name),
    };
    let results = report::Results {
        produce: produce.as_ref(),
        consume: consume.as_ref(),
        series: &series,
        broker_cpu: &broker_cpu,
    };
    // Stop the broker before reporting, so a failure to stop cleanly (data
    // not flushed) fails the run instead of passing silently.
    if let Some(s) = spawned {
        s.stop()?;
    }
    print!("{}", report::table(&info, &results));
    std::io::stdout().flush()?;
    if let Some(path) = &p.json {
        std::fs::write(path, report::json(&info, &results))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &p.html {
        std::fs::write(path, html::page(&info, &results))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The actor's result with its thread's CPU time.
fn with_cpu(mut a: ActorResult) -> ActorResult {
    a.cpu_s = brokercpu::thread_cpu_s();
    a
}

/// What the broker's CPU did since `before`; `own` is what this tool's
/// threads used (subtracted when the broker runs in this process).
fn broker_cpu_used(
    source: Option<&brokercpu::Source>,
    before: Option<Result<f64, String>>,
    own: f64,
) -> brokercpu::Usage {
    use brokercpu::{Source, Usage};
    let (Some(source), Some(before)) = (source, before) else {
        return Usage::Unknown("not measured (--broker-http off)".into());
    };
    match (before, source.read()) {
        (Ok(a), Ok(b)) => match source {
            Source::ThisProcess => Usage::Seconds((b - a - own).max(0.0)),
            Source::Metrics(_) | Source::Pid(_) => Usage::Seconds((b - a).max(0.0)),
        },
        (Err(e), _) | (_, Err(e)) => Usage::Unknown(e),
    }
}

/// Creates the topic (or checks an existing one) and returns where each
/// partition's consumer starts.
/// What `prepare_topic` needs of a client, over either wire.
trait TopicSetup {
    /// Creates `topic` unless it exists; its partition count.
    fn ensure_topic(&mut self, topic: &str, partitions: u32) -> Result<u32>;
    /// The offset `at` (LIST_EARLIEST or LIST_LATEST) of one partition of
    /// the topic `ensure_topic` named.
    fn offset_at(&mut self, topic: &str, partition: u32, at: i64) -> Result<i64>;
}

impl TopicSetup for RoutedClient {
    fn ensure_topic(&mut self, topic: &str, partitions: u32) -> Result<u32> {
        match self.public().create_topic(topic, partitions) {
            Ok(()) => {}
            Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.topic(topic)?)
    }

    fn offset_at(&mut self, topic: &str, partition: u32, at: i64) -> Result<i64> {
        Ok(self.public().list_offset(topic, partition, at)?)
    }
}

impl TopicSetup for kafka::KafkaClient {
    fn ensure_topic(&mut self, topic: &str, partitions: u32) -> Result<u32> {
        if self.topic(topic)? == 0 {
            self.create_topic(topic, partitions)?;
        }
        self.topic(topic)
    }

    fn offset_at(&mut self, _topic: &str, partition: u32, at: i64) -> Result<i64> {
        self.list_offset(partition, at)
    }
}

/// Creates the topic (or checks the one there has `--partitions`) and
/// lists where each partition starts for `--from`.
fn prepare_topic(p: &Params, broker: &str) -> Result<Vec<i64>> {
    let mut c: Box<dyn TopicSetup> = match p.target {
        Target::Kafka(_) => Box::new(kafka::KafkaClient::connect(broker)?),
        _ => Box::new(RoutedClient::connect(broker)?),
    };
    let n = c
        .ensure_topic(&p.topic, p.partitions)
        .with_context(|| format!("cannot create topic {}", p.topic))?;
    if n != p.partitions {
        bail!(
            "topic {} exists with {n} partitions, not --partitions {}",
            p.topic,
            p.partitions
        );
    }
    let at = match p.from {
        FromArg::Earliest => LIST_EARLIEST,
        FromArg::Latest => LIST_LATEST,
    };
    (0..n)
        .map(|q| {
            c.offset_at(&p.topic, q, at)
                .with_context(|| format!("cannot list offsets of partition {q}"))
        })
        .collect()
}

/// Ends the progress thread, and on a panic stops every actor, so the
/// thread scope never waits forever.
struct ScopeGuard<'a> {
    progress_done: &'a std::sync::atomic::AtomicBool,
    live: &'a Live,
}

impl Drop for ScopeGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.live.abort.store(true, Ordering::Relaxed);
        }
        self.progress_done.store(true, Ordering::Relaxed);
    }
}

/// An actor's error stops every other actor (they check `abort`).
fn abort_on_err(sh: &Shared, r: Result<ActorResult>) -> Result<ActorResult> {
    if r.is_err() {
        sh.live.abort.store(true, Ordering::Relaxed);
    }
    r
}

type Spawned<'s> = std::io::Result<std::thread::ScopedJoinHandle<'s, Result<ActorResult>>>;

/// Joins every actor; the first failure (in actor order) is the answer,
/// preferring a real error over "stopped because another failed".
fn join_all(handles: Vec<Spawned>) -> Result<Vec<ActorResult>> {
    let mut ok = Vec::new();
    let mut errors: Vec<anyhow::Error> = Vec::new();
    for h in handles {
        match h {
            Ok(h) => match h.join() {
                Ok(Ok(r)) => ok.push(r),
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(anyhow!("an actor thread panicked")),
            },
            Err(e) => errors.push(anyhow!("cannot start a thread: {e}")),
        }
    }
    let secondary = |e: &anyhow::Error| format!("{e}").contains("another actor failed");
    if let Some(i) = errors.iter().position(|e| !secondary(e)) {
        return Err(errors.swap_remove(i));
    }
    match errors.pop() {
        Some(e) => Err(e),
        None => Ok(ok),
    }
}

/// Every second: one line on stderr and one entry of the series.
fn progress(sh: &Shared, done: &std::sync::atomic::AtomicBool) -> Vec<Second> {
    let p = sh.params;
    let mut series = Vec::new();
    let mut last = (0u64, 0u64, 0u64, 0u64);
    let mut last_t = sh.t0;
    let mut tick = sh.t0 + workload::PROGRESS_EVERY;
    let total = match p.stop {
        Stop::After(d) => Some(p.warmup + d),
        Stop::Messages(_) | Stop::Bytes(_) => None,
    };
    let take_p99 = |m: &std::sync::Mutex<hdrhistogram::Histogram<u64>>| -> f64 {
        match m.lock() {
            Ok(mut h) => {
                let v = Percentiles::of(&h).p99;
                h.reset();
                v
            }
            Err(_) => 0.0,
        }
    };
    loop {
        let finished = done.load(Ordering::Relaxed);
        let now = Instant::now();
        if !finished && now < tick {
            std::thread::sleep((tick - now).min(Duration::from_millis(50)));
            continue;
        }
        tick += workload::PROGRESS_EVERY;
        let l = sh.live;
        let cur = (
            l.produced_msgs.load(Ordering::Relaxed),
            l.produced_bytes.load(Ordering::Relaxed),
            l.consumed_msgs.load(Ordering::Relaxed),
            l.consumed_bytes.load(Ordering::Relaxed),
        );
        let dt = now
            .saturating_duration_since(last_t)
            .as_secs_f64()
            .max(1e-9);
        let in_warmup = last_t < sh.t0 + p.warmup;
        let s = Second {
            t_s: now.saturating_duration_since(sh.t0).as_secs_f64(),
            warmup: in_warmup,
            produce_msgs_per_s: (cur.0 - last.0) as f64 / dt,
            produce_mb_per_s: (cur.1 - last.1) as f64 / dt / MIB,
            produce_p99_us: take_p99(&l.produce_interval),
            consume_msgs_per_s: (cur.2 - last.2) as f64 / dt,
            consume_mb_per_s: (cur.3 - last.3) as f64 / dt / MIB,
            end_to_end_p99_us: take_p99(&l.e2e_interval),
        };
        last = cur;
        last_t = now;
        if finished {
            // The last, partial second (if anything happened in it).
            if s.produce_msgs_per_s > 0.0 || s.consume_msgs_per_s > 0.0 {
                series.push(s);
            }
            break;
        }
        series.push(s);
        if !p.quiet {
            let when = match total {
                Some(t) => format!("{:>4.0}s/{:.0}s", s.t_s, t.as_secs_f64()),
                None => format!("{:>4.0}s", s.t_s),
            };
            let warm = if in_warmup { " (warmup)" } else { "" };
            let mut line = format!("[{when}]{warm}");
            if p.producers > 0 {
                line += &format!(
                    " produce {:.0} msg/s {:.1} MiB/s p99 {:.0} us",
                    s.produce_msgs_per_s, s.produce_mb_per_s, s.produce_p99_us
                );
            }
            if p.consumers > 0 {
                line += &format!(
                    " | consume {:.0} msg/s {:.1} MiB/s",
                    s.consume_msgs_per_s, s.consume_mb_per_s
                );
                if p.end_to_end() {
                    line += &format!(" e2e p99 {:.0} us", s.end_to_end_p99_us);
                }
            }
            eprintln!("{line}");
        }
    }
    series
}
