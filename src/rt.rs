//! The runtime layer: the one module that names glommio.
//!
//! Owns: starting pinned executors, O_DIRECT files on io_uring, TCP sockets,
//! local channels, timers, and the polled-I/O probe workaround. Everything
//! above talks to these thin wrappers, so a move to another io_uring runtime
//! stays inside this file (ARCHITECTURE.md, "Facts the code relies on":
//! upstream glommio is little maintained).
//!
//! Must never: hold protocol, storage or broker logic.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// A DMA-aligned buffer, as O_DIRECT writes need.
pub type AlignedBuf = glommio::io::DmaBuffer;
/// Bytes read from a direct file (aligned read, sliced to what was asked).
pub type ReadBuf = glommio::io::ReadResult;
pub use glommio::net::{TcpListener, TcpStream};
pub use glommio::Task;

/// Bytes a direct-I/O position or length must be a multiple of. 4 KiB covers
/// every device we run on (glommio reports 512 for most; we write whole pages).
pub const PAGE_BYTES: usize = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(PAGE_BYTES as u64 - 1)
}

pub fn align_up(v: u64) -> u64 {
    align_down(v + PAGE_BYTES as u64 - 1)
}

/// A file opened with O_DIRECT, read and write, driven by io_uring.
pub struct DirectFile {
    file: glommio::io::DmaFile,
    #[cfg(test)]
    path: std::path::PathBuf,
}

impl DirectFile {
    /// Opens (creating if needed) for reading and writing. Not
    /// `DmaFile::create`: that opens write-only and reads fail with EBADF.
    pub async fn open_rw(path: &Path) -> io::Result<DirectFile> {
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(path)
            .await?;
        Ok(DirectFile {
            file,
            #[cfg(test)]
            path: path.to_owned(),
        })
    }

    pub async fn open_ro(path: &Path) -> io::Result<DirectFile> {
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .dma_open(path)
            .await?;
        Ok(DirectFile {
            file,
            #[cfg(test)]
            path: path.to_owned(),
        })
    }

    /// An aligned buffer of `size` bytes. Not zeroed: the caller fills what
    /// it writes (zeroing 1 MiB per flush would cost more than the copy).
    pub fn alloc(&self, size: usize) -> AlignedBuf {
        self.file.alloc_dma_buffer(size)
    }

    /// Writes the whole buffer at `pos` (page-aligned), retrying short writes.
    pub async fn write_all_at(&self, buf: AlignedBuf, pos: u64) -> io::Result<()> {
        debug_assert_eq!(pos % PAGE_BYTES as u64, 0, "direct writes start on a page");
        debug_assert_eq!(buf.len() % PAGE_BYTES, 0, "direct writes are whole pages");
        #[cfg(test)]
        let buf = match faults::on_write(&self.path) {
            None => buf,
            Some(faults::Fault::FailWrite(errno)) => {
                return Err(io::Error::from_raw_os_error(errno))
            }
            Some(faults::Fault::TearWrite { keep_pages }) => {
                // Only the first pages reach the file, as when power fails mid-write.
                let keep = (keep_pages * PAGE_BYTES).min(buf.len());
                let mut part = self.file.alloc_dma_buffer(keep);
                part.as_bytes_mut().copy_from_slice(&buf.as_bytes()[..keep]);
                if keep > 0 {
                    self.file.write_at(part, pos).await?;
                }
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            Some(faults::Fault::FailSync(_)) => buf,
        };
        let len = buf.len();
        let written = self.file.write_at(buf, pos).await?;
        if written == len {
            return Ok(());
        }
        // A short O_DIRECT write: the filesystem ran out of room mid-write
        // (tmpfs reports a full disk this way, not with ENOSPC). It cannot be
        // resumed from the moved buffer, so report it, with the free space
        // so the operator sees why: the caller fails the produce and the
        // unacknowledged bytes are cut at recovery.
        let free = free_bytes(self.file.as_raw_fd());
        Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "short direct write: {written} of {len} bytes; the filesystem has {} bytes free",
                free.map_or("an unknown number of".to_owned(), |f| f.to_string())
            ),
        ))
    }

    /// Reads `len` bytes at any `pos` (the runtime aligns internally). Fewer
    /// bytes come back at the end of the file.
    pub async fn read_at(&self, pos: u64, len: usize) -> io::Result<ReadBuf> {
        Ok(self.file.read_at(pos, len).await?)
    }

    /// Grows the file to at least `len` bytes of allocated blocks that read
    /// as zeros (fallocate without KEEP_SIZE: the length changes too).
    pub async fn preallocate(&self, len: u64) -> io::Result<()> {
        Ok(self.file.pre_allocate(len, false).await?)
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        #[cfg(test)]
        if let Some(errno) = faults::on_sync(&self.path) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(self.file.fdatasync().await?)
    }

    pub async fn file_size(&self) -> io::Result<u64> {
        Ok(self.file.file_size().await?)
    }

    pub async fn truncate(&self, size: u64) -> io::Result<()> {
        Ok(self.file.truncate(size).await?)
    }

    pub async fn close(self) -> io::Result<()> {
        Ok(self.file.close().await?)
    }
}

