//! Exemption tickets (`op25b ctl exempt add`) kept across restarts in the file
//! `[control] tickets` names: one ticket per line, `PREFIX EXPIRY` where EXPIRY is Unix
//! seconds or `never`, `#` comments and blank lines ignored (a comment after each expiry
//! gives it in UTC for people). The control thread rewrites the whole file after every
//! change (add, delete, expiry) and the appliance reads it at start.
//!
//! Invariants: the file on disk is a complete list, the old one or the new one, never half
//! of either (written to a temporary file beside it, flushed to disk, then renamed over
//! it), or absent (the control thread removes an old list it failed to replace when that
//! list would grant more than is in force: a deleted ticket back, or a longer expiry;
//! [`beyond`] tells). It is created 0600, root's business only, and one found open to
//! others is set to 0600 at start ([`tighten`]). A line that cannot be read is reported
//! with file and line and a copy of the file is kept before anything overwrites it, so no
//! ticket is lost without a word. One process writes a tickets file: a running appliance
//! holds an exclusive `flock` on `FILE.lock` beside it ([`lock`]) for its whole run, and
//! writes through a temporary file named with its pid. Nothing here runs on the packet
//! path.

use op25b_dataplane::policy::AnyPrefix;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An exemption added at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// What is exempted from outbound blocking.
    pub prefix: AnyPrefix,
    /// When it ends by itself (`None`: when deleted).
    pub expires: Option<SystemTime>,
}

impl Ticket {
    /// Whether it is still in force at `now`.
    pub fn live_at(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// What [`load`] read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The tickets still in force.
    pub tickets: Vec<Ticket>,
    /// Those that expired while op25b was not running (named at start: the end of an
    /// unblock is part of the audit trail).
    pub expired: Vec<Ticket>,
    /// Lines that could not be read, as `FILE:LINE: text: why`.
    pub problems: Vec<String>,
    /// Prefixes with more than one line (a hand edit), one report each: their lines were
    /// merged into one ticket with the latest expiry (`never` wins).
    pub duplicates: Vec<String>,
}

/// Whether a ticket ending at `a` lasts at least as long as one ending at `b` (`None`:
/// it never ends).
pub fn lasts_as_long(a: Option<SystemTime>, b: Option<SystemTime>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

/// The tickets of `list` still in force at `now` that `other` does not grant as long: no
/// ticket for the same prefix, or one that ends sooner. `beyond(saved, in_force, now)` is
/// what a start from the saved list would grant that is no longer granted;
/// `beyond(in_force, saved, now)` what it would lose.
pub fn beyond<'a>(list: &'a [Ticket], other: &[Ticket], now: SystemTime) -> Vec<&'a Ticket> {
    list.iter()
        .filter(|t| {
            t.live_at(now)
                && !other
                    .iter()
                    .any(|o| o.prefix == t.prefix && lasts_as_long(o.expires, t.expires))
        })
        .collect()
}

/// Reads the tickets file at `path`; a file that does not exist holds no tickets. A line
/// that is not UTF-8 (a hand edit in another encoding) is a problem of its own, not a
/// reason to read nothing. Lines for the same prefix (however written: `10.0.0.1` and
/// `10.0.0.1/32` are one) are one ticket with the latest of their expiries, at the place
/// of the first, and reported once.
pub fn load(path: &Path, now: SystemTime) -> std::io::Result<Loaded> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(e),
    };
    let mut loaded = Loaded::default();
    // Each prefix read, with the numbers of its lines, in the order first seen.
    let mut read: Vec<(Ticket, Vec<usize>)> = Vec::new();
    let mut seen: std::collections::HashMap<AnyPrefix, usize> = Default::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let Ok(raw) = std::str::from_utf8(raw) else {
            loaded.problems.push(format!(
                "{}:{}: {}: not UTF-8",
                path.display(),
                i + 1,
                String::from_utf8_lossy(raw).trim()
            ));
            continue;
        };
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(t) => match seen.get(&t.prefix) {
                Some(&k) => {
                    let (first, lines) = &mut read[k];
                    if lasts_as_long(t.expires, first.expires) {
                        first.expires = t.expires;
                    }
                    lines.push(i + 1);
                }
                None => {
                    seen.insert(t.prefix, read.len());
                    read.push((t, vec![i + 1]));
                }
            },
            Err(why) => loaded.problems.push(format!(
                "{}:{}: {}: {why}",
                path.display(),
                i + 1,
                raw.trim()
            )),
        }
    }
    for (t, lines) in read {
        if let [rest @ .., last] = &lines[..] {
            if !rest.is_empty() {
                let rest: Vec<String> = rest.iter().map(usize::to_string).collect();
                loaded.duplicates.push(format!(
                    "{}: {} is on lines {} and {last}; they are one ticket, with the latest expiry ({})",
                    path.display(),
                    t.prefix,
                    rest.join(", "),
                    t.expires.map_or("never".to_string(), |e| format!(
                        "{}, {}",
                        e.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
                        crate::droplog::rfc3339_seconds(e)
                    ))
                ));
            }
        }
        if t.live_at(now) {
            loaded.tickets.push(t);
        } else {
            loaded.expired.push(t);
        }
    }
    Ok(loaded)
}

