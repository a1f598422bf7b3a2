//! A fault-injecting TCP proxy for integration tests. Put it between an HTTP
//! client (an iotel agent) and a server (a receiver), switch faults while
//! traffic flows, and check that no record is lost or duplicated.
//!
//! Plain threads and `std::net`, loopback only. One accept thread polls a
//! non-blocking listener every few milliseconds, so that `Refuse` and the
//! phases of `Flapping` can close the listener and open it again on the same
//! port. Each accepted connection gets one thread per direction. The threads
//! are named `fpx-<port>-a` (accept), `-c` (client→upstream) and `-r`
//! (upstream→client), so a test can find them in `/proc/self/task`.
//!
//! # Which connections a fault applies to
//!
//! A connection is handled the way the fault said when it was accepted.
//! [`FaultProxy::set`] then cuts every open connection that the new fault
//! would handle differently, so a fault applies from the client's next
//! request even on a kept-alive connection: only `Pass`, and the up phase of
//! `Flapping`, leave `Pass` connections running. A down phase of `Flapping`
//! cuts every connection, as `Refuse` does.
//!
//! # What a peer sees when the proxy cuts a connection
//!
//! std cannot set `SO_LINGER` (`TcpStream::set_linger` is unstable) and the
//! test crate has no `socket2`, so the proxy resets a connection the way the
//! kernel does by itself: it stops reading from the client (`shutdown(Read)`,
//! which sends nothing) and closes the socket. Linux answers a close with RST
//! while bytes the client sent are still unread, and answers any later
//! segment from the client with RST too. So the client gets `ECONNRESET` (or
//! `EPIPE` on a write) when it had sent, or goes on to send, bytes the proxy
//! did not forward, and a plain EOF otherwise. The upstream side is shut down
//! both ways: the upstream sees EOF right after the bytes that were forwarded
//! (a reset instead if it had sent bytes the proxy had not read yet).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the accept thread looks for new connections and for the next
/// phase of `Flapping`.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// How long a blocked write waits before it checks whether the connection
/// was cut.
const WRITE_POLL: Duration = Duration::from_millis(50);
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `Drop` waits for the proxy's threads; longer than
/// `UPSTREAM_CONNECT_TIMEOUT`, the one wait a cut cannot interrupt.
const DROP_GRACE: Duration = Duration::from_secs(5);
const BUFFER_BYTES: usize = 16 * 1024;

/// What the proxy does to connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways.
    Pass,
    /// Close the listening socket, so `connect()` fails with `ECONNREFUSED`.
    /// Setting any other fault opens it again on the same port.
    Refuse,
    /// Forward the first `after_bytes` the client sends on a connection; the
    /// moment it has sent more, reset the connection (see the module docs):
    /// the upstream has exactly `after_bytes`, then EOF. A client that never
    /// sends more is passed through.
    ResetMidRequest { after_bytes: usize },
    /// Accept, read and discard everything; never answer, never close. The
    /// upstream is not even connected to.
    Blackhole,
    /// Forward, but the response (upstream→client) trickles at this rate.
    SlowDrip { bytes_per_sec: NonZeroU64 },
    /// Forward the request; when the upstream's response starts, close the
    /// client's connection (it gets EOF and no response byte), then read and
    /// discard the rest of the response until the upstream closes.
    DropResponse,
    /// `Pass` for `up`, then `Refuse` for `down`, over and over from the
    /// moment it is set.
    Flapping { up: Duration, down: Duration },
}

/// Counters since the proxy started. Connections refused while the listener
/// is closed are not counted: the kernel refuses them and the proxy never
/// sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub connections_accepted: u64,
    /// Connections the proxy cut on purpose: `ResetMidRequest`, or open
    /// connections cut by [`FaultProxy::set`] or a down phase of `Flapping`.
    pub connections_cut: u64,
    /// Connections closed under `DropResponse` when their response started.
    pub responses_dropped: u64,
    /// Connections closed because the upstream could not be reached.
    pub upstream_connect_failures: u64,
    /// Bytes written to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes written to the client.
    pub bytes_to_client: u64,
}

