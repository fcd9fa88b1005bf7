//! Test hosts in network namespaces joined by veth pairs, for end-to-end tests with real
//! kernel TCP stacks and real peers.
//!
//! Invariants:
//! - Every namespace and link is named with the test's process id and removed on drop, so
//!   parallel and aborted runs do not collide and nothing is left behind.
//! - Traffic stays between namespaces this process created; nothing is routed outside.
//! - A machine that cannot host namespaces (not root, no iproute2) is detected up front by
//!   [`available_or_skipped`], and tests say they skipped instead of passing silently.

#![forbid(unsafe_code)]

use std::process::{Child, Command, Output, Stdio};

/// Why the testbed cannot run here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root (network namespaces)".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns` fails: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(_) => Some("iproute2 (`ip`) is not installed".into()),
    }
}

/// Whether the testbed can run here; if not, the test says SKIPPED and why
/// ([`op25b_dataplane::testkit::skipped`]), and should return.
pub fn available_or_skipped() -> bool {
    match unavailable() {
        None => true,
        Some(why) => {
            op25b_dataplane::testkit::skipped(why);
            false
        }
    }
}

/// Runs a command, panicking with its output if it fails.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `op25b-<role>-<pid>` with its loopback up.
    pub fn new(role: &str) -> Netns {
        let name = format!("op25b-{role}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs a command inside the namespace, panicking on failure.
    pub fn exec(&self, args: &[&str]) -> Output {
        let out = self
            .command(args)
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Pings `addr` once a second until it answers; panics after `within` (the appliance in
    /// between is up once a ping crosses it).
    pub fn wait_for_ping(&self, addr: &str, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        while !self
            .command(&["ping", "-c1", "-W1", addr])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: no answer from {addr} through the appliance",
                self.name
            );
        }
    }

    /// Starts `args` in the namespace and waits until it prints its first line (a server's
    /// "ready"); killed when the result is dropped.
    pub fn spawn_ready(&self, args: &[&str]) -> Reaped {
        let mut r = Reaped(Some(self.spawn(args)));
        let mut ready = [0u8; 5];
        std::io::Read::read_exact(
            r.child().stdout.as_mut().expect("spawn pipes stdout"),
            &mut ready,
        )
        .unwrap_or_else(|e| panic!("{args:?} did not get ready: {e}"));
        r
    }

    /// Adds these addresses (`addr/len`) to interface `dev`; IPv6 ones without duplicate
    /// address detection, so they are usable at once.
    pub fn add_addresses(&self, dev: &str, addrs: &[&str]) {
        for a in addrs {
            let mut args = vec!["ip", "addr", "add", a, "dev", dev];
            if a.contains(':') {
                args.push("nodad");
            }
            self.exec(&args);
        }
    }

    /// Starts [`TCP_LISTENER`] in the namespace and waits until it listens.
    pub fn tcp_listener(&self) -> Reaped {
        self.spawn_ready(&["python3", "-c", TCP_LISTENER])
    }

    /// Connects over TCP from `src` to `dst`:`port` (3 s timeout) with a kernel client and
    /// returns the outcome — "connected", "refused" (a reset came back) or "timeout" —
    /// and the seconds it took.
    pub fn tcp_connect(&self, src: &str, dst: &str, port: u16) -> (String, f64) {
        let out = self
            .command(&["python3", "-c", TCP_CONNECT, src, dst, &port.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut w = text.split_whitespace();
        let what = w.next().unwrap_or("error").to_string();
        let secs = w.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
        (what, secs)
    }

    /// Starts a background command inside the namespace.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Joins two namespaces with a veth pair named `a_if`/`b_if` (brought up, IPv6 DAD off).
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    veth_queues(a, a_if, b, b_if, 1);
}

/// [`veth`] with `queues` RX and TX queues on each end (the sender's TX queue, chosen by
/// flow hash, is the receiver's RX queue).
pub fn veth_queues(a: &Netns, a_if: &str, b: &Netns, b_if: &str, queues: u32) {
    let q = queues.to_string();
    run(&[
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ]);
    for (ns, ifname) in [(a, a_if), (b, b_if)] {
        ns.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{ifname}.accept_dad=0"),
        ]);
        ns.exec(&["ip", "link", "set", ifname, "up"]);
    }
}

/// A binary of this workspace built beside the test executables (`cargo test --workspace`
/// builds every package's binaries into `target/<profile>/`).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (scripts/test.sh)",
        bin.display()
    );
    bin
}

