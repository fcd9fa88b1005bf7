//! The control socket protocol between `op25b ctl` and a running appliance, and the
//! read-only Prometheus endpoint.
//!
//! Control socket: a Unix stream socket, mode 0600 (only its owner, normally root, may
//! connect). A client sends one JSON array of words (`["explain","10.0.0.2","192.0.2.1","25"]`)
//! and a newline; the appliance answers with one JSON object `{"ok": bool, "text": "..."}`
//! and closes. Metrics: plain HTTP/1.0 `GET` (or `HEAD`) `/metrics`, text exposition
//! format, each scrape on its own thread (at most four at once); any other method or path
//! is refused, and nothing reachable over TCP changes the policy.
//!
//! Commands are parsed by [`Command::parse`] at both ends: by `op25b ctl`, so a bad word
//! is named before it connects, and by the appliance, which trusts no client.
//!
//! Invariants: every request and reply is bounded in size and in total time (a silent,
//! trickling or non-reading client holds a server for at most 5 s each way, and never the
//! control thread); the listener threads only forward requests to the control thread and
//! carry its answers back; the socket is 0600 from the moment it exists, and nothing but a
//! stale socket, or at shutdown the very socket file bound at start, is ever removed at
//! its path.

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use op25b_dataplane::policy::AnyPrefix;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest request accepted, in bytes (control socket).
const MAX_REQUEST: usize = 64 * 1024;
/// Largest HTTP request head read (metrics): request line and headers, bearer tokens
/// included.
const MAX_HTTP_HEAD: usize = 32 * 1024;

/// How long a client may take, in all, to send its request or to take its answer, and how
/// long the control thread may take to answer.
#[derive(Clone, Copy, Debug)]
struct Limits {
    client: Duration,
    answer: Duration,
    /// How long a scrape waits for the page when Prometheus names no shorter timeout
    /// (its default scrape timeout is 10 s).
    scrape: Duration,
}

/// The limits of a running appliance.
const LIMITS: Limits = Limits {
    client: Duration::from_secs(5),
    answer: Duration::from_secs(60),
    scrape: Duration::from_secs(9),
};

/// A request for the control thread, with where to send the answer.
#[derive(Debug)]
pub enum Request {
    /// A control command (`ok`, text).
    Command(Vec<String>, Sender<(bool, String)>),
    /// The metrics page.
    Metrics(Sender<String>),
}

/// The socket file [`bind`] made: its path and which file it is (device and inode, and
/// its change time: a file system may give a freed inode number to the next file made,
/// such as a second appliance's socket), so the stopping appliance removes its own
/// socket and never one that has taken its path since (a second appliance started after
/// someone deleted the first one's socket). A socket whose owner or mode someone changed
/// is left behind too: a stale socket, which the next start replaces, is harmless.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// (device, inode, change time in ns) once bound and set 0600; `None` if it could not
    /// be read then.
    id: Option<(u64, u64, i128)>,
}

impl SocketFile {
    /// The identity of whatever is at `path` now, without following a symlink.
    fn id_at(path: &Path) -> Option<(u64, u64, i128)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).ok().map(|m| {
            (
                m.dev(),
                m.ino(),
                i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            )
        })
    }

    /// Removes the socket file if the path still names the one bound; returns whether it
    /// did. Anything else there now (another appliance's socket, a file) is left alone.
    pub fn remove(&self) -> bool {
        let ours = self.id.is_some() && SocketFile::id_at(&self.path) == self.id;
        ours && std::fs::remove_file(&self.path).is_ok()
    }
}

/// Binds the control socket at `path`, mode 0600 from the moment it exists (created
/// under umask 077, so no one else can connect in the instant before a chmod). A stale
/// socket left by a stopped appliance is replaced; anything else at the path (a regular
/// file, a directory: a typo in `[control] socket`) is refused, never removed. Returns
/// the listener and the socket file, to be removed with [`SocketFile::remove`].
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), String> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(format!(
                "{}: exists and is not a socket; refusing to replace it (check [control] socket)",
                path.display()
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{}: another op25b is already listening there",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("{}: cannot remove the stale socket: {e}", path.display()))?;
    }
    // The socket's own folder is made if missing (/run/op25b after a reboot), but no more
    // than that: a typo in the path must not make a tree of folders somewhere.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .map_err(|e| {
                    format!(
                        "{}: cannot make the control socket's folder: {e} (check [control] socket)",
                        dir.display()
                    )
                })?;
        }
    }
    let l = op25b_dataplane::port::sys::with_umask(0o077, || UnixListener::bind(path))
        .map_err(|e| format!("{}: cannot listen: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // After the chmod, which changes the change time.
    let file = SocketFile {
        path: path.to_path_buf(),
        id: SocketFile::id_at(path),
    };
    Ok((l, file))
}

/// A stream whose reads and writes can time out (both servers' client streams).
trait Timed: Read + Write {
    fn read_timeout(&self, d: Duration) -> std::io::Result<()>;
    fn write_timeout(&self, d: Duration) -> std::io::Result<()>;
}

impl Timed for &UnixStream {
    fn read_timeout(&self, d: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(d))
    }
    fn write_timeout(&self, d: Duration) -> std::io::Result<()> {
        self.set_write_timeout(Some(d))
    }
}

impl Timed for &TcpStream {
    fn read_timeout(&self, d: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(d))
    }
    fn write_timeout(&self, d: Duration) -> std::io::Result<()> {
        self.set_write_timeout(Some(d))
    }
}

/// Time left before `deadline`, or a timeout error once it has passed.
fn left(deadline: Instant) -> std::io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "client too slow"))
}