/// A TCP proxy on 127.0.0.1 that forwards to an upstream and injects faults.
/// Dropping it stops every thread it started and closes every socket.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port, forwarding to `upstream`, with
    /// `Fault::Pass`. Panics when it cannot listen, which fails the test.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| panic!("the fault proxy cannot listen on 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the fault proxy has no local address: {e}"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                addr,
                thread_name: format!("fpx-{}", addr.port()),
                upstream,
                fault: Fault::Pass,
                fault_since: Instant::now(),
                listener: Some(listener),
                open: Vec::new(),
                stopping: false,
            }),
            wake: Condvar::new(),
            counters: Counters::default(),
        });
        let accept_thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("fpx-{}-a", addr.port()))
                .spawn(move || accept_loop(&shared))
                .unwrap_or_else(|e| panic!("the fault proxy cannot start a thread: {e}"))
        };
        FaultProxy {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// Where clients connect. It stays the same across `Refuse`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `fault` to new connections and cuts the open connections it
    /// would handle differently (see the module docs). When it returns, the
    /// listener is closed if the fault refuses and open otherwise (unless
    /// another socket took the port meanwhile: then the accept thread retries).
    pub fn set(&self, fault: Fault) {
        let mut state = self.shared.lock();
        state.fault = fault;
        state.fault_since = Instant::now();
        let now = state.handling_now();
        state.cut_where(&self.shared.counters, |handling| Some(handling) != now);
        state.follow_fault(&self.shared.counters);
        drop(state);
        self.shared.wake.notify_all();
    }

    /// Sends new connections to `upstream`; open ones keep theirs.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.shared.lock().upstream = upstream;
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let load = |n: &AtomicU64| n.load(Ordering::SeqCst);
        ProxyStats {
            connections_accepted: load(&c.connections_accepted),
            connections_cut: load(&c.connections_cut),
            responses_dropped: load(&c.responses_dropped),
            upstream_connect_failures: load(&c.upstream_connect_failures),
            bytes_to_upstream: load(&c.bytes_to_upstream),
            bytes_to_client: load(&c.bytes_to_client),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let open = {
            let mut state = self.shared.lock();
            state.stopping = true;
            state.listener = None;
            for open in &state.open {
                if let Some(connection) = open.connection.upgrade() {
                    connection.cut();
                }
            }
            std::mem::take(&mut state.open)
        };
        self.shared.wake.notify_all();
        // Every blocking call of the threads returns once their sockets are
        // shut down, but a drop must never hang a test run: wait with a
        // deadline and leave behind what did not stop.
        let deadline = Instant::now() + DROP_GRACE;
        let threads = self
            .accept_thread
            .take()
            .into_iter()
            .chain(open.into_iter().map(|open| open.thread));
        let mut left_running = 0;
        for thread in threads {
            while !thread.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                left_running += 1;
            }
        }
        if left_running > 0 {
            eprintln!(
                "fault proxy {}: {left_running} threads did not stop within {DROP_GRACE:?}",
                self.addr
            );
        }
    }
}

/// How one connection is handled: a fault at one moment, without the
/// listener's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handling {
    Pass,
    ResetAfter(usize),
    Blackhole,
    Drip(NonZeroU64),
    DropResponse,
}

