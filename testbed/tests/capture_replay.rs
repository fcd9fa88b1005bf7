//! End to end on real traffic: two network namespaces joined by a veth pair, a subscriber
//! host speaking SMTP to a server on ports 25 and 587 over IPv4 and IPv6 through the
//! kernel's own TCP stack, captured with tcpdump, then replayed through op25b's replay driver.
//! Proves on frames op25b did not make itself: every port-25 segment from the dynamic host
//! is dropped, its port-587 session and the server's answers pass, and an exemption lets
//! the host's port-25 session through.
//!
//! Needs root, iproute2, tcpdump and python3; says SKIPPED otherwise.

use op25b_dataplane::port::pcap::{CaptureReader, Next};
use op25b_dataplane::port::Burst;
use op25b_dataplane::wire::{self, Addrs, Transport};
use op25b_testbed::{available_or_skipped, veth, Netns};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SERVER: &str = r#"
import socket, threading
def serve(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(8); s.settimeout(20)
    for _ in range(2):
        c, _ = s.accept(); c.settimeout(5)
        c.sendall(b"220 mx.test ESMTP\r\n")
        f = c.makefile("rb")
        for line in f:
            if line.upper().startswith(b"QUIT"):
                c.sendall(b"221 bye\r\n"); break
            c.sendall(b"250 ok\r\n")
        c.close()
ts = [threading.Thread(target=serve, args=(p,)) for p in (25, 587)]
[t.start() for t in ts]
print("ready", flush=True)
[t.join() for t in ts]
"#;

const CLIENT: &str = r#"
import socket, sys
for host in ("198.51.100.1", "2001:db8:1::1"):
    for port in (25, 587):
        c = socket.create_connection((host, port), timeout=5)
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"EHLO bot.example\r\n"); assert f.readline().startswith(b"250")
        c.sendall(b"QUIT\r\n"); assert f.readline().startswith(b"221")
        c.close()
print("sessions done")
"#;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn frames(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut r = CaptureReader::open(&data[..]).unwrap();
    let mut b = Burst::new(1);
    let mut v = Vec::new();
    loop {
        b.clear();
        match r.next_into(&mut b).unwrap() {
            Next::Frame => v.push(b.frame(0).to_vec()),
            Next::Meta => {}
            Next::End => return v,
        }
    }
}

fn is_client(a: &Addrs) -> bool {
    match *a {
        Addrs::V4 { src, .. } => src == u32::from_be_bytes([198, 51, 100, 2]),
        Addrs::V6 { src, .. } => {
            src == u128::from("2001:db8:1::2".parse::<std::net::Ipv6Addr>().unwrap())
        }
    }
}

fn replay(dir: &Path, cfg: &str, cap: &Path) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let cfg_path = dir.join("op25b.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let built = op25b::config::Config::load(&cfg_path)
        .unwrap()
        .build(1)
        .unwrap();
    let args = op25b::replay::ReplayArgs {
        input: cap.to_path_buf(),
        pass_out: dir.join("pass.pcap"),
        drop_out: dir.join("drop.pcap"),
        report: None,
        resets_out: None,
        burst: 64,
        top: 20,
    };
    let outcome = op25b::replay::replay(built, &args).unwrap();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    (
        frames(&dir.join("pass.pcap")),
        frames(&dir.join("drop.pcap")),
    )
}

#[test]
fn real_smtp_sessions_captured_and_replayed() {
    if !available_or_skipped() {
        return;
    }
    if !have("tcpdump") || !have("python3") {
        op25b_dataplane::testkit::skipped(
            "tcpdump and python3 are needed (scripts/setup.sh installs them)",
        );
        return;
    }
    let dir = op25b_dataplane::testkit::scratch_dir("testbed");
    let cap = dir.join("smtp.pcap");
    let sub = Netns::new("sub");
    let net = Netns::new("net");
    veth(&sub, "sub0", &net, "net0");
    sub.exec(&["ip", "addr", "add", "198.51.100.2/24", "dev", "sub0"]);
    sub.exec(&[
        "ip",
        "addr",
        "add",
        "2001:db8:1::2/64",
        "dev",
        "sub0",
        "nodad",
    ]);
    net.exec(&["ip", "addr", "add", "198.51.100.1/24", "dev", "net0"]);
    net.exec(&[
        "ip",
        "addr",
        "add",
        "2001:db8:1::1/64",
        "dev",
        "net0",
        "nodad",
    ]);

    let mut dump = net.spawn(&[
        "tcpdump",
        "-i",
        "net0",
        "--immediate-mode",
        "-U",
        "-n",
        "-s",
        "0",
        "-Z",
        "root",
        "-w",
        cap.to_str().unwrap(),
        "tcp",
    ]);
    let mut err = BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "tcpdump did not start"
        );
    }
    let mut server = net.spawn(&["python3", "-c", SERVER]);
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    let client = sub.command(&["python3", "-c", CLIENT]).output().unwrap();
    assert!(
        client.status.success(),
        "client: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(server.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &dump.id().to_string()])
        .status();
    let _ = dump.wait();

    let all = frames(&cap);
    assert!(all.len() >= 40, "only {} frames captured", all.len());

    // Dynamic client: every client→server segment to port 25 is dropped, nothing else.
    let (pass, drop) = replay(
        &dir,
        "[outbound]\ndynamic = [\"198.51.100.2\", \"2001:db8:1::2\"]\n",
        &cap,
    );
    assert_eq!(pass.len() + drop.len(), all.len());
    let mut dropped_v6 = 0;
    for f in &drop {
        let k = wire::parse(f).unwrap();
        assert!(
            is_client(&k.addrs) && k.transport == Transport::Tcp { dport: 25 },
            "{k:?}"
        );
        dropped_v6 += usize::from(matches!(k.addrs, Addrs::V6 { .. }));
    }
    assert!(
        drop.len() >= 10 && dropped_v6 >= 5,
        "{} dropped, {dropped_v6} IPv6",
        drop.len()
    );
    let dynamic_dropped = drop.len();
    let mut to_587 = 0;
    for f in &pass {
        let k = wire::parse(f).unwrap();
        assert!(
            !(is_client(&k.addrs) && k.transport == Transport::Tcp { dport: 25 }),
            "{k:?} passed"
        );
        to_587 += usize::from(is_client(&k.addrs) && k.transport == Transport::Tcp { dport: 587 });
    }
    assert!(to_587 >= 10, "{to_587} submission segments passed");

    // The same host exempted (IPv4 only): its IPv4 port-25 session passes whole.
    let (_, drop) = replay(
        &dir,
        "[outbound]\ndynamic = [\"198.51.100.0/24\", \"2001:db8:1::/64\"]\nexempt = [\"198.51.100.2\"]\n",
        &cap,
    );
    assert!(!drop.is_empty());
    for f in &drop {
        assert!(matches!(wire::parse(f).unwrap().addrs, Addrs::V6 { .. }));
    }
    println!(
        "captured {} frames; dynamic host: {dynamic_dropped} port-25 segments dropped, {} frames passed ({to_587} of them submission)",
        all.len(),
        pass.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
