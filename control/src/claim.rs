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
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

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
/// served, and by which process.
pub fn claim(interfaces: &[(String, i32)]) -> Result<Claims, String> {
    let mut held = Vec::new();
    for (ifname, index) in interfaces {
        let addr = SocketAddr::from_abstract_name(name(*index)).map_err(|e| e.to_string())?;
        match UnixListener::bind_addr(&addr) {
            Ok(l) => held.push(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(format!(
                    "{ifname} (index {index}) is already served by {}: two appliances on one interface forward every frame twice; stop that one first",
                    holder(&addr)
                ))
            }
            Err(e) => return Err(format!("{ifname}: cannot claim the interface: {e}")),
        }
    }
    Ok(Claims { _held: held })
}

/// The process holding a claim, as `ps` would show it.
fn holder(addr: &SocketAddr) -> String {
    let Some(pid) = UnixStream::connect_addr(addr)
        .ok()
        .and_then(|s| op25b_dataplane::port::sys::peer_pid(&s))
    else {
        return "another op25b".into();
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    if cmdline.is_empty() {
        format!("process {pid}")
    } else {
        format!("process {pid} ({cmdline})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let again = claim(&ours).unwrap();
        drop(again);
    }
}
