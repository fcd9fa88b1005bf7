//! The control socket protocol between `op25b ctl` and a running appliance, and the
//! read-only Prometheus endpoint.
//!
//! Control socket: a Unix stream socket, mode 0600 (only its owner, normally root, may
//! connect). A client sends one JSON array of words (`["explain","10.0.0.2","192.0.2.1","25"]`)
//! and a newline; the appliance answers with one JSON object `{"ok": bool, "text": "..."}`
//! and closes. Metrics: plain HTTP/1.0 `GET /metrics`, text exposition format; any other
//! method or path is refused, and nothing reachable over TCP changes the policy.
//!
//! Commands are parsed by [`Command::parse`] at both ends: by `op25b ctl`, so a bad word
//! is named before it connects, and by the appliance, which trusts no client.
//!
//! Invariants: every request and reply is bounded in size and time (a silent or slow
//! client cannot stall the control thread); the listener threads only forward requests to
//! the control thread and carry its answers back.

use crossbeam_channel::{bounded, Sender};
use op25b_dataplane::policy::AnyPrefix;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// Largest request accepted, in bytes.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a client may take to send its request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the control thread may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A request for the control thread, with where to send the answer.
#[derive(Debug)]
pub enum Request {
    /// A control command (`ok`, text).
    Command(Vec<String>, Sender<(bool, String)>),
    /// The metrics page.
    Metrics(Sender<String>),
}

/// Binds the control socket at `path` (replacing a stale one), mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{}: another op25b is already listening there",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("{}: cannot remove the stale socket: {e}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let l =
        UnixListener::bind(path).map_err(|e| format!("{}: cannot listen: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(l)
}

fn answer_one(stream: UnixStream, to_control: &Sender<Request>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Vec<String>>(line.trim()) {
        Err(e) => (false, format!("malformed request: {e}")),
        Ok(words) => {
            let (tx, rx) = bounded(1);
            if to_control.send(Request::Command(words, tx)).is_err() {
                (false, "the appliance is shutting down".into())
            } else {
                rx.recv_timeout(ANSWER_TIMEOUT)
                    .unwrap_or((false, "no answer from the control thread".into()))
            }
        }
    };
    let body = serde_json::json!({"ok": reply.0, "text": reply.1});
    (&stream).write_all(format!("{body}\n").as_bytes())
}

/// Serves the control socket until the control thread goes away.
pub fn serve_socket(listener: UnixListener, to_control: Sender<Request>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = answer_one(stream, &to_control);
    }
}

/// Serves `GET /metrics` until the control thread goes away.
pub fn serve_metrics(listener: TcpListener, to_control: Sender<Request>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
        let mut head = String::new();
        let _ = BufReader::new((&stream).take(8192)).read_line(&mut head);
        let mut words = head.split_whitespace();
        let (status, body) = match (words.next(), words.next()) {
            (Some("GET"), Some("/metrics")) => {
                let (tx, rx) = bounded(1);
                if to_control.send(Request::Metrics(tx)).is_err() {
                    return;
                }
                (
                    "200 OK",
                    rx.recv_timeout(ANSWER_TIMEOUT).unwrap_or_default(),
                )
            }
            (Some("GET"), _) => ("404 Not Found", "only /metrics is served\n".to_string()),
            _ => (
                "405 Method Not Allowed",
                "read-only: GET /metrics\n".to_string(),
            ),
        };
        let _ = write!(
            stream,
            "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

/// Sends one command to a running appliance and returns (`ok`, text).
pub fn request(socket: &Path, words: &[String]) -> Result<(bool, String), String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "{}: cannot connect ({e}); is op25b running, and are you root?",
            socket.display()
        )
    })?;
    let at = |what: &str, e: std::io::Error| {
        let why = if e.kind() == std::io::ErrorKind::WouldBlock {
            "no answer in time".to_string()
        } else {
            e.to_string()
        };
        format!("{}: {what}: {why}", socket.display())
    };
    s.set_read_timeout(Some(ANSWER_TIMEOUT + CLIENT_TIMEOUT))
        .map_err(|e| at("setting a timeout", e))?;
    let line = serde_json::to_string(words).map_err(|e| e.to_string())?;
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| at("sending the command", e))?;
    let mut reply = String::new();
    BufReader::new(s)
        .read_line(&mut reply)
        .map_err(|e| at("reading the answer", e))?;
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
                let addr = |what: &str, a: &str| -> Result<IpAddr, String> {
                    a.parse().map_err(|_| {
                        format!("explain: {what} {a:?} is not an IPv4 or IPv6 address")
                    })
                };
                let (src, dst) = (addr("source", src)?, addr("destination", dst)?);
                if src.is_ipv4() != dst.is_ipv4() {
                    return Err(format!(
                        "explain: source {src} and destination {dst} must be the same address family"
                    ));
                }
                let port = port.parse::<u16>().map_err(|_| {
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

    #[test]
    fn socket_round_trip_and_mode() {
        let dir = std::env::temp_dir().join(format!("op25b-ctl-{}", std::process::id()));
        let path = dir.join("ctl.sock");
        let l = bind(&path).unwrap();
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
}