/// TCP servers on ports 25 and 587, IPv4 and IPv6 (a family that is off in the namespace
/// is skipped), accepting and closing every connection; prints "ready" once listening.
pub const TCP_LISTENER: &str = r#"
import socket, threading
socks = []
for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for port in (25, 587):
        try:
            s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port)); s.listen(64); socks.append(s)
        except OSError:
            pass
def serve(s):
    while True:
        c, _ = s.accept(); c.close()
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait(300)
"#;

/// Connects from argv[1] to argv[2]:argv[3]; prints the outcome and the seconds it took.
const TCP_CONNECT: &str = r#"
import socket, sys, time
fam = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
s = socket.socket(fam); s.settimeout(3); s.bind((sys.argv[1], 0)); t = time.time()
try:
    s.connect((sys.argv[2], int(sys.argv[3]))); r = "connected"
except ConnectionRefusedError:
    r = "refused"
except (socket.timeout, OSError):
    r = "timeout"
print(r, round(time.time() - t, 3))
"#;

/// (rx, tx, dropped) from the final counters `op25b run` prints on stopping, for the line
/// that starts with `direction` (`access→core` or `core→access`); panics if absent.
pub fn final_counters(out: &str, direction: &str) -> (u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with(direction))
        .unwrap_or_else(|| panic!("no final {direction} counters in {out:?}"));
    let counter = |name: &str| -> u64 {
        let at = line
            .find(&format!(" {name} "))
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        line[at + name.len() + 2..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line} is not a number"))
    };
    (counter("rx"), counter("tx"), counter("dropped"))
}