fn free_bytes(fd: std::os::fd::RawFd) -> Option<u64> {
    // SAFETY: fstatvfs fills the struct we own; fd is open for this call.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::fstatvfs(fd, &mut st) == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// The polled-I/O probe workaround (ARCHITECTURE.md, "Facts the code
/// relies on"): glommio probes polled-I/O support with a read on the first DMA file
/// a thread opens; on an empty file the probe wrongly succeeds and later reads
/// fail with EOPNOTSUPP. So each executor first opens, through DMA, a
/// non-empty marker file on the data device and reads it, before any segment.
pub async fn probe_polled_io(data_dir: &Path) -> io::Result<()> {
    write_probe_marker(data_dir)?;
    let marker = data_dir.join(".io-probe");
    let f = DirectFile::open_ro(&marker).await?;
    let got = f.read_at(0, PAGE_BYTES).await?;
    if got.len() != PAGE_BYTES {
        return Err(io::Error::other("polled-I/O probe read came back short"));
    }
    f.close().await
}

/// Writes the probe's marker file if it is missing or wrong. Written with
/// std::fs (not DMA) so the probe never sees an empty file; the broker calls
/// it once before the shards start, so they only read it.
pub fn write_probe_marker(data_dir: &Path) -> io::Result<()> {
    let marker = data_dir.join(".io-probe");
    let want = vec![0x5au8; PAGE_BYTES];
    if std::fs::read(&marker).map(|b| b == want).unwrap_or(false) {
        return Ok(());
    }
    let tmp = data_dir.join(format!(".io-probe.tmp.{:?}", std::thread::current().id()));
    std::fs::write(&tmp, &want)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &marker)
}

/// Fails with EADDRINUSE if something listens on `addr`: binds a socket
/// without SO_REUSEPORT and without listening (so no client can connect to
/// it meanwhile), then closes it.
pub fn check_addr_free(addr: std::net::SocketAddr) -> io::Result<()> {
    bound_socket(addr, false).map(drop)
}