/// Reads from `s` until `end` finds the end of what is wanted in the bytes so far
/// (returning how many to keep), at most `max` bytes and all of it before `deadline`: a
/// client sending a byte at a time cannot hold the server past it. End of stream ends it
/// too, with what came.
fn read_until_by(
    mut s: impl Timed,
    max: usize,
    deadline: Instant,
    end: impl Fn(&[u8]) -> Option<usize>,
) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        s.read_timeout(left(deadline)?)?;
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(got);
        }
        got.extend_from_slice(&chunk[..n]);
        if let Some(keep) = end(&got) {
            got.truncate(keep);
            return Ok(got);
        }
        if got.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("request longer than {max} bytes"),
            ));
        }
    }
}

/// Reads one line (without its newline) of at most `max` bytes before `deadline`.
fn read_line_by(s: impl Timed, max: usize, deadline: Instant) -> std::io::Result<String> {
    let line = read_until_by(s, max, deadline, |b| b.iter().position(|&c| c == b'\n'))?;
    String::from_utf8(line)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
}

/// An HTTP request's head (request line and header lines, without the blank line that
/// ends it), all of it read so the reply is not cut off by a reset for unread bytes.
fn read_http_head_by(s: impl Timed, max: usize, deadline: Instant) -> std::io::Result<String> {
    let head = read_until_by(s, max, deadline, |b| {
        let crlf = b.windows(4).position(|w| w == b"\r\n\r\n");
        let lf = b.windows(2).position(|w| w == b"\n\n");
        // A request line with no HTTP version (`GET /metrics` and a newline, as a quick
        // script sends it) has no headers to wait for.
        let bare = b
            .iter()
            .position(|&c| c == b'\n')
            .filter(|&n| String::from_utf8_lossy(&b[..n]).split_whitespace().count() < 3);
        crlf.into_iter().chain(lf).chain(bare).min()
    })?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Writes all of `bytes` before `deadline`: a client that does not read cannot hold the
/// server past it.
fn write_all_by(mut s: impl Timed, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        s.write_timeout(left(deadline)?)?;
        match s.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn answer_one(stream: &UnixStream, to_control: &Sender<Request>, limits: Limits) {
    let reply = match read_line_by(stream, MAX_REQUEST, Instant::now() + limits.client) {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            (false, format!("malformed request: {e}"))
        }
        // Too slow or gone: nobody to answer.
        Err(_) => return,
        Ok(line) => match serde_json::from_str::<Vec<String>>(line.trim()) {
            Err(e) => (false, format!("malformed request: {e}")),
            Ok(words) => {
                let (tx, rx) = bounded(1);
                if to_control.send(Request::Command(words, tx)).is_err() {
                    (false, "the appliance is shutting down".into())
                } else {
                    match rx.recv_timeout(limits.answer) {
                        Ok(reply) => reply,
                        // The request was dropped unanswered: the control thread ended
                        // (the appliance stops) without taking it.
                        Err(RecvTimeoutError::Disconnected) => (
                            false,
                            "the appliance stopped without carrying out the command".into(),
                        ),
                        Err(RecvTimeoutError::Timeout) => (
                            false,
                            format!(
                                "no answer from the control thread within {} s; the command is still queued and may yet be carried out: check with `op25b ctl status`",
                                limits.answer.as_secs()
                            ),
                        ),
                    }
                }
            }
        },
    };
    let body = serde_json::json!({"ok": reply.0, "text": reply.1});
    let _ = write_all_by(
        stream,
        format!("{body}\n").as_bytes(),
        Instant::now() + limits.client,
    );
}

/// After a failed accept (out of file descriptors, say): wait before the next, instead of
/// spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the control socket until the control thread goes away.
pub fn serve_socket(listener: UnixListener, to_control: Sender<Request>) {
    serve_socket_with(listener, to_control, LIMITS);
}

/// Most control clients served at once; one more is answered at once that it must wait.
const MAX_CLIENTS: usize = 16;

fn serve_socket_with(listener: UnixListener, to_control: Sender<Request>, limits: Limits) {
    serve_each(
        listener.incoming(),
        MAX_CLIENTS,
        "op25b-ctl-client",
        refuse_client,
        move |stream| answer_one(&stream, &to_control, limits),
    );
}

/// Tells a control client that every slot is taken.
fn refuse_client(stream: &UnixStream) {
    // The request is read first (briefly): a client whose request is still unsent when
    // the answer comes would see its send fail instead of the answer.
    let _ = read_line_by(stream, MAX_REQUEST, Instant::now() + REFUSE_WAIT);
    let body = serde_json::json!({
        "ok": false,
        "text": format!("{MAX_CLIENTS} control clients are being served already; try again"),
    });
    let _ = write_all_by(
        stream,
        format!("{body}\n").as_bytes(),
        Instant::now() + REFUSE_WAIT,
    );
}

/// Serves each accepted connection with `serve` on a thread of its own, so an idle or
/// slow client delays no other, at most `max` at once; one more is answered by `refuse`
/// on a refuser thread (which may read its request first), so the accept loop never
/// waits on it; with that one also behind, the connection is closed at once.
fn serve_each<S: Send + 'static>(
    incoming: impl Iterator<Item = std::io::Result<S>>,
    max: usize,
    name: &str,
    refuse: fn(&S),
    serve: impl Fn(S) + Clone + Send + 'static,
) {
    let (to_refuser, refused) = bounded::<S>(max);
    let _ = std::thread::Builder::new()
        .name(format!("{name}-refuse"))
        .spawn(move || refused.iter().for_each(|s| refuse(&s)));
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for stream in incoming {
        let stream = match stream {
            Ok(s) => s,
            Err(_) => {
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if busy.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= max {
            busy.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            if let Err(crossbeam_channel::TrySendError::Disconnected(s)) =
                to_refuser.try_send(stream)
            {
                refuse(&s);
            }
            continue;
        }
        let (slot, serve) = (Slot(busy.clone()), serve.clone());
        // A spawn that fails drops the closure, and with it the slot.
        let _ = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _slot = slot;
                serve(stream);
            });
    }
}