/// Sets tickets file `path` to 0600 if it allows anything to group or others, through
/// its descriptor (`fchmod`); returns the mode it had when it was changed. The error says
/// what could not be done, with the path. A missing file is nothing to tighten.
pub fn tighten(path: &Path) -> Result<Option<u32>, String> {
    use std::os::unix::fs::PermissionsExt;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "{}: cannot open it to check its mode: {e}",
                path.display()
            ))
        }
    };
    let was = f
        .metadata()
        .map_err(|e| format!("{}: cannot read its mode: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if was & 0o077 == 0 {
        return Ok(None);
    }
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map(|()| Some(was))
        .map_err(|e| {
            format!(
                "{} is mode {was:04o} and cannot be set to 0600: {e}",
                path.display()
            )
        })
}

/// The earliest expiry a line may hold (2000-01-01T00:00:00Z, in Unix seconds).
const EARLIEST_EXPIRY: u64 = 946_684_800;

fn parse_line(line: &str) -> Result<Ticket, String> {
    let mut words = line.split_whitespace();
    let (Some(prefix), Some(expiry), None) = (words.next(), words.next(), words.next()) else {
        return Err("expected PREFIX EXPIRY (Unix seconds or `never`)".into());
    };
    let prefix: AnyPrefix = prefix.parse().map_err(|e| format!("{prefix:?}: {e}"))?;
    let expires = match expiry {
        "never" => None,
        secs => {
            let s: u64 = secs
                .parse()
                .map_err(|_| format!("{secs:?}: an expiry is Unix seconds or `never`"))?;
            // op25b writes the time a ticket ends; one before 2000 was never written by it
            // (milliseconds cut short, a TTL typed as a time, a stray number): a hand
            // edit to look at, not a ticket to drop quietly as expired.
            if s < EARLIEST_EXPIRY {
                return Err(format!(
                    "{secs:?}: an expiry before 2000 (Unix seconds {EARLIEST_EXPIRY}) is not a time op25b writes"
                ));
            }
            Some(
                UNIX_EPOCH
                    .checked_add(Duration::from_secs(s))
                    .ok_or_else(|| format!("{secs:?}: beyond the clock"))?,
            )
        }
    };
    Ok(Ticket { prefix, expires })
}

/// The file's text for `tickets`.
fn render(tickets: &[Ticket]) -> String {
    let mut out = String::from(
        "# op25b exemption tickets (op25b ctl exempt add), rewritten by op25b after every\n\
         # change and read at start: PREFIX EXPIRY (Unix seconds, or never).\n",
    );
    for t in tickets {
        match t.expires {
            None => out += &format!("{} never\n", t.prefix),
            Some(e) => {
                let s = e.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                out += &format!(
                    "{} {s} # until {}\n",
                    t.prefix,
                    crate::droplog::rfc3339_seconds(e)
                );
            }
        }
    }
    out
}

/// Replaces the file at `path` with `tickets`, whole: a temporary file beside it (0600),
/// written and flushed to disk, renamed over it, and the directory flushed, so a crash
/// or power loss leaves the old list or the new one. Creates the directory (0700) if it
/// is missing. An error means the file at `path` was not replaced.
pub fn save(path: &Path, tickets: &[Ticket]) -> std::io::Result<()> {
    let dir = folder(path);
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
    }
    let tmp = temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        op25b_dataplane::port::sys::write_new(&tmp, render(tickets).as_bytes())?;
        std::fs::rename(&tmp, path)?;
        // The new list is in place; flushing the directory makes the rename itself
        // durable, best effort (an error here must not read as "the old list stands").
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    let r = write();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// The name of the file at `path`, for the names of the files made beside it.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tickets".into())
}