/// A TCP socket bound to `addr`, with SO_REUSEADDR (connections a crashed
/// broker left in FIN_WAIT/TIME_WAIT, which inherit it, do not block a
/// restart on the same address) and, for listeners that every shard opens on
/// one address, SO_REUSEPORT.
fn bound_socket(addr: std::net::SocketAddr, reuse_port: bool) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (domain, storage, len) = match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: plain-old-data struct, filled below.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            // SAFETY: sockaddr_storage is large enough for sockaddr_in.
            unsafe { std::ptr::write(&mut st as *mut _ as *mut libc::sockaddr_in, sin) };
            (libc::AF_INET, st, std::mem::size_of::<libc::sockaddr_in>())
        }
        std::net::SocketAddr::V6(a) => {
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            // SAFETY: sockaddr_storage is large enough for sockaddr_in6.
            unsafe { std::ptr::write(&mut st as *mut _ as *mut libc::sockaddr_in6, sin6) };
            (
                libc::AF_INET6,
                st,
                std::mem::size_of::<libc::sockaddr_in6>(),
            )
        }
    };
    // SAFETY: a new socket; owned (and closed) by OwnedFd.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let mut opts = vec![libc::SO_REUSEADDR];
    if reuse_port {
        opts.push(libc::SO_REUSEPORT);
    }
    for opt in opts {
        // SAFETY: valid fd and option pointer.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: storage holds a valid address of `len` bytes.
    let rc = unsafe {
        libc::bind(
            fd,
            &storage as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

/// Where an executor runs.
#[derive(Debug, Clone, Copy)]
pub enum Placement {
    /// Pinned to this CPU.
    Cpu(usize),
    /// Left to the kernel (more shards than CPUs, tests).
    Unbound,
}

/// Handle of a running executor thread.
pub struct ExecutorHandle<T: Send + 'static>(glommio::ExecutorJoinHandle<T>);

impl<T: Send + 'static> ExecutorHandle<T> {
    pub fn join(self) -> io::Result<T> {
        self.0.join().map_err(io::Error::from)
    }
}

/// Starts an executor thread running `f()` to completion.
/// `io_memory_bytes`: the registered I/O buffer pool of the executor's ring.
pub fn spawn_executor<G, F, T>(
    name: &str,
    placement: Placement,
    io_memory_bytes: usize,
    f: G,
) -> io::Result<ExecutorHandle<T>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let p = match placement {
        Placement::Cpu(c) => glommio::Placement::Fixed(c),
        Placement::Unbound => glommio::Placement::Unbound,
    };
    glommio::LocalExecutorBuilder::new(p)
        .name(name)
        .io_memory(io_memory_bytes)
        .spawn(f)
        .map(ExecutorHandle)
        .map_err(io::Error::from)
}

/// Runs a future on the current executor as its own task.
pub fn spawn<T: 'static>(f: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local(f)
}

/// The time a request's futures spend being polled on this executor:
/// Kafka's request time (KIP-124), what a `request_percentage` quota
/// limits. Shared by a request's start and its answer's task; time spent
/// waiting (on another shard, the disk, a Fetch's max wait) is not counted,
/// as Kafka counts its handler and network threads' time, not purgatory's.
#[derive(Debug, Clone, Default)]
pub struct Meter(std::rc::Rc<std::cell::Cell<u64>>);

impl Meter {
    /// Nanoseconds counted so far.
    pub fn nanos(&self) -> u64 {
        self.0.get()
    }
}

/// A future whose polls are counted in a `Meter` (`timed`).
pub struct Timed<F> {
    meter: Meter,
    fut: std::pin::Pin<Box<F>>,
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let t = std::time::Instant::now();
        let r = self.fut.as_mut().poll(cx);
        let spent = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let m = &self.meter.0;
        m.set(m.get().saturating_add(spent));
        r
    }
}

/// `f`, its polls counted in `meter`.
pub fn timed<F: Future>(meter: &Meter, f: F) -> Timed<F> {
    Timed {
        meter: meter.clone(),
        fut: Box::pin(f),
    }
}

/// `spawn`, the task's polls counted in `meter` when there is one (the
/// box `timed` needs is paid only then).
pub fn spawn_metered<T: 'static>(
    meter: Option<&Meter>,
    f: impl Future<Output = T> + 'static,
) -> Task<T> {
    match meter {
        Some(m) => spawn(timed(m, f)),
        None => spawn(f),
    }
}

/// Runs a future as a task that is not cancelled when the returned future is
/// dropped; awaiting gives its output (None only if the executor stopped it).
pub fn spawn_detached<T: 'static>(
    f: impl Future<Output = T> + 'static,
) -> impl Future<Output = Option<T>> {
    glommio::spawn_local(f).detach()
}