/// Serves `GET /metrics` until the control thread goes away.
pub fn serve_metrics(listener: TcpListener, to_control: Sender<Request>) {
    serve_metrics_with(listener, to_control, LIMITS);
}

/// Most scrapes served at once; one more is refused at once with a 503.
const MAX_SCRAPERS: usize = 4;

/// Most bytes [`close_gently`] reads and throws away after an answer.
const MAX_DRAIN: usize = 16 << 20;

/// How long a refused client is given to send its request and to close after the 503.
const REFUSE_WAIT: Duration = Duration::from_millis(200);

fn serve_metrics_with(listener: TcpListener, to_control: Sender<Request>, limits: Limits) {
    serve_each(
        listener.incoming(),
        MAX_SCRAPERS,
        "op25b-scrape",
        refuse_busy,
        move |stream| answer_scrape(&stream, &to_control, limits),
    );
}

/// Answers a client that found every scrape slot taken: its request is read first (at
/// most [`REFUSE_WAIT`]), so the 503 is not destroyed by a reset for unread bytes.
fn refuse_busy(stream: &TcpStream) {
    let _ = read_http_head_by(stream, MAX_HTTP_HEAD, Instant::now() + REFUSE_WAIT);
    let reply = format!(
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{MAX_SCRAPERS} scrapes are in progress\n"
    );
    if write_all_by(stream, reply.as_bytes(), Instant::now() + REFUSE_WAIT).is_ok() {
        close_gently(stream, Instant::now() + REFUSE_WAIT);
    }
}

/// Ends a reply that was written whole: no more sending, then whatever the client still
/// sends (the rest of an over-long head, a body) is read and thrown away until it closes,
/// at most [`MAX_DRAIN`] bytes and until `deadline`. Closing a TCP socket with bytes
/// unread makes the kernel send a reset, and a reset can destroy the reply in the
/// client's buffer before the client reads it.
fn close_gently(mut stream: &TcpStream, deadline: Instant) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let (mut chunk, mut drained) = ([0u8; 4096], 0);
    while drained < MAX_DRAIN {
        let Ok(wait) = left(deadline) else { return };
        if stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// One taken scrape slot, given back when dropped (on every path out of a scrape thread).
struct Slot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Answers one metrics client: the whole request head is read first (a reply written
/// with request bytes unread can be cut off by a reset), `GET` or `HEAD /metrics` (any
/// query string ignored) gets the page, within the scrape's own timeout if Prometheus
/// sent one (`X-Prometheus-Scrape-Timeout-Seconds`), else [`Limits::scrape`].
fn answer_scrape(stream: &TcpStream, to_control: &Sender<Request>, limits: Limits) {
    const PAGE_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
    const TEXT_TYPE: &str = "text/plain; charset=utf-8";
    let deadline = Instant::now() + limits.client;
    let (status, kind, body, head_only, allow) = match read_http_head_by(
        stream,
        MAX_HTTP_HEAD,
        deadline,
    ) {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => (
            "431 Request Header Fields Too Large",
            TEXT_TYPE,
            format!("request head over {MAX_HTTP_HEAD} bytes\n"),
            false,
            false,
        ),
        Err(_) => return,
        Ok(head) => {
            let mut lines = head.lines();
            let mut words = lines.next().unwrap_or("").split_whitespace();
            let (method, target) = (words.next(), words.next().unwrap_or(""));
            let path = target.split('?').next().unwrap_or("");
            match (method, path) {
                (Some(m @ ("GET" | "HEAD")), "/metrics") => {
                    let wait =
                        scrape_timeout(lines).map_or(limits.scrape, |t| t.min(limits.scrape));
                    let (tx, rx) = bounded(1);
                    let asked = Instant::now();
                    // A full queue counts against the same wait as the answer.
                    let answer = match to_control.send_timeout(Request::Metrics(tx), wait) {
                        Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return,
                        Err(crossbeam_channel::SendTimeoutError::Timeout(_)) => {
                            Err(crossbeam_channel::RecvTimeoutError::Timeout)
                        }
                        Ok(()) => rx.recv_timeout(wait.saturating_sub(asked.elapsed())),
                    };
                    match answer {
                            Ok(page) => ("200 OK", PAGE_TYPE, page, m == "HEAD", false),
                            // A failed scrape, not an empty successful one: alerts must fire.
                            Err(_) => (
                                "503 Service Unavailable",
                                TEXT_TYPE,
                                format!(
                                    "the control thread did not answer within {:.1} s (it may be building a large policy)\n",
                                    wait.as_secs_f64()
                                ),
                                m == "HEAD",
                                false,
                            ),
                        }
                }
                (Some("GET" | "HEAD"), _) => (
                    "404 Not Found",
                    TEXT_TYPE,
                    "only /metrics is served\n".to_string(),
                    method == Some("HEAD"),
                    false,
                ),
                _ => (
                    "405 Method Not Allowed",
                    TEXT_TYPE,
                    "read-only: GET /metrics\n".to_string(),
                    false,
                    true,
                ),
            }
        }
    };
    let reply = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{}",
        body.len(),
        if allow { "Allow: GET, HEAD\r\n" } else { "" },
        if head_only { "" } else { body.as_str() }
    );
    if write_all_by(stream, reply.as_bytes(), Instant::now() + limits.client).is_ok() {
        close_gently(
            stream,
            Instant::now() + limits.client.min(Duration::from_secs(1)),
        );
    }
}

/// The scrape timeout Prometheus announces in the request's headers, less a margin so the
/// answer (a page or a 503) arrives before Prometheus gives up.
fn scrape_timeout<'a>(headers: impl Iterator<Item = &'a str>) -> Option<Duration> {
    headers
        .filter_map(|h| h.split_once(':'))
        .find(|(k, _)| {
            k.trim()
                .eq_ignore_ascii_case("x-prometheus-scrape-timeout-seconds")
        })
        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)
        // Capped before it becomes a Duration: any number a client sends must not panic.
        .map(|t| Duration::from_secs_f64((t.min(3600.0) * 0.9 - 0.1).max(0.2)))
}