/// The folder of `path` (`.` for a bare name).
fn folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary file [`save`] writes the new list to before it is renamed over `path`:
/// `.NAME.PID.tmp` beside it, this process's own, so no other writer (an older op25b, a
/// tool) can have it half-written at the same moment.
pub fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!(".{}.{}.tmp", file_name(path), std::process::id()))
}

/// The lock file beside tickets file `path`: `NAME.lock`. (The tickets file itself is
/// replaced by a rename at every save, so a lock on it would not last.)
pub fn lock_path(path: &Path) -> PathBuf {
    path.with_file_name(format!("{}.lock", file_name(path)))
}

/// One appliance's hold on a tickets file: an exclusive `flock` on [`lock_path`], for as
/// long as this is kept (the kernel drops it when the process ends, however it ends, so
/// there is never a stale lock to clean up).
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

/// Why [`lock`] did not take the tickets file.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it: `who` as [`crate::claim::process`] names it, if found.
    Held {
        /// The lock file.
        lock: PathBuf,
        /// The holder, when `/proc/locks` names it.
        who: Option<String>,
    },
    /// The lock file could not be made or locked (an unusable folder, say).
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { lock, who } => write!(
                f,
                "already in use by {} (it holds {})",
                who.as_deref().unwrap_or("another process"),
                lock.display()
            ),
            LockError::Io(lock, e) => write!(f, "cannot lock {}: {e}", lock.display()),
        }
    }
}

/// Takes tickets file `path` for this process: locks [`lock_path`] (made 0600, and its
/// folder 0700, if missing), and then, as no other writer can be at work, removes
/// temporary files an earlier process was killed in the middle of writing
/// (`.NAME.PID.tmp`, regular files only; the list they held never replaced the file).
pub fn lock(path: &Path) -> Result<Lock, LockError> {
    let lock = lock_path(path);
    let io = |e| LockError::Io(lock.clone(), e);
    let dir = folder(path);
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock)
        .map_err(io)?;
    if !op25b_dataplane::port::sys::try_lock_exclusive(&file).map_err(io)? {
        let who = file.metadata().ok().and_then(|m| flock_holder(&m));
        return Err(LockError::Held { lock, who });
    }
    let stale = format!(".{}.", file_name(path));
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let is_temp = name
                .to_str()
                .and_then(|n| n.strip_prefix(&stale))
                .and_then(|n| n.strip_suffix(".tmp"))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
            if is_temp && e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(Lock { _file: file })
}

/// The process holding a `flock` on the file whose metadata is `m`, from `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF`, device numbers in hex).
fn flock_holder(m: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = m.dev();
    // The kernel's major and minor numbers from the st_dev encoding (glibc's gnu_dev_*).
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let want = format!("{major:02x}:{minor:02x}:{}", m.ino());
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Blocked waiters are listed as `N: -> FLOCK …`: not holders.
        if f.len() < 6 || f[1] != "FLOCK" || f[5] != want {
            return None;
        }
        let pid: u32 = f[4].parse().ok().filter(|&p| p > 0)?;
        Some(crate::claim::process(pid))
    })
}

