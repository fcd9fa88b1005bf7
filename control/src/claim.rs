//! One appliance per interface. Two appliances bridging the same interfaces would each
//! forward every frame, so the far side would get everything twice (and a second AF_XDP
//! appliance would replace the first one's XDP program). Before it opens an interface,
//! `op25b run` claims it by binding an abstract Unix socket named after the interface's
//! index; a second claim of the same interface fails, and the error names the process
//! that holds it.
//!
//! Invariants: abstract sockets belong to the network namespace, as interface indexes
//! do, so appliances in different namespaces never collide; a claim lasts exactly as long
//! as its process (the kernel drops the socket when the process ends, however it ends),
//! so there is no stale lock to clean up.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

/// The claims of one appliance, held until dropped.
#[derive(Debug)]
pub struct Claims {
    _held: Vec<UnixListener>,
}

/// The abstract socket name of interface `index` in this network namespace.
fn name(index: i32) -> String {
    format!("op25b/interface/{index}")
}

/// Claims the kernel interfaces named (those that exist now: opening a missing one fails
/// on its own, with its own error).
pub fn claim_names(names: &[&str]) -> Result<Claims, String> {
    let found: Vec<(String, i32)> = names
        .iter()
        .filter_map(|n| Some((n.to_string(), op25b_dataplane::port::sys::ifindex_of(n)?)))
        .collect();
    claim(&found)
}

/// Claims every interface of `interfaces` (name and index), or says which one is already
/// served, and by which process. A claim held by a process that could not forward frames
/// (it may neither open packet sockets nor attach XDP: anyone can bind an abstract name)
/// is not let stop the start: it is named in a warning, and that interface goes
/// unclaimed.
pub fn claim(interfaces: &[(String, i32)]) -> Result<Claims, String> {
    let mut held = Vec::new();
    for (i, (ifname, index)) in interfaces.iter().enumerate() {
        // Two names of one interface (an altname, two vdevs on one iface=): the second
        // claim would find this very process holding it.
        if let Some((first, _)) = interfaces[..i].iter().find(|(_, x)| x == index) {
            return Err(format!(
                "{first} and {ifname} are the same interface (index {index}): access and core must be two interfaces"
            ));
        }
        let addr = SocketAddr::from_abstract_name(name(*index)).map_err(|e| e.to_string())?;
        match UnixListener::bind_addr(&addr) {
            Ok(l) => held.push(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => match holder(*index) {
                Some(h) if !h.ours => eprintln!(
                    "op25b: warning: {ifname} (index {index}) cannot be claimed: {} holds the name op25b claims it by; a second appliance on it would not be noticed",
                    h.who
                ),
                found => {
                    return Err(format!(
                        "{ifname} (index {index}) is already served by {}: two appliances on one interface forward every frame twice; stop that one first",
                        found.map_or_else(
                            || format!("another process (`ss -xlp | grep {}` names it)", name(*index)),
                            |h| h.who
                        )
                    ))
                }
            },
            Err(e) => return Err(format!("{ifname}: cannot claim the interface: {e}")),
        }
    }
    Ok(Claims { _held: held })
}

/// The process holding a claim.
struct Holder {
    /// As `ps` would show it: `process 1234 (op25b run --config …)`.
    who: String,
    /// Whether it could be forwarding on the interface (it may open packet sockets or
    /// attach XDP programs), so a second appliance must not start.
    ours: bool,
}

/// Finds the holder of interface `index`'s claim without connecting to it (a listener
/// nobody accepts on could make a connect wait): the socket's inode from
/// `/proc/net/unix`, then the process with a descriptor on it.
fn holder(index: i32) -> Option<Holder> {
    let wanted = format!("@{}", name(index));
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    // Num RefCount Protocol Flags Type St Inode Path
    let inode = table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 8 && f[7] == wanted).then(|| f[6].to_string())
    })?;
    let target = format!("socket:[{inode}]");
    let pid = std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        let fds = std::fs::read_dir(p.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
            .then_some(pid)
    })?;
    // Whatever it is called and whoever runs it, a process that may open packet sockets
    // (CAP_NET_RAW, bit 13) or attach XDP (CAP_NET_ADMIN, bit 12) could be forwarding on
    // the interface; one that may do neither cannot, and only squats the name.
    let caps = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|c| u64::from_str_radix(c.trim(), 16).ok())
        });
    let ours = caps.is_none_or(|c| c & (1 << 13 | 1 << 12) != 0);
    Some(Holder {
        who: process(pid),
        ours,
    })
}

/// Process `pid` as `ps` would show it, for an error that names who holds something:
/// `process 1234 ("op25b run --config …")`, or `process 1234` when its command line
/// cannot be read.
pub fn process(pid: u32) -> String {
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&c| c == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    // Quoted: a process's arguments are its own to choose (terminal escapes included).
    if argv.is_empty() {
        format!("process {pid}")
    } else {
        format!("process {pid} ({:?})", argv.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// `claim`, retried for up to 2 s: a test elsewhere in this process that starts a
    /// child between fork and exec holds copies of every descriptor (this one's sockets
    /// too) for that moment, so a name just dropped may still be bound.
    fn claim_soon(list: &[(String, i32)]) -> Result<Claims, String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match claim(list) {
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                r => return r,
            }
        }
    }

    #[test]
    fn a_second_claim_names_the_holder_and_a_dropped_claim_is_free() {
        // Indexes no real interface has, unique to this test process.
        let index = 1_000_000 + (std::process::id() % 1_000_000) as i32;
        let ours = vec![
            ("acc0".to_string(), index),
            ("core0".to_string(), index + 1),
        ];
        let first = claim(&ours).unwrap();
        let e = claim(&[("core0".into(), index + 1)]).unwrap_err();
        let me = std::process::id();
        assert!(
            e.starts_with(&format!(
                "core0 (index {}) is already served by process {me} (",
                index + 1
            )) && e.ends_with("forward every frame twice; stop that one first"),
            "{e}"
        );
        drop(first);
        let again = claim_soon(&ours).unwrap();
        drop(again);
        // One interface under two names is said to be that, not blamed on this process.
        let e = claim(&[("acc0".into(), index), ("alt0".into(), index)]).unwrap_err();
        assert_eq!(
            e,
            format!("acc0 and alt0 are the same interface (index {index}): access and core must be two interfaces")
        );
        assert!(claim_soon(&ours).is_ok(), "a refused claim holds nothing");
    }

    #[test]
    fn a_name_held_by_something_else_does_not_stop_a_start() {
        let index = 2_000_000 + (std::process::id() % 1_000_000) as i32;
        let bind = format!(
            "import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.bind('\\0op25b/interface/{index}')\ns.listen()\nprint('bound', flush=True)\ntime.sleep(20)\n"
        );
        // A process without CAP_NET_RAW or CAP_NET_ADMIN (user nobody) holds the name.
        // (The system's python3: one under root's home, as pyenv's, is not nobody's.)
        if !Path::new("/usr/bin/python3").exists() {
            op25b_dataplane::testkit::skipped("no /usr/bin/python3 to hold a claim's name");
            return;
        }
        let Ok(mut squatter) = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
            ])
            .arg(&bind)
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            op25b_dataplane::testkit::skipped(
                "no setpriv (util-linux) to hold a claim's name as another user".to_string(),
            );
            return;
        };
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(squatter.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "bound\n");
        let h = holder(index).expect("the holder is found without connecting");
        assert!(!h.ours && h.who.contains("python3"), "{}", h.who);
        assert!(claim(&[("acc0".into(), index)]).is_ok());
        let _ = squatter.kill();
        let _ = squatter.wait();
    }
}