/// Runs a future as a task of a low-priority queue of the current
/// executor: when both have work, the default queue (connections, the data
/// path) gets `1000 / shares` times the CPU time this one gets. The task
/// must yield (`yield_if_needed`) for the scheduler to switch.
pub fn spawn_background<T: 'static>(
    name: &str,
    shares: usize,
    f: impl Future<Output = T> + 'static,
) -> Task<T> {
    let tq = glommio::executor().create_task_queue(
        glommio::Shares::Static(shares.max(1)),
        glommio::Latency::NotImportant,
        name,
    );
    glommio::spawn_local_into(f, tq).expect("a task queue made here takes tasks")
}

/// Lets other task queues run if this one used its time slice.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await
}

pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// An executor-local event: tasks wait for the next `notify_all`. Used by
/// fetches that long-poll for data (woken by the write that brings it).
#[derive(Default)]
pub struct Event {
    generation: std::cell::Cell<u64>,
    waiters: std::cell::RefCell<Vec<std::task::Waker>>,
}

impl Event {
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Counts notifications: compare two readings to tell whether one came.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }
}

/// Resolves once any of `events` is notified after this call.
pub fn any_notified(events: Vec<std::rc::Rc<Event>>) -> impl Future<Output = ()> {
    let seen: Vec<u64> = events.iter().map(|e| e.generation()).collect();
    std::future::poll_fn(move |cx| {
        if events.iter().zip(&seen).any(|(e, &g)| e.generation() != g) {
            return std::task::Poll::Ready(());
        }
        for e in &events {
            let mut w = e.waiters.borrow_mut();
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
        }
        std::task::Poll::Pending
    })
}

/// Runs `f` for at most `d`; None when the time ran out first.
pub async fn timeout<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        sleep(d).await;
        None
    })
    .await
}

/// A full mesh of bounded channels between executors: every shard can send
/// to every other, in order per pair. Built before the executors start (the
/// ends are `Send`), connected on the executor that uses them.
pub mod mesh {
    use glommio::channels::shared_channel::{
        self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
    };

    /// One executor's ends, not yet connected.
    pub struct MeshEnd<T: Send + 'static> {
        id: usize,
        senders: Vec<Option<SharedSender<T>>>,
        receivers: Vec<Option<SharedReceiver<T>>>,
    }

    /// `n` ends; end `i` sends to `j` on channel (i, j) and receives on (j, i).
    pub fn full<T: Send + 'static>(n: usize, capacity: usize) -> Vec<MeshEnd<T>> {
        let mut senders: Vec<Vec<Option<SharedSender<T>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut receivers: Vec<Vec<Option<SharedReceiver<T>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for (i, row) in senders.iter_mut().enumerate() {
            for (j, slot) in row.iter_mut().enumerate() {
                if i != j {
                    let (tx, rx) = shared_channel::new_bounded(capacity);
                    *slot = Some(tx);
                    receivers[j][i] = Some(rx);
                }
            }
        }
        senders
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(id, (senders, receivers))| MeshEnd {
                id,
                senders,
                receivers,
            })
            .collect()
    }

    /// A connected end: send to any peer; one receiver per peer.
    pub struct Mesh<T: Send + 'static> {
        id: usize,
        senders: Vec<Option<ConnectedSender<T>>>,
    }

    pub struct Inbox<T: Send + 'static> {
        pub from: usize,
        rx: ConnectedReceiver<T>,
    }

    impl<T: Send + 'static> Inbox<T> {
        /// The next message from this peer; None once it is gone.
        pub async fn recv(&self) -> Option<T> {
            self.rx.recv().await
        }
    }

    impl<T: Send + 'static> MeshEnd<T> {
        /// Connects every channel end; each waits for its peer's end, so
        /// they are all started at once (in order, two executors would wait
        /// for each other).
        pub async fn connect(self) -> (Mesh<T>, Vec<Inbox<T>>) {
            let senders: Vec<_> = self
                .senders
                .into_iter()
                .map(|s| s.map(|s| glommio::spawn_local(s.connect()).detach()))
                .collect();
            let receivers: Vec<_> = self
                .receivers
                .into_iter()
                .enumerate()
                .filter_map(|(from, r)| Some((from, glommio::spawn_local(r?.connect()).detach())))
                .collect();
            let mut connected = Vec::with_capacity(senders.len());
            for s in senders {
                connected.push(match s {
                    Some(t) => Some(t.await.expect("mesh sender connects")),
                    None => None,
                });
            }
            let mut inboxes = Vec::with_capacity(receivers.len());
            for (from, t) in receivers {
                inboxes.push(Inbox {
                    from,
                    rx: t.await.expect("mesh receiver connects"),
                });
            }
            (
                Mesh {
                    id: self.id,
                    senders: connected,
                },
                inboxes,
            )
        }
    }

    impl<T: Send + 'static> Mesh<T> {
        pub fn id(&self) -> usize {
            self.id
        }

        pub fn peers(&self) -> usize {
            self.senders.len()
        }

        /// Sends to peer `to` (waits while its channel is full: backpressure).
        /// Err: the peer is gone.
        pub async fn send(&self, to: usize, msg: T) -> Result<(), ()> {
            match self.senders.get(to) {
                Some(Some(s)) => s.send(msg).await.map_err(|_| ()),
                _ => Err(()),
            }
        }
    }
}