/// Keeps a copy of a tickets file that could not be used whole (as `FILE.refused`, or
/// `FILE.refused.N` if that is taken; never over an existing file), before the caller
/// saves what could be used over it. Returns where the copy is.
pub fn keep_copy(path: &Path) -> std::io::Result<PathBuf> {
    let bytes = std::fs::read(path)?;
    let base = path.as_os_str().to_string_lossy().into_owned();
    for name in std::iter::once(format!("{base}.refused"))
        .chain((1..1000).map(|n| format!("{base}.refused.{n}")))
    {
        let to = PathBuf::from(name);
        match op25b_dataplane::port::sys::write_new(&to, &bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            r => return r.map(|()| to),
        }
    }
    Err(std::io::Error::other("no free name for the copy"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn tickets_round_trip_and_expired_ones_are_counted_not_kept() {
        let dir = op25b_dataplane::testkit::scratch_dir("tickets-round-trip");
        // A directory that does not exist yet is made.
        let path = dir.join("state").join("tickets");
        let tickets = vec![
            Ticket {
                prefix: "10.1.2.3/32".parse().unwrap(),
                expires: Some(at(1_796_000_000)),
            },
            Ticket {
                prefix: "2001:db8:7::/48".parse().unwrap(),
                expires: None,
            },
            Ticket {
                prefix: "10.9.0.0/16".parse().unwrap(),
                expires: Some(at(1_700_000_000)),
            },
        ];
        save(&path, &tickets).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("10.1.2.3/32 1796000000 # until 2026-11-30T00:53:20Z\n"),
            "{text}"
        );
        assert!(text.contains("2001:db8:7::/48 never\n"), "{text}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(!temp_path(&path).exists());
        let loaded = load(&path, at(1_750_000_000)).unwrap();
        assert_eq!(loaded.tickets, tickets[..2]);
        assert_eq!(loaded.expired, tickets[2..]);
        assert!(loaded.problems.is_empty());
        // Saving again replaces the list whole.
        save(&path, &tickets[1..2]).unwrap();
        assert_eq!(
            load(&path, at(1_750_000_000)).unwrap().tickets,
            tickets[1..2]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_file_is_no_tickets_and_bad_lines_are_named_with_their_line() {
        let dir = op25b_dataplane::testkit::scratch_dir("tickets-bad");
        let path = dir.join("tickets");
        let none = load(&path, at(0)).unwrap();
        assert!(none.tickets.is_empty() && none.problems.is_empty());
        let text: &[u8] = b"# hand-edited\n10.0.0.1/32 never\n\n10.0.0.300 never\n10.0.0.2 soon\n10.0.0.3\n10.0.0.4/32 99 extra\n10.0.0.5 never # caf\xe9\n10.0.0.6/32 never\n10.0.0.7 1700000\n10.0.0.8 946684800\n";
        std::fs::write(&path, text).unwrap();
        let l = load(&path, at(1_000_000_000)).unwrap();
        assert_eq!(
            l.tickets
                .iter()
                .map(|t| t.prefix.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.1/32", "10.0.0.6/32"]
        );
        assert_eq!(l.problems.len(), 6, "{:?}", l.problems);
        let p = path.display();
        assert!(l.problems[0].starts_with(&format!("{p}:4: 10.0.0.300 never: ")));
        assert_eq!(
            l.problems[1],
            format!("{p}:5: 10.0.0.2 soon: \"soon\": an expiry is Unix seconds or `never`")
        );
        assert!(l.problems[2].ends_with("expected PREFIX EXPIRY (Unix seconds or `never`)"));
        assert_eq!(
            l.problems[4],
            format!("{p}:8: 10.0.0.5 never # caf\u{fffd}: not UTF-8")
        );
        // An expiry before 2000 is a problem line, not a ticket that quietly expired; 2000
        // itself is a time (long past: expired).
        assert_eq!(
            l.problems[5],
            format!("{p}:10: 10.0.0.7 1700000: \"1700000\": an expiry before 2000 (Unix seconds 946684800) is not a time op25b writes")
        );
        assert_eq!(l.expired.len(), 1);
        // Copies, never over an earlier one, and the file itself stays.
        let first = keep_copy(&path).unwrap();
        assert_eq!(first, dir.join("tickets.refused"));
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(keep_copy(&path).unwrap(), dir.join("tickets.refused.1"));
        assert_eq!(std::fs::read(&first).unwrap(), text);
        assert_eq!(std::fs::read(&path).unwrap(), b"x\n");
        let mode = std::fs::metadata(&first).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn beyond_is_what_one_list_grants_that_the_other_does_not() {
        let t = |p: &str, e: Option<u64>| Ticket {
            prefix: p.parse().unwrap(),
            expires: e.map(at),
        };
        let now = at(1_000);
        let saved = [
            t("10.0.0.1/32", None),
            t("10.0.0.2/32", Some(2_000)),
            t("10.0.0.3/32", Some(500)),
        ];
        // Added, kept longer, and one gone that had expired: the saved list grants nothing
        // more, and what it lacks is the new ticket and the longer expiry.
        let in_force = [
            t("10.0.0.1/32", None),
            t("10.0.0.2/32", Some(3_000)),
            t("10.0.0.4/32", Some(2_000)),
        ];
        assert!(beyond(&saved, &in_force, now).is_empty());
        assert_eq!(beyond(&in_force, &saved, now), [&in_force[1], &in_force[2]]);
        // Deleted, and shortened: the saved list would grant both again.
        let in_force = [t("10.0.0.2/32", Some(1_500))];
        assert_eq!(beyond(&saved, &in_force, now), [&saved[0], &saved[1]]);
        assert!(lasts_as_long(None, None) && !lasts_as_long(Some(at(5)), None));
    }

    /// [`lock`], tried for up to two seconds while it is held: a test elsewhere in this
    /// process that starts a command forks a child that holds a copy of every descriptor
    /// (the lock's too) until it execs, and that can be the moment the lock is let go.
    pub(crate) fn lock_soon(path: &Path) -> Lock {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            match lock(path) {
                Ok(l) => return l,
                Err(LockError::Held { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn one_holder_per_tickets_file_and_its_leftovers_are_cleared() {
        let dir = op25b_dataplane::testkit::scratch_dir("tickets-lock");
        let path = dir.join("state").join("tickets");
        // Each process writes through a temporary name of its own.
        let me = std::process::id();
        assert_eq!(
            temp_path(&path),
            dir.join("state").join(format!(".tickets.{me}.tmp"))
        );
        // A missing folder is made; the lock file is beside the tickets file.
        let held = lock(&path).unwrap();
        let lock_file = dir.join("state/tickets.lock");
        assert_eq!(
            std::fs::metadata(&lock_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A second hold (here another open in this process, as another appliance's would
        // be) is refused, naming the holder.
        match lock(&path) {
            Err(LockError::Held { lock, who }) => {
                assert_eq!(lock, lock_file);
                let who = who.expect("/proc/locks names the holder");
                assert!(who.starts_with(&format!("process {me} (")), "{who}");
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        // A temporary file left by a process killed while saving goes at the next hold;
        // anything else beside the tickets stays.
        let left = dir.join("state/.tickets.4242.tmp");
        std::fs::write(&left, "x").unwrap();
        let others = [
            "state/.tickets.tmp",
            "state/tickets.refused",
            "state/.tickets.x.tmp",
        ];
        for o in others {
            std::fs::write(dir.join(o), "x").unwrap();
        }
        let again = lock_soon(&path);
        assert!(!left.exists());
        for o in others {
            assert!(dir.join(o).exists(), "{o}");
        }
        drop(again);
        // A folder that cannot be one is an error of its own, not a holder.
        std::fs::write(dir.join("file"), "").unwrap();
        let e = lock(&dir.join("file/tickets")).unwrap_err();
        assert!(
            matches!(e, LockError::Io(..))
                && e.to_string().starts_with(&format!(
                    "cannot lock {}: ",
                    dir.join("file/tickets.lock").display()
                )),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_open_to_others_is_tightened_and_a_private_one_left() {
        let dir = op25b_dataplane::testkit::scratch_dir("tickets-tighten");
        let path = dir.join("tickets");
        assert_eq!(tighten(&path).unwrap(), None, "no file, nothing to do");
        std::fs::write(&path, "10.0.0.1/32 never\n").unwrap();
        for (mode, was) in [
            (0o644, Some(0o644)),
            (0o640, Some(0o640)),
            (0o600, None),
            (0o400, None),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(tighten(&path).unwrap(), was, "{mode:o}");
            let now = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(now, if was.is_some() { 0o600 } else { mode }, "{mode:o}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_for_one_prefix_are_one_ticket_with_the_latest_expiry() {
        let dir = op25b_dataplane::testkit::scratch_dir("tickets-dup");
        let path = dir.join("tickets");
        std::fs::write(
            &path,
            "10.0.0.1/32 2000000000\n10.0.0.1 never\n10.0.0.2/32 1900000000\n10.0.0.2/32 2000000000\n10.0.0.9/32 never\n10.0.0.2/32 1950000000\n10.0.0.3/32 1000000000\n10.0.0.3/32 1100000000\n",
        )
        .unwrap();
        let l = load(&path, at(1_500_000_000)).unwrap();
        let got: Vec<(String, Option<SystemTime>)> = l
            .tickets
            .iter()
            .map(|t| (t.prefix.to_string(), t.expires))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1/32".to_string(), None),
                ("10.0.0.2/32".to_string(), Some(at(2_000_000_000))),
                ("10.0.0.9/32".to_string(), None),
            ]
        );
        // Both lines of a prefix expired: one expired ticket, with the later end.
        assert_eq!(l.expired.len(), 1);
        assert_eq!(l.expired[0].expires, Some(at(1_100_000_000)));
        assert!(l.problems.is_empty());
        let p = path.display();
        assert_eq!(
            l.duplicates,
            [
                format!("{p}: 10.0.0.1/32 is on lines 1 and 2; they are one ticket, with the latest expiry (never)"),
                format!("{p}: 10.0.0.2/32 is on lines 3, 4 and 6; they are one ticket, with the latest expiry (2000000000, 2033-05-18T03:33:20Z)"),
                format!("{p}: 10.0.0.3/32 is on lines 7 and 8; they are one ticket, with the latest expiry (1100000000, 2004-11-09T11:33:20Z)"),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