impl Fault {
    /// How a connection accepted `elapsed` after the fault was set is
    /// handled; `None` while the fault refuses connections.
    fn handling_at(self, elapsed: Duration) -> Option<Handling> {
        match self {
            Fault::Pass => Some(Handling::Pass),
            Fault::Refuse => None,
            Fault::ResetMidRequest { after_bytes } => Some(Handling::ResetAfter(after_bytes)),
            Fault::Blackhole => Some(Handling::Blackhole),
            Fault::SlowDrip { bytes_per_sec } => Some(Handling::Drip(bytes_per_sec)),
            Fault::DropResponse => Some(Handling::DropResponse),
            Fault::Flapping { up, down } => {
                let cycle = (up + down).as_nanos();
                let up_now = cycle == 0 || elapsed.as_nanos() % cycle < up.as_nanos();
                up_now.then_some(Handling::Pass)
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the accept thread when the fault changes or the proxy stops.
    wake: Condvar,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections_accepted: AtomicU64,
    connections_cut: AtomicU64,
    responses_dropped: AtomicU64,
    upstream_connect_failures: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
}

fn count(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::SeqCst);
}

#[derive(Debug)]
struct State {
    /// The proxy's address, kept to reopen the listener on the same port.
    addr: SocketAddr,
    /// Prefix of the names of the proxy's threads (at most 15 bytes in all,
    /// Linux's limit).
    thread_name: String,
    upstream: SocketAddr,
    fault: Fault,
    fault_since: Instant,
    /// `None` while the fault refuses connections.
    listener: Option<TcpListener>,
    open: Vec<OpenConnection>,
    stopping: bool,
}

#[derive(Debug)]
struct OpenConnection {
    /// Weak, so that the sockets close as soon as the connection's threads
    /// end: a close with unread bytes is what resets the client.
    connection: Weak<Connection>,
    handling: Handling,
    thread: JoinHandle<()>,
}

impl State {
    fn handling_now(&self) -> Option<Handling> {
        self.fault.handling_at(self.fault_since.elapsed())
    }

    /// Closes or reopens the listener as the fault says now; closing it cuts
    /// every open connection.
    fn follow_fault(&mut self, counters: &Counters) {
        match self.handling_now() {
            None => {
                if self.listener.take().is_some() {
                    self.cut_where(counters, |_| true);
                }
            }
            Some(_) => {
                if self.listener.is_none() {
                    self.listener = listen(self.addr).ok();
                }
            }
        }
    }

    fn cut_where(&self, counters: &Counters, cut_it: impl Fn(Handling) -> bool) {
        for open in &self.open {
            if cut_it(open.handling)
                && let Some(connection) = open.connection.upgrade()
                && connection.cut()
            {
                count(&counters.connections_cut, 1);
            }
        }
    }
}

/// A non-blocking listener on `addr`. std sets `SO_REUSEADDR` on Unix, so
/// the port can be bound again while old connections are in TIME_WAIT.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn accept_loop(shared: &Arc<Shared>) {
    let mut state = shared.lock();
    while !state.stopping {
        state.follow_fault(&shared.counters);
        let mut accepted = Vec::new();
        if let (Some(listener), Some(handling)) = (&state.listener, state.handling_now()) {
            // Any error (the backlog is empty, a client gave up, no file
            // descriptors left) waits for the next poll.
            while let Ok((client, _)) = listener.accept() {
                accepted.push((client, handling));
            }
        }
        for (client, handling) in accepted {
            start_connection(shared, &mut state, client, handling);
        }
        state.open.retain(|open| !open.thread.is_finished());
        state = match shared.wake.wait_timeout(state, ACCEPT_POLL) {
            Ok((state, _)) => state,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}

fn start_connection(
    shared: &Arc<Shared>,
    state: &mut State,
    client: TcpStream,
    handling: Handling,
) {
    count(&shared.counters.connections_accepted, 1);
    // Linux does not pass O_NONBLOCK on to accepted sockets; be sure anyway.
    if client.set_nonblocking(false).is_err() || client.set_write_timeout(Some(WRITE_POLL)).is_err()
    {
        return;
    }
    let connection = Arc::new(Connection {
        client,
        upstream: OnceLock::new(),
        is_cut: Mutex::new(false),
        cut_signal: Condvar::new(),
    });
    let weak = Arc::downgrade(&connection);
    let upstream = state.upstream;
    let name = state.thread_name.clone();
    let thread = {
        let shared = Arc::clone(shared);
        thread::Builder::new()
            .name(format!("{name}-c"))
            .spawn(move || serve(&shared.counters, &connection, handling, upstream, &name))
    };
    // Without a thread the connection is dropped, which closes it.
    if let Ok(thread) = thread {
        state.open.push(OpenConnection {
            connection: weak,
            handling,
            thread,
        });
    }
}

/// One proxied connection, shared by its two threads.
#[derive(Debug)]
struct Connection {
    client: TcpStream,
    /// Set once connected; never under `Blackhole`.
    upstream: OnceLock<TcpStream>,
    is_cut: Mutex<bool>,
    cut_signal: Condvar,
}

impl Connection {
    fn lock_cut(&self) -> MutexGuard<'_, bool> {
        self.is_cut.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_cut(&self) -> bool {
        *self.lock_cut()
    }

    /// Wakes both threads and makes the coming close a reset where the
    /// client has unread bytes (see the module docs). True the first time.
    fn cut(&self) -> bool {
        let mut is_cut = self.lock_cut();
        if *is_cut {
            return false;
        }
        *is_cut = true;
        let _ = self.client.shutdown(Shutdown::Read);
        if let Some(upstream) = self.upstream.get() {
            let _ = upstream.shutdown(Shutdown::Both);
        }
        self.cut_signal.notify_all();
        true
    }

    /// Keeps `upstream` unless the connection was cut while connecting; the
    /// lock makes sure a cut sees the upstream or the upstream sees the cut.
    fn attach_upstream(&self, upstream: TcpStream) -> bool {
        let is_cut = self.lock_cut();
        !*is_cut && self.upstream.set(upstream).is_ok()
    }

    /// Waits until `until` (forever if `None`) or until the connection is
    /// cut; true if it was cut.
    fn wait_cut(&self, until: Option<Instant>) -> bool {
        let mut is_cut = self.lock_cut();
        loop {
            if *is_cut {
                return true;
            }
            is_cut = match until {
                None => self
                    .cut_signal
                    .wait(is_cut)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        return false;
                    }
                    match self.cut_signal.wait_timeout(is_cut, until - now) {
                        Ok((is_cut, _)) => is_cut,
                        Err(poisoned) => poisoned.into_inner().0,
                    }
                }
            };
        }
    }

    /// Passes an EOF on (a half-close), unless the connection was cut: a FIN
    /// then would reach the client before the reset.
    fn end_writes(&self, to: &TcpStream) {
        let is_cut = self.lock_cut();
        if !*is_cut {
            let _ = to.shutdown(Shutdown::Write);
        }
    }
}

fn serve(
    counters: &Counters,
    connection: &Arc<Connection>,
    handling: Handling,
    upstream: SocketAddr,
    name: &str,
) {
    if handling == Handling::Blackhole {
        blackhole(connection);
        return;
    }
    let Ok(stream) = TcpStream::connect_timeout(&upstream, UPSTREAM_CONNECT_TIMEOUT) else {
        // Returning drops the client's socket, which closes it.
        count(&counters.upstream_connect_failures, 1);
        return;
    };
    if stream.set_write_timeout(Some(WRITE_POLL)).is_err() || !connection.attach_upstream(stream) {
        return;
    }
    // The scope joins the response thread before the connection is dropped.
    thread::scope(|scope| {
        let responses = thread::Builder::new()
            .name(format!("{name}-r"))
            .spawn_scoped(scope, || upstream_to_client(counters, connection, handling));
        if responses.is_err() {
            connection.cut();
            return;
        }
        client_to_upstream(counters, connection, handling);
    });
}

fn blackhole(connection: &Connection) {
    let mut buf = [0u8; 4096];
    loop {
        match (&connection.client).read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // The client is gone.
            Err(_) => return,
        }
    }
    // The client has stopped sending, or the proxy cut it: never close first.
    connection.wait_cut(None);
}