/// A bounded single-executor channel.
pub mod channel {
    pub use glommio::channels::local_channel::{LocalReceiver as Receiver, LocalSender as Sender};

    pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
        glommio::channels::local_channel::new_bounded(capacity)
    }
}

/// Binds a listener (SO_REUSEPORT, so every shard may accept on one address).
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // Not glommio's `TcpListener::bind`: it sets SO_REUSEPORT only, and a
    // broker restarted after a crash must bind while the dead one's client
    // connections linger.
    let fd = bound_socket(addr, true)?.into_raw_fd();
    // SAFETY: fd is a bound socket we own.
    if unsafe { libc::listen(fd, 1024) } != 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing the fd we own.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    // SAFETY: a bound, listening socket, handed over to glommio (which owns
    // and closes it from now on).
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// Takes what the socket `fd` already holds, up to `buf.len()` bytes,
/// without waiting: `Ok(Some(n))` with the first `n` bytes of `buf` now
/// initialized (0: the peer closed), `Ok(None)` when nothing is there yet
/// (the caller then waits through the runtime). `buf` may be uninitialized
/// memory (a buffer's spare capacity): the kernel writes it through a raw
/// pointer, so nothing has to be zeroed first.
pub fn recv_now(
    fd: std::os::fd::RawFd,
    buf: &mut [std::mem::MaybeUninit<u8>],
) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: recv writes at most buf.len() bytes into buf's memory.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Fragments one `sendmsg` takes at most (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 1024;

/// Writes every fragment of `parts`, in order, to the socket `fd` (the one
/// `wr` writes to), vectored: one `sendmsg` carries many fragments, and no
/// fragment is copied into a joined buffer. Where the socket is full, one
/// write through `wr` (glommio's, which waits for the socket to take
/// bytes on io_uring) moves on, then vectored sends resume. `fd` must stay
/// open while this runs (the caller holds the stream).
pub async fn write_all_vectored<W: futures_lite::AsyncWrite + Unpin>(
    wr: &mut W,
    fd: std::os::fd::RawFd,
    parts: &[bytes::Bytes],
) -> io::Result<()> {
    use futures_lite::AsyncWriteExt;
    let (mut i, mut off) = (0usize, 0usize);
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(parts.len().min(MAX_IOVECS));
    while i < parts.len() {
        if off == parts[i].len() {
            (i, off) = (i + 1, 0);
            continue;
        }
        iov.clear();
        for (k, p) in parts[i..].iter().take(MAX_IOVECS).enumerate() {
            let from = if k == 0 { off } else { 0 };
            iov.push(libc::iovec {
                iov_base: p[from..].as_ptr() as *mut libc::c_void,
                iov_len: p.len() - from,
            });
        }
        // SAFETY: an all-zero msghdr is valid; the iovecs point into `parts`,
        // which outlive the call.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len() as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        let mut n = if sent >= 0 {
            sent as usize
        } else {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // Full: let glommio wait for room, writing what fits.
                io::ErrorKind::WouldBlock => match wr.write(&parts[i][off..]).await? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => n,
                },
                _ => return Err(e),
            }
        };
        while n > 0 {
            let left = parts[i].len() - off;
            if n < left {
                off += n;
                n = 0;
            } else {
                n -= left;
                (i, off) = (i + 1, 0);
            }
        }
    }
    Ok(())
}

/// CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes into the set we own; zeroed is a valid set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Wall-clock milliseconds since the Unix epoch: what record timestamps,
/// segment age, retention by time and commit timestamps are measured in.
/// The broker's clocks are here and nowhere else.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Monotonic milliseconds since the process first asked: deadlines that a
/// step of the wall clock must not cut or stretch (group sessions,
/// warning windows).
pub fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// An executor-local async lock (never crosses threads; no OS lock). Used to
/// serialize the flushes of one partition: the group-commit point.
pub struct LocalLock(glommio::sync::Semaphore);

/// Held while the lock is taken; released on drop.
pub struct LocalLockGuard<'a>(#[allow(dead_code)] glommio::sync::Permit<'a>);

impl Default for LocalLock {
    fn default() -> Self {
        LocalLock(glommio::sync::Semaphore::new(1))
    }
}

impl LocalLock {
    pub async fn lock(&self) -> LocalLockGuard<'_> {
        // The semaphore is never closed, so acquiring cannot fail.
        LocalLockGuard(
            self.0
                .acquire_permit(1)
                .await
                .expect("local lock semaphore is never closed"),
        )
    }
}

/// A simulated failing disk for tests: faults installed for the files under
/// a directory, on this executor's thread, fire on the next write or
/// fdatasync there (and keep firing until cleared).
#[cfg(test)]
pub mod faults {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// Writes fail with this errno (libc::ENOSPC: a full disk), writing nothing.
        FailWrite(i32),
        /// The next write reaches the file only for its first pages, then EIO.
        TearWrite { keep_pages: usize },
        /// fdatasync fails with this errno.
        FailSync(i32),
    }

    thread_local! {
        static PLAN: RefCell<Vec<(PathBuf, Fault)>> = const { RefCell::new(Vec::new()) };
    }

    pub fn inject(under: &Path, fault: Fault) {
        PLAN.with(|p| p.borrow_mut().push((under.to_owned(), fault)));
    }

    pub fn clear() {
        PLAN.with(|p| p.borrow_mut().clear());
    }

    fn find(path: &Path, want: impl Fn(&Fault) -> bool) -> Option<Fault> {
        PLAN.with(|p| {
            let mut plan = p.borrow_mut();
            let i = plan
                .iter()
                .position(|(dir, f)| path.starts_with(dir) && want(f))?;
            let f = plan[i].1;
            if matches!(f, Fault::TearWrite { .. }) {
                plan.remove(i); // a tear happens once
            }
            Some(f)
        })
    }

    pub(super) fn on_write(path: &Path) -> Option<Fault> {
        find(path, |f| !matches!(f, Fault::FailSync(_)))
    }

    pub(super) fn on_sync(path: &Path) -> Option<i32> {
        match find(path, |f| matches!(f, Fault::FailSync(_))) {
            Some(Fault::FailSync(e)) => Some(e),
            _ => None,
        }
    }
}