/// Sends one command to a running appliance and returns (`ok`, text).
pub fn request(socket: &Path, words: &[String]) -> Result<(bool, String), String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::metadata(socket) {
            Ok(m) if !m.file_type().is_socket() => format!(
                "{}: is a {}, not op25b's control socket (check --socket, or [control] socket)",
                socket.display(),
                if m.is_dir() { "folder" } else { "file" }
            ),
            _ => format!(
                "{}: cannot connect ({e}); is op25b running, and are you root?",
                socket.display()
            ),
        }
    })?;
    let at = |what: &str, e: std::io::Error| {
        let why = if e.kind() == std::io::ErrorKind::WouldBlock {
            "no answer in time".to_string()
        } else {
            e.to_string()
        };
        format!("{}: {what}: {why}", socket.display())
    };
    s.set_read_timeout(Some(LIMITS.answer + LIMITS.client))
        .map_err(|e| at("setting a timeout", e))?;
    let line = serde_json::to_string(words).map_err(|e| e.to_string())?;
    // The appliance closed the connection without taking the command: every client slot
    // and the refuser's queue were taken (a flood of connections), or it is stopping. It
    // answers every command it takes, so an end without an answer means nothing was done.
    let busy = || {
        format!(
            "the appliance at {} is busy or stopping (it closed the connection without an answer); nothing was done; retry",
            socket.display()
        )
    };
    let gone = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
        )
    };
    let sent = s.write_all(format!("{line}\n").as_bytes());
    if let Err(e) = &sent {
        if !gone(e) {
            return Err(at("sending the command", sent.unwrap_err()));
        }
    }
    // Read even when sending failed: an answer it wrote before closing (a refusal) is
    // still there to read, and says more than the broken pipe.
    let mut reply = String::new();
    match BufReader::new(s).read_line(&mut reply) {
        Ok(_) if reply.ends_with('\n') => {}
        _ if sent.is_err() => return Err(busy()),
        Ok(0) => return Err(busy()),
        Ok(_) => {}
        Err(e) if gone(&e) => return Err(busy()),
        Err(e) => return Err(at("reading the answer", e)),
    }
    let v: serde_json::Value = serde_json::from_str(reply.trim())
        .map_err(|e| format!("{}: malformed reply: {e}", socket.display()))?;
    Ok((
        v["ok"].as_bool().unwrap_or(false),
        v["text"].as_str().unwrap_or("").to_string(),
    ))
}

pub use crate::config::parse_duration;

/// The commands `op25b ctl` knows, one line each (the reply to an unknown command).
pub const COMMANDS: &str = "commands: status | stats [--json] [--top N] | reload | explain SRC DST PORT | exempt add PREFIX [--ttl DURATION] | exempt del PREFIX | exempt list";

/// A control command, parsed from its words. `op25b ctl` parses the words before it
/// connects, so a typo is reported whether or not the appliance runs; the appliance parses
/// them again, as it cannot trust the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `status`.
    Status,
    /// `stats [--json] [--top N]`.
    Stats {
        /// Answer in JSON.
        json: bool,
        /// List this many dynamic prefixes with the most blocked segments.
        top: usize,
    },
    /// `reload`.
    Reload,
    /// `explain SRC DST PORT`: the verdict for a TCP segment and what decided it.
    Explain {
        /// Source address.
        src: IpAddr,
        /// Destination address, of the same family.
        dst: IpAddr,
        /// TCP destination port.
        port: u16,
    },
    /// `exempt list`.
    ExemptList,
    /// `exempt add PREFIX [--ttl DURATION]`.
    ExemptAdd {
        /// The prefix to exempt.
        prefix: AnyPrefix,
        /// When the ticket expires by itself (`None`: when it is removed).
        ttl: Option<Duration>,
    },
    /// `exempt del PREFIX`.
    ExemptDel(AnyPrefix),
}