fn client_to_upstream(counters: &Counters, connection: &Connection, handling: Handling) {
    let Some(upstream) = connection.upstream.get() else {
        return;
    };
    let limit = match handling {
        Handling::ResetAfter(after_bytes) => Some(after_bytes),
        _ => None,
    };
    let mut buf = vec![0u8; BUFFER_BYTES];
    let mut forwarded = 0usize;
    loop {
        let room = limit.map_or(buf.len(), |limit| (limit - forwarded).min(buf.len()));
        if room == 0 {
            // `after_bytes` are upstream. Wait for the client's next byte and
            // leave it unread, so that closing after the cut resets.
            match connection.client.peek(&mut [0u8; 1]) {
                Ok(0) => break,
                Ok(_) => {
                    if connection.cut() {
                        count(&counters.connections_cut, 1);
                    }
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    connection.cut();
                    return;
                }
            }
        }
        match (&connection.client).read(&mut buf[..room]) {
            Ok(0) => break,
            Ok(n) => {
                if forward(connection, upstream, &buf[..n], &counters.bytes_to_upstream).is_err() {
                    connection.cut();
                    return;
                }
                forwarded += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                connection.cut();
                return;
            }
        }
    }
    connection.end_writes(upstream);
}

fn upstream_to_client(counters: &Counters, connection: &Connection, handling: Handling) {
    let Some(mut upstream) = connection.upstream.get() else {
        return;
    };
    let mut drip = match handling {
        Handling::Drip(bytes_per_sec) => Some(Drip {
            bytes_per_sec,
            next: Instant::now(),
        }),
        _ => None,
    };
    let mut dropping = false;
    let mut buf = vec![0u8; BUFFER_BYTES];
    loop {
        let n = match upstream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                connection.cut();
                return;
            }
        };
        if handling == Handling::DropResponse {
            if !dropping {
                dropping = true;
                count(&counters.responses_dropped, 1);
                // The client gets EOF now; its reading thread then passes
                // the EOF upstream, and the upstream closes when done.
                let _ = connection.client.shutdown(Shutdown::Both);
            }
            continue;
        }
        let bytes = &buf[..n];
        let sent = match &mut drip {
            Some(drip) => drip.send(connection, bytes, &counters.bytes_to_client),
            None => forward(
                connection,
                &connection.client,
                bytes,
                &counters.bytes_to_client,
            ),
        };
        if sent.is_err() {
            connection.cut();
            return;
        }
    }
    connection.end_writes(&connection.client);
}