/// The `op25b` binary of this build.
pub fn op25b_binary() -> std::path::PathBuf {
    workspace_binary("op25b")
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing
/// running in its namespaces.
#[derive(Debug)]
pub struct Reaped(pub Option<Child>);

impl Reaped {
    /// The process.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("process already taken")
    }

    /// Takes the process out; the caller then waits for it.
    pub fn take(&mut self) -> Child {
        self.0.take().expect("process already taken")
    }

    /// Waits up to `within` for the process to end by itself and returns its exit status
    /// and output; if it is still running then, stops it and panics with `what` and what
    /// it wrote on stderr.
    pub fn wait_for_end(&mut self, within: std::time::Duration, what: &str) -> Output {
        let deadline = std::time::Instant::now() + within;
        while self.child().try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let o = self.terminate();
                panic!(
                    "{what} (still running after {within:?}): {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.take()
            .wait_with_output()
            .unwrap_or_else(|e| panic!("reading the ended process's output: {e}"))
    }

    /// Sends SIGTERM, waits up to 10 s for the process to stop (panics if it does not) and
    /// returns its exit status and what it printed (`op25b run`: the final counters on
    /// stdout).
    pub fn terminate(&mut self) -> Output {
        let mut child = self.take();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the process did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("reading the stopped process's output: {e}"))
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `op25b run --config CONFIG` inside `ns` (stdout and stderr captured: the final
/// counters and the start-up and reload messages); killed when dropped.
pub fn run_appliance(ns: &Netns, config: &std::path::Path) -> Reaped {
    let bin = op25b_binary();
    let child = ns
        .command(&[
            bin.to_str().unwrap_or("op25b"),
            "run",
            "--config",
            config.to_str().unwrap_or(""),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("op25b run: {e}"));
    Reaped(Some(child))
}

/// Runs `op25b run --config CONFIG` inside `ns` to its end, with the capabilities in
/// `drop` (`setpriv --bounding-set` syntax, e.g. `-net_raw`) taken from its bounding set,
/// as a sandbox (systemd's `CapabilityBoundingSet=`) leaves a root process: its exit code
/// and what it wrote on stderr.
pub fn run_without_caps(ns: &Netns, drop: &str, config: &std::path::Path) -> (Option<i32>, String) {
    let bin = op25b_binary();
    let out = ns
        .command(&[
            "setpriv",
            "--bounding-set",
            drop,
            bin.to_str().unwrap_or("op25b"),
            "run",
            "--config",
            config.to_str().unwrap_or(""),
        ])
        .output()
        .unwrap_or_else(|e| panic!("setpriv op25b run: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `op25b ctl --socket SOCK WORDS...`: whether it succeeded, and its answer (stdout
/// on success, stderr otherwise).
pub fn ctl(sock: &std::path::Path, words: &[&str]) -> (bool, String) {
    let out = Command::new(op25b_binary())
        .arg("ctl")
        .arg("--socket")
        .arg(sock)
        .args(words)
        .output()
        .unwrap_or_else(|e| panic!("op25b ctl: {e}"));
    let text = if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    };
    (
        out.status.success(),
        String::from_utf8_lossy(text).into_owned(),
    )
}

/// Waits up to 10 s for a starting appliance's control socket to answer `status`.
pub fn wait_for_control(sock: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(sock.exists() && ctl(sock, &["status"]).0) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not answer within 10 s",
            sock.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The appliance's place in the path: a left host, the appliance (`acc0` towards the left,
/// `core0` towards the right) and a right host, joined by two veth pairs whose offloads
/// are off. veth hands frames over with checksums left to "offload"; a bridge re-sending
/// them from a packet socket would carry them unfinished, so the end hosts compute them.
#[derive(Debug)]
pub struct Wire {
    /// Subscriber side host; its interface is `{tag}0`-style `left_if`.
    pub left: Netns,
    /// The appliance's namespace (`acc0`, `core0`).
    pub app: Netns,
    /// Internet side host.
    pub right: Netns,
}

impl Wire {
    /// Builds the three namespaces (`tag` keeps concurrent tests apart) with interfaces
    /// `left_if` ↔ `acc0` and `core0` ↔ `right_if`. With `ipv6 = false` IPv6 is off on all
    /// four, so only the test's own frames cross the wire.
    pub fn new(tag: &str, left_if: &str, right_if: &str, ipv6: bool) -> Wire {
        Wire::with_queues(tag, left_if, right_if, ipv6, 1)
    }

    /// [`Wire::new`] with `queues` RX/TX queues on every veth end.
    pub fn with_queues(tag: &str, left_if: &str, right_if: &str, ipv6: bool, queues: u32) -> Wire {
        let left = Netns::new(&format!("{tag}l"));
        let app = Netns::new(&format!("{tag}a"));
        let right = Netns::new(&format!("{tag}r"));
        veth_queues(&left, left_if, &app, "acc0", queues);
        veth_queues(&app, "core0", &right, right_if, queues);
        for (ns, i) in [
            (&left, left_if),
            (&app, "acc0"),
            (&app, "core0"),
            (&right, right_if),
        ] {
            if !ipv6 {
                ns.exec(&[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{i}.disable_ipv6=1"),
                ]);
            }
            let _ = ns
                .command(&[
                    "ethtool", "-K", i, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
                ])
                .output();
        }
        Wire { left, app, right }
    }
}

/// Sends raw Ethernet frames (argv: interface, then one hex string per frame) out of an
/// AF_PACKET socket, as they are: tags and checksums untouched.
const RAW_SEND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
"#;

/// Prints, one hex line each, the frames interface argv[1] receives for argv[2] seconds
/// (not those it sends), as they were on the wire: a VLAN tag the kernel moved into packet
/// metadata (PACKET_AUXDATA) is put back after the MAC addresses, the way tcpdump shows it.
const RAW_CAPTURE: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
s.bind((sys.argv[1], 0)); s.settimeout(0.1)
print("ready", flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        data, anc, _, addr = s.recvmsg(65536, 256)
    except socket.timeout:
        continue
    if addr[2] == 4:  # PACKET_OUTGOING
        continue
    for level, kind, aux in anc:
        if level == 263 and kind == 8 and len(aux) >= 20:
            status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", aux[:20])
            if status & 0x10:  # TP_STATUS_VLAN_VALID
                tpid = tpid if status & 0x40 else 0x8100
                data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
    print(data.hex(), flush=True)
"#;

impl Netns {
    /// Sends `frames` out of `dev` exactly as given (AF_PACKET), panicking on failure.
    pub fn send_frames(&self, dev: &str, frames: &[Vec<u8>]) {
        let hex: Vec<String> = frames.iter().map(|f| to_hex(f)).collect();
        let mut args = vec!["python3", "-c", RAW_SEND, dev];
        args.extend(hex.iter().map(String::as_str));
        self.exec(&args);
    }

    /// Starts capturing what `dev` receives for `secs` seconds; [`Capture::frames`] waits
    /// for the end and returns the frames, VLAN tags in place.
    pub fn capture(&self, dev: &str, secs: f64) -> Capture {
        Capture(self.spawn_ready(&["python3", "-c", RAW_CAPTURE, dev, &secs.to_string()]))
    }

    /// The MAC address of `dev` in this namespace.
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let out = self.exec(&["cat", &format!("/sys/class/net/{dev}/address")]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut mac = [0u8; 6];
        for (m, part) in mac.iter_mut().zip(text.trim().split(':')) {
            *m = u8::from_str_radix(part, 16).unwrap_or_else(|e| panic!("MAC {text}: {e}"));
        }
        mac
    }
}

/// A running [`Netns::capture`].
#[derive(Debug)]
pub struct Capture(Reaped);

impl Capture {
    /// Waits for the capture to end and returns the frames it saw, in order.
    pub fn frames(mut self) -> Vec<Vec<u8>> {
        let out = self
            .0
            .take()
            .wait_with_output()
            .unwrap_or_else(|e| panic!("capture: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(from_hex)
            .collect()
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An Ethernet frame carrying an IPv4 TCP SYN from `src`:40000 to `dst`:`dport` with
/// `payload` bytes of payload (a patterned fill), behind the VLAN `tags` (TPID, VLAN id),
/// outermost first. The IPv4 header checksum is right; the TCP checksum is left zero.
pub fn tcp_syn_frame(
    macs: ([u8; 6], [u8; 6]),
    tags: &[(u16, u16)],
    src: [u8; 4],
    dst: [u8; 4],
    dport: u16,
    payload: usize,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + 40 + payload);
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&macs.0);
    for &(tpid, id) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_at = f.len();
    let total = (20 + 20 + payload) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let sum = f[ip_at..ip_at + 20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    f[ip_at + 10..ip_at + 12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..payload).map(|i| (i * 7 + usize::from(dport)) as u8));
    f
}

impl Wire {
    /// Sets the MTU of all four interfaces (e.g. 9000 for jumbo frames).
    pub fn set_mtu(&self, left_if: &str, right_if: &str, mtu: u32) {
        let mtu = mtu.to_string();
        for (ns, i) in [
            (&self.left, left_if),
            (&self.app, "acc0"),
            (&self.app, "core0"),
            (&self.right, right_if),
        ] {
            ns.exec(&["ip", "link", "set", "dev", i, "mtu", &mtu]);
        }
    }
}