/// Helpers for tests that need an executor and a real disk.
#[cfg(test)]
pub mod testkit {
    use std::path::PathBuf;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A fresh directory under `target/` (a real disk: O_DIRECT does not work
    /// on tmpfs), removed when dropped.
    pub fn data_dir() -> tempfile::TempDir {
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("test-data");
        std::fs::create_dir_all(&base).expect("create target/test-data");
        tempfile::Builder::new()
            .prefix("unit-")
            .tempdir_in(base)
            .expect("temp dir")
    }

    /// Runs `body` on a fresh executor over a fresh data directory (on a
    /// real disk), after the polled-I/O probe, with a 60 s deadline.
    pub fn on_fresh_dir<G, F>(body: G)
    where
        G: FnOnce(PathBuf) -> F + Send + 'static,
        F: std::future::Future<Output = ()> + 'static,
    {
        let dir = data_dir();
        let path = dir.path().to_owned();
        run(Duration::from_secs(60), move || async move {
            super::probe_polled_io(&path).await.unwrap();
            body(path).await
        });
    }

    /// Runs `f` on a fresh executor; panics if it takes longer than `deadline`
    /// (the executor thread is then abandoned, the test fails instead of hanging).
    pub fn run<G, F, T>(deadline: Duration, f: G) -> T
    where
        G: FnOnce() -> F + Send + 'static,
        F: std::future::Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let _handle = super::spawn_executor(
            "test",
            super::Placement::Unbound,
            1 << 20,
            move || async move {
                let out = f().await;
                let _ = tx.send(out);
            },
        )
        .expect("start test executor");
        match rx.recv_timeout(deadline) {
            Ok(v) => v,
            Err(e) => panic!("test executor did not finish within {deadline:?}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Payloads cross the mesh as they are: a `Bytes` sent from one executor
    /// arrives on the other pointing at the same memory (no copy of message
    /// data between shards).
    #[test]
    fn bytes_cross_the_mesh_without_a_copy() {
        let mut ends = mesh::full::<bytes::Bytes>(2, 4).into_iter();
        let (a, b) = (ends.next().unwrap(), ends.next().unwrap());
        let (tx, rx) = mpsc::channel::<(&'static str, usize, usize)>();
        let tx2 = tx.clone();
        let sender = spawn_executor("mesh-a", Placement::Unbound, 1 << 20, move || async move {
            let (m, _inboxes) = a.connect().await;
            let payload = bytes::Bytes::from(vec![7u8; 1 << 20]);
            let _ = tx.send(("sent", payload.as_ptr() as usize, payload.len()));
            m.send(1, payload).await.expect("peer is there");
        })
        .unwrap();
        let receiver = spawn_executor("mesh-b", Placement::Unbound, 1 << 20, move || async move {
            let (_m, inboxes) = b.connect().await;
            let got = inboxes[0].recv().await.expect("a message");
            let _ = tx2.send(("received", got.as_ptr() as usize, got.len()));
        })
        .unwrap();
        let mut seen = std::collections::HashMap::new();
        for _ in 0..2 {
            let (what, ptr, len) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("both executors report");
            seen.insert(what, (ptr, len));
        }
        assert_eq!(seen["sent"], seen["received"], "same buffer, same length");
        sender.join().unwrap();
        receiver.join().unwrap();
    }

    /// A slow reader fills the socket: vectored sends stop part-way through
    /// fragments, glommio's write waits for room, and the reader still gets
    /// every byte in order. Fragments of every size, some empty, more than
    /// one sendmsg takes.
    #[test]
    fn vectored_writes_deliver_every_fragment_in_order_through_a_full_socket() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut parts = Vec::new();
        let mut expected = Vec::new();
        for i in 0..3000usize {
            let len = [0, 1, 16, 700, 4096, 65_536][i % 6] + i % 13;
            let p: Vec<u8> = (0..len).map(|k| (i * 7 + k) as u8).collect();
            expected.extend_from_slice(&p);
            parts.push(bytes::Bytes::from(p));
        }
        let total = expected.len();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut got = Vec::with_capacity(total);
            let mut buf = vec![0u8; 7000];
            while got.len() < total {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "closed early at {}", got.len());
                got.extend_from_slice(&buf[..n]);
                if got.len() < 1 << 20 {
                    std::thread::sleep(Duration::from_micros(200)); // slow at first
                }
            }
            got
        });
        testkit::run(Duration::from_secs(60), move || async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let fd = stream.as_raw_fd();
            let (_rd, mut wr) = futures_lite::io::split(stream);
            write_all_vectored(&mut wr, fd, &parts).await.unwrap();
        });
        let got = reader.join().unwrap();
        assert!(got == expected, "bytes differ ({} of {total})", got.len());
    }
}