/// Writes all of `bytes`, counting each byte written; gives up when the
/// connection is cut.
fn forward(
    connection: &Connection,
    mut to: &TcpStream,
    mut bytes: &[u8],
    written: &AtomicU64,
) -> io::Result<()> {
    while !bytes.is_empty() {
        if connection.is_cut() {
            return Err(ErrorKind::ConnectionAborted.into());
        }
        match to.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                count(written, n);
                bytes = &bytes[n..];
            }
            // A write timeout: look at the cut flag again.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Paces writes to the client at `bytes_per_sec`, in pieces of about 50 ms.
/// Idle time earns no credit: each response starts at the rate.
#[derive(Debug)]
struct Drip {
    bytes_per_sec: NonZeroU64,
    /// When the next piece may go.
    next: Instant,
}

impl Drip {
    fn send(
        &mut self,
        connection: &Connection,
        bytes: &[u8],
        written: &AtomicU64,
    ) -> io::Result<()> {
        let rate = self.bytes_per_sec.get();
        let piece = (rate / 20).clamp(1, BUFFER_BYTES as u64) as usize;
        self.next = self.next.max(Instant::now());
        for piece in bytes.chunks(piece) {
            if connection.wait_cut(Some(self.next)) {
                return Err(ErrorKind::ConnectionAborted.into());
            }
            forward(connection, &connection.client, piece, written)?;
            self.next += Duration::from_secs_f64(piece.len() as f64 / rate as f64);
        }
        Ok(())
    }
}