impl Command {
    /// Parses a command's words; the error names the word that is wrong and why.
    pub fn parse(words: &[String]) -> Result<Self, String> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let prefix = |cmd: &str, p: &str| -> Result<AnyPrefix, String> {
            p.parse().map_err(|e| format!("{cmd}: {p:?}: {e}"))
        };
        match w.as_slice() {
            ["status"] => Ok(Self::Status),
            ["reload"] => Ok(Self::Reload),
            ["stats", flags @ ..] => {
                const USAGE: &str = "usage: stats [--json] [--top N]";
                let (mut json, mut top) = (false, 0usize);
                let mut it = flags.iter();
                while let Some(&f) = it.next() {
                    match f {
                        "--json" => json = true,
                        "--top" => match it.next().map(|n| n.parse::<usize>()) {
                            Some(Ok(n)) => top = n,
                            _ => return Err(format!("--top needs a number; {USAGE}")),
                        },
                        other => return Err(format!("unknown option {other:?}; {USAGE}")),
                    }
                }
                Ok(Self::Stats { json, top })
            }
            ["explain", src, dst, port] => {
                // An IPv4-mapped address (a dual-stack server's log writes ::ffff:10.0.0.3)
                // is explained as the IPv4 address it is.
                let addr = |what: &str, a: &str| -> Result<IpAddr, String> {
                    a.parse::<IpAddr>().map(|a| a.to_canonical()).map_err(|_| {
                        format!("explain: {what} {a:?} is not an IPv4 or IPv6 address")
                    })
                };
                let (src, dst) = (addr("source", src)?, addr("destination", dst)?);
                if src.is_ipv4() != dst.is_ipv4() {
                    return Err(format!(
                        "explain: source {src} and destination {dst} must be the same address family"
                    ));
                }
                // Digits only, no sign and no leading zero: `025` may be meant as octal.
                let plain = port.bytes().all(|b| b.is_ascii_digit())
                    && !(port.len() > 1 && port.starts_with('0'));
                let port = port.parse::<u16>().ok().filter(|_| plain).ok_or_else(|| {
                    format!("explain: port {port:?} is not a number from 0 to 65535")
                })?;
                Ok(Self::Explain { src, dst, port })
            }
            ["explain", ..] => Err("usage: explain SRC-ADDRESS DST-ADDRESS PORT".into()),
            ["exempt", "list"] => Ok(Self::ExemptList),
            ["exempt", "add", p, rest @ ..] => {
                let ttl = match rest {
                    [] => None,
                    ["--ttl", d] => {
                        Some(parse_duration(d).map_err(|e| format!("exempt add: --ttl {e}"))?)
                    }
                    _ => return Err("usage: exempt add PREFIX [--ttl DURATION]".into()),
                };
                Ok(Self::ExemptAdd {
                    prefix: prefix("exempt add", p)?,
                    ttl,
                })
            }
            ["exempt", "del", p] => Ok(Self::ExemptDel(prefix("exempt del", p)?)),
            ["exempt", ..] => Err(
                "usage: exempt add PREFIX [--ttl DURATION] | exempt del PREFIX | exempt list"
                    .into(),
            ),
            _ => Err(format!("unknown command {:?}; {COMMANDS}", words.join(" "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("0s").is_err());
        // Anything accepted is a point in time the clock can hold (a larger TTL used to
        // pass here and then abort the appliance when added to the time of day).
        assert_eq!(
            parse_duration("3650d").unwrap(),
            Duration::from_secs(3650 * 86400)
        );
        for long in ["3651d", "200000000000000d", "18446744073709551615s"] {
            let e = parse_duration(long).unwrap_err();
            assert!(e.contains("too long (at most 3650d"), "{long}: {e}");
        }
        assert!(std::time::SystemTime::now()
            .checked_add(parse_duration("3650d").unwrap())
            .is_some());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn commands_parse_and_bad_words_are_named() {
        let parse = |line: &str| {
            let words: Vec<String> = line.split_whitespace().map(String::from).collect();
            Command::parse(&words)
        };
        assert_eq!(parse("status"), Ok(Command::Status));
        assert_eq!(parse("reload"), Ok(Command::Reload));
        assert_eq!(
            parse("stats --top 5 --json"),
            Ok(Command::Stats { json: true, top: 5 })
        );
        assert_eq!(
            parse("explain 2001:db8::2 2001:db8:ff::25 25"),
            Ok(Command::Explain {
                src: "2001:db8::2".parse().unwrap(),
                dst: "2001:db8:ff::25".parse().unwrap(),
                port: 25
            })
        );
        // A dual-stack log's IPv4-mapped address is explained as the IPv4 address.
        assert_eq!(
            parse("explain ::ffff:10.0.0.3 ::ffff:192.0.2.1 25"),
            Ok(Command::Explain {
                src: "10.0.0.3".parse().unwrap(),
                dst: "192.0.2.1".parse().unwrap(),
                port: 25
            })
        );
        assert_eq!(
            parse("exempt add 100.64.1.7 --ttl 2h"),
            Ok(Command::ExemptAdd {
                prefix: "100.64.1.7/32".parse().unwrap(),
                ttl: Some(Duration::from_secs(7200))
            })
        );
        assert_eq!(
            parse("exempt del 2001:db8:1::/64"),
            Ok(Command::ExemptDel("2001:db8:1::/64".parse().unwrap()))
        );
        assert_eq!(parse("exempt list"), Ok(Command::ExemptList));
        // Each bad line and (a part of) the error it must give.
        for (line, want) in [
            (
                "explain 10.0.0.300 192.0.2.1 25",
                "explain: source \"10.0.0.300\" is not an IPv4 or IPv6 address",
            ),
            (
                "explain 10.0.0.3 mx.example 25",
                "explain: destination \"mx.example\" is not an IPv4 or IPv6 address",
            ),
            (
                "explain 10.0.0.3 192.0.2.1 smtp",
                "explain: port \"smtp\" is not a number from 0 to 65535",
            ),
            ("explain 10.0.0.3 2001:db8::1 25", "same address family"),
            ("explain 10.0.0.3 192.0.2.1 +25", "port \"+25\" is not a number"),
            ("explain 10.0.0.3 192.0.2.1 025", "port \"025\" is not a number"),
            ("explain 10.0.0.3", "usage: explain"),
            (
                "exempt add 10.0.0.1/8",
                "exempt add: \"10.0.0.1/8\": host bits",
            ),
            (
                "exempt add 10.0.0.0/8 --ttl 5x",
                "exempt add: --ttl \"5x\": unknown unit \"x\" (s, m, h or d)",
            ),
            ("exempt add 10.0.0.0/8 --ttl 0s", "at least one second"),
            ("exempt add 10.0.0.0/8 30s", "usage: exempt add"),
            ("exempt del 2001:db8::/129", "/129 is too long"),
            (
                "exempt add ::ffff:10.0.0.3",
                "exempt add: \"::ffff:10.0.0.3\": an IPv4-mapped IPv6 address, which no frame carries; write the IPv4 form, 10.0.0.3/32",
            ),
            ("exempt", "usage: exempt"),
            (
                "stats --jsn",
                "unknown option \"--jsn\"; usage: stats [--json] [--top N]",
            ),
            ("stats --top many", "--top needs a number"),
            ("restart now", "unknown command \"restart now\"; commands:"),
            ("", "unknown command"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(want), "{line:?} gave {e:?}");
        }
    }

    /// A bound control socket in a fresh directory, served with `limits` by a stub control
    /// thread that answers every command with its words.
    fn served(name: &str, limits: Limits) -> (std::path::PathBuf, std::path::PathBuf) {
        served_by(name, limits, |rx| {
            while let Ok(Request::Command(words, reply)) = rx.recv() {
                let _ = reply.send((true, words.join(" ")));
            }
        })
    }

    /// A control socket served with `limits` in a fresh directory, its requests going to
    /// `control` (on its own thread); returns (directory, socket path).
    fn served_by(
        name: &str,
        limits: Limits,
        control: impl FnOnce(crossbeam_channel::Receiver<Request>) + Send + 'static,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = op25b_dataplane::testkit::scratch_dir(&format!("ctl-{name}"));
        let path = dir.join("ctl.sock");
        let (l, _) = bind(&path).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || serve_socket_with(l, tx, limits));
        std::thread::spawn(move || control(rx));
        (dir, path)
    }

    /// A control thread that ends without answering (the appliance stops with a request
    /// queued) is said as such: the command was not carried out, not "still queued".
    #[test]
    fn a_request_dropped_by_a_stopping_control_thread_is_said_not_carried_out() {
        let limits = Limits {
            client: Duration::from_secs(5),
            answer: Duration::from_secs(5),
            scrape: Duration::from_secs(5),
        };
        // Takes one request and drops it, and its reply sender, unanswered.
        let (dir, path) = served_by("dropped", limits, |rx| {
            let _ = rx.recv();
        });
        let t = Instant::now();
        assert_eq!(
            request(&path, &["reload".into()]),
            Ok((
                false,
                "the appliance stopped without carrying out the command".to_string()
            ))
        );
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "waited for the answer timeout"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bind_replaces_a_stale_socket_but_nothing_else() {
        let dir = op25b_dataplane::testkit::scratch_dir("ctl-bind");
        // A regular file where the socket should go (a typo in [control] socket): kept.
        let file = dir.join("op25b.toml");
        std::fs::write(&file, "[outbound]\n").unwrap();
        let e = bind(&file).unwrap_err();
        assert!(
            e.contains("exists and is not a socket; refusing to replace it"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "[outbound]\n");
        assert!(bind(&dir).unwrap_err().contains("is not a socket"));
        // A socket nobody listens on any more (a crashed run): replaced.
        let path = dir.join("ctl.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (l, _) = bind(&path).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        drop(l);
        // A missing folder is made (as /run/op25b after a reboot), a missing tree is not.
        let (l, _) = bind(&dir.join("run/ctl.sock")).unwrap();
        drop(l);
        let e = bind(&dir.join("typo/deeper/ctl.sock")).unwrap_err();
        assert!(
            e.contains("typo/deeper: cannot make the control socket's folder"),
            "{e}"
        );
        assert!(!dir.join("typo").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn slow_and_idle_clients_delay_no_other() {
        let limits = Limits {
            client: Duration::from_secs(3),
            answer: Duration::from_secs(5),
            scrape: Duration::from_secs(5),
        };
        let (dir, path) = served("trickle", limits);
        // One byte every 300 ms for 6 s, never a newline: each read is quick, the whole
        // request is not.
        let p = path.clone();
        let trickler = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            for _ in 0..20 {
                if s.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        // And clients that connect and say nothing.
        let idle: Vec<UnixStream> = (0..6)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        assert_eq!(
            request(&path, &["status".into()]).unwrap(),
            (true, "status".into())
        );
        let waited = t.elapsed();
        // Served behind them would mean waiting out the 3 s client limit; the bound leaves
        // room for a loaded test machine.
        assert!(
            waited < Duration::from_millis(2000),
            "waited {waited:?} behind a trickling client and six idle ones"
        );
        // Beyond the limit of clients at once: told at once, not queued. The thread that
        // served the request above frees its slot just after its answer; on a loaded
        // machine that can come after the clients below connect, and a slot would be free
        // again when the next request comes (seen in CI): give it time first.
        std::thread::sleep(Duration::from_millis(200));
        let more: Vec<UnixStream> = (0..MAX_CLIENTS)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let refused = request(&path, &["status".into()]).unwrap();
        assert_eq!(
            refused,
            (
                false,
                format!("{MAX_CLIENTS} control clients are being served already; try again")
            )
        );
        // Once they go, serving goes on.
        drop((idle, more));
        trickler.join().unwrap();
        assert_eq!(
            request(&path, &["status".into()]).unwrap(),
            (true, "status".into())
        );
        // A request over the size limit gets an answer saying so.
        let mut s = UnixStream::connect(&path).unwrap();
        let _ = s.write_all(&vec![b'x'; MAX_REQUEST + 2048]);
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(
            reply.contains("malformed request: request longer than"),
            "{reply}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Sends `GET /metrics` to `addr` and returns the whole reply.
    fn scrape(addr: std::net::SocketAddr) -> String {
        http(addr, b"GET /metrics HTTP/1.0\r\n\r\n")
    }

    #[test]
    fn metrics_outlast_a_client_that_never_reads_and_a_silent_control_thread() {
        let limits = Limits {
            client: Duration::from_secs(1),
            answer: Duration::from_millis(300),
            scrape: Duration::from_millis(300),
        };
        // The stub control thread: a 32 MiB page (more than the socket buffers hold), then
        // silence (it keeps the reply channel but never answers).
        let addr = metrics_server(limits, |n| (n <= 2).then(|| "x".repeat(32 << 20)));
        // A client that asks and never reads.
        let mut stuck = TcpStream::connect(addr).unwrap();
        stuck.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        let page = scrape(addr);
        assert!(
            page.starts_with("HTTP/1.0 200 OK"),
            "{}",
            &page[..80.min(page.len())]
        );
        assert!(page.len() > 32 << 20);
        let waited = t.elapsed();
        assert!(
            waited < Duration::from_secs(4),
            "waited {waited:?} behind a non-reading client"
        );
        drop(stuck);
        // The control thread does not answer: a failed scrape, not an empty good one.
        let failed = scrape(addr);
        assert!(
            failed.starts_with("HTTP/1.0 503 Service Unavailable")
                && failed.contains("did not answer within"),
            "{failed}"
        );
    }

    /// A metrics server whose stub control thread answers its `n`-th request (from 1) with
    /// `page(n)`, or never for `None`.
    fn metrics_server(
        limits: Limits,
        page: impl Fn(usize) -> Option<String> + Send + 'static,
    ) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || serve_metrics_with(l, tx, limits));
        std::thread::spawn(move || {
            let (mut kept, mut n) = (Vec::new(), 0);
            while let Ok(Request::Metrics(reply)) = rx.recv() {
                n += 1;
                match page(n) {
                    Some(p) => drop(reply.send(p)),
                    None => kept.push(reply),
                }
            }
        });
        addr
    }

    /// Sends `request` whole and returns the whole reply.
    fn http(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn metrics_http_head_query_long_headers_and_other_methods() {
        let limits = Limits {
            client: Duration::from_secs(2),
            answer: Duration::from_secs(2),
            scrape: Duration::from_secs(2),
        };
        let page = "op25b_up 1\n";
        let addr = metrics_server(limits, move |_| Some(page.to_string()));
        // A 20 KiB bearer token: the whole head is read before the page goes out.
        let token = "t".repeat(20 * 1024);
        let long = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nAccept: text/plain\r\n\r\n"
        );
        let r = http(addr, long.as_bytes());
        assert!(
            r.starts_with("HTTP/1.0 200 OK\r\n")
                && r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n")
                && r.ends_with("\r\n\r\nop25b_up 1\n"),
            "{r}"
        );
        // A bare request line (no HTTP version, no headers) is answered at once.
        let t = Instant::now();
        assert!(http(addr, b"GET /metrics\n").ends_with(page));
        assert!(t.elapsed() < Duration::from_secs(1));
        // Query strings (Prometheus `params:`) are ignored.
        assert!(http(addr, b"GET /metrics?module=x HTTP/1.0\r\n\r\n").ends_with(page));
        // HEAD: the headers of the page, no body.
        let h = http(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(
            h.starts_with("HTTP/1.0 200 OK")
                && h.contains("Content-Length: 11\r\n")
                && h.ends_with("\r\n\r\n"),
            "{h}"
        );
        let p = http(addr, b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
        assert!(
            p.starts_with("HTTP/1.0 405 Method Not Allowed") && p.contains("Allow: GET, HEAD\r\n"),
            "{p}"
        );
        assert!(http(addr, b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404 Not Found"));
        // A head beyond the limit is answered as such, not cut off.
        let huge = format!(
            "GET /metrics HTTP/1.0\r\nX: {}\r\n\r\n",
            "y".repeat(256 * MAX_HTTP_HEAD)
        );
        // The client is still sending (an 8 MiB head, more than the socket buffers hold)
        // when the answer goes out: the rest is drained, so its sending does not end in a
        // reset (curl would say "send failure" instead of showing the 431).
        for _ in 0..5 {
            let mut s = TcpStream::connect(addr).unwrap();
            let wrote = s.write_all(huge.as_bytes());
            let mut reply = String::new();
            let read = s.read_to_string(&mut reply);
            assert!(
                wrote.is_ok() && read.is_ok() && reply.starts_with("HTTP/1.0 431"),
                "{wrote:?} {read:?}: {reply}"
            );
        }
    }

    #[test]
    fn idle_clients_delay_no_scrape_and_prometheus_timeouts_are_kept() {
        let limits = Limits {
            client: Duration::from_secs(3),
            answer: Duration::from_secs(3),
            scrape: Duration::from_secs(3),
        };
        let addr = metrics_server(limits, |_| Some("op25b_up 1\n".to_string()));
        // Three connections that send nothing (each may be held the client limit, 3 s).
        let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        assert!(http(addr, b"GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200 OK"));
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a scrape waited {:?} behind idle clients",
            t.elapsed()
        );
        // One more than the limit at once is refused at once, not queued. (The scrape above
        // holds its slot until its client has closed: let it go first.)
        std::thread::sleep(Duration::from_secs(1));
        let fourth = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let extra = TcpStream::connect(addr).unwrap();
        let mut refused = String::new();
        let _ = (&extra).read_to_string(&mut refused);
        assert!(
            refused.starts_with("HTTP/1.0 503") && refused.contains("scrapes are in progress"),
            "{refused}"
        );
        // A refused client with a long head gets the whole 503, not a reset.
        let head = format!(
            "GET /metrics HTTP/1.1\r\nAuthorization: Bearer {}\r\n\r\n",
            "t".repeat(20 * 1024)
        );
        for _ in 0..20 {
            let mut extra = TcpStream::connect(addr).unwrap();
            extra.write_all(head.as_bytes()).unwrap();
            let mut refused = String::new();
            let read = extra.read_to_string(&mut refused);
            assert!(
                read.is_ok() && refused.ends_with("scrapes are in progress\n"),
                "{read:?}: {refused}"
            );
        }
        drop((idle, fourth));
        // A silent control thread: the 503 comes within Prometheus's announced timeout.
        let silent = metrics_server(limits, |_| None);
        let t = Instant::now();
        let r = http(
            silent,
            b"GET /metrics HTTP/1.0\r\nX-Prometheus-Scrape-Timeout-Seconds: 1\r\n\r\n",
        );
        let waited = t.elapsed();
        assert!(
            r.starts_with("HTTP/1.0 503") && r.contains("within 0.8 s"),
            "{r}"
        );
        assert!(waited < Duration::from_secs(1), "answered after {waited:?}");
        assert_eq!(
            scrape_timeout(["Host: x", "x-prometheus-scrape-timeout-seconds: 10"].into_iter()),
            Some(Duration::from_secs_f64(8.9))
        );
        assert_eq!(
            scrape_timeout(["X-Prometheus-Scrape-Timeout-Seconds: nan"].into_iter()),
            None
        );
        // Any number a client sends is taken without a panic (a panic would abort the
        // appliance), and capped by the server's own limit.
        for v in ["1e20", "1e308", "18446744073709551616", "-1", "0"] {
            let t = scrape_timeout(
                [format!("X-Prometheus-Scrape-Timeout-Seconds: {v}").as_str()].into_iter(),
            );
            assert!(
                t.is_none_or(|t| t <= Duration::from_secs(3600)),
                "{v}: {t:?}"
            );
        }
        let r = http(
            silent,
            b"GET /metrics HTTP/1.0\r\nX-Prometheus-Scrape-Timeout-Seconds: 1e20\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.0 503"), "{r}");
    }

    #[test]
    fn socket_round_trip_and_mode() {
        let dir = std::env::temp_dir().join(format!("op25b-ctl-{}", std::process::id()));
        let path = dir.join("ctl.sock");
        let (l, _) = bind(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(bind(&path).unwrap_err().contains("already listening"));
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || serve_socket(l, tx));
        std::thread::spawn(move || {
            while let Ok(Request::Command(words, reply)) = rx.recv() {
                let _ = reply.send((words[0] == "status", words.join(" ")));
            }
        });
        assert_eq!(
            request(&path, &["status".into()]).unwrap(),
            (true, "status".into())
        );
        assert_eq!(
            request(&path, &["nope".into(), "x".into()]).unwrap(),
            (false, "nope x".into())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stopping_appliance_removes_its_own_socket_and_nothing_else() {
        let dir = op25b_dataplane::testkit::scratch_dir("ctl-unlink");
        let path = dir.join("ctl.sock");
        let (first, mine) = bind(&path).unwrap();
        // Someone deletes the socket of the running appliance and a second one starts
        // at the path: the first one's stop must leave the second one's socket.
        std::fs::remove_file(&path).unwrap();
        let (second, theirs) = bind(&path).unwrap();
        assert!(!mine.remove());
        assert!(
            UnixStream::connect(&path).is_ok(),
            "the second socket is gone"
        );
        drop(first);
        // A regular file put at the path is not a socket of ours either.
        drop(second);
        assert!(theirs.remove());
        assert!(!path.exists());
        std::fs::write(&path, "x").unwrap();
        assert!(!theirs.remove());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
        std::fs::remove_file(&path).unwrap();
        // Its own socket, still at the path, goes.
        let (l, own) = bind(&path).unwrap();
        drop(l);
        assert!(own.remove() && !path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_connection_closed_without_an_answer_says_busy_not_broken_pipe() {
        let dir = op25b_dataplane::testkit::scratch_dir("ctl-busy");
        let want = |path: &Path| {
            format!(
                "the appliance at {} is busy or stopping (it closed the connection without an answer); nothing was done; retry",
                path.display()
            )
        };
        // A server that reads the request and closes (end of stream before an answer).
        let path = dir.join("reads.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = BufReader::new(&s).read_line(&mut String::new());
            }
        });
        assert_eq!(request(&path, &["status".into()]), Err(want(&path)));
        // One that closes before the request is sent whole (a broken pipe while sending).
        let path = dir.join("closes.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let _ = s.read(&mut [0u8; 16]);
            }
        });
        let long = vec!["x".repeat(4 << 20)];
        assert_eq!(request(&path, &long), Err(want(&path)));
        // A real flood: every client slot held by a silent client, the refuser's queue
        // full of more; the next connection is closed at once.
        let limits = Limits {
            client: Duration::from_secs(5),
            answer: Duration::from_secs(5),
            scrape: Duration::from_secs(5),
        };
        let (flood_dir, path) = served("flood", limits);
        let mut held: Vec<UnixStream> = Vec::new();
        let mut closed = None;
        // The refuser frees a queue place every 200 ms (its wait for a silent client's
        // request): a machine that stalls that long between the flood and the request lets
        // the request into the queue, and it is refused in words instead. Flood again then.
        for _ in 0..3 {
            held.extend((0..3 * MAX_CLIENTS).map(|_| UnixStream::connect(&path).unwrap()));
            match request(&path, &["status".into()]) {
                Err(e) => {
                    closed = Some(e);
                    break;
                }
                Ok((false, t)) if t.contains("control clients are being served already") => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(closed, Some(want(&path)));
        drop(held);
        std::fs::remove_dir_all(&flood_dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
