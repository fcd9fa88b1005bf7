//! Full-size VLAN-tagged frames through the AF_PACKET appliance at the interfaces' own MTU
//! of 1500. The kernel's packet socket send path (`packet_snd`) allows a frame 4 bytes
//! beyond the MTU only when its outer tag is 802.1Q (0x8100, `packet_extra_vlan_len_allowed`),
//! and never 8 bytes: a 1518-byte 802.1ad (0x88a8) or 0x9100 frame, or a 1522-byte QinQ
//! frame, is refused with EMSGSIZE, although the same frame crosses a NIC or a Linux bridge.
//!
//! Proves: a 1518-byte 802.1Q frame crosses; 1518-byte 0x88a8 and 0x9100 frames and a
//! 1522-byte QinQ frame are refused by the kernel and counted (`tx_refused`, and apart as
//! `tx_refused_tagged`), with one warning naming the interface and the fix
//! (raise both interfaces' MTU by 4 per tag beyond one 802.1Q tag); and with both sides'
//! MTU raised by 8 every one of them crosses bit for bit. A tagged frame longer than the
//! MTU allows even for its tags counts in `tx_refused` only.
//!
//! Needs root, iproute2 and python3; says SKIPPED otherwise.

use op25b_testbed::{
    available_or_skipped, ctl, final_counters, run_appliance, tcp_syn_frame, wait_for_control, Wire,
};
use serde_json::json;
use std::time::Duration;

const POLICY: &str = r#"
[outbound]
dynamic = ["10.0.0.0/28"]

[dataplane]
backend = "af_packet"
access = "acc0"
core = "core0"
workers = 1

[control]
socket = "ctl.sock"
metrics = ""
"#;

/// Frames from sub0 towards net0 (TCP to port 587 from outside the pool: forwarded), each
/// with 1500 bytes of IP behind these tags.
fn frames(wire: &Wire) -> Vec<(&'static str, Vec<u8>)> {
    let macs = (wire.left.mac("sub0"), wire.right.mac("net0"));
    let frame = |tags: &[(u16, u16)]| {
        tcp_syn_frame(macs, tags, [10, 0, 0, 200], [10, 0, 0, 1], 587, 1500 - 40)
    };
    vec![
        ("802.1Q", frame(&[(0x8100, 100)])),
        ("802.1ad", frame(&[(0x88a8, 200)])),
        ("0x9100", frame(&[(0x9100, 200)])),
        ("QinQ under 802.1Q", frame(&[(0x8100, 200), (0x8100, 100)])),
        ("QinQ under 802.1ad", frame(&[(0x88a8, 200), (0x8100, 100)])),
    ]
}

/// Sends `names` of `frames` from sub0 and returns whether each arrived at net0 bit for
/// bit.
fn cross(
    wire: &Wire,
    frames: &[(&'static str, Vec<u8>)],
    names: &[&str],
) -> Vec<(&'static str, bool)> {
    let chosen: Vec<&(&'static str, Vec<u8>)> =
        frames.iter().filter(|f| names.contains(&f.0)).collect();
    let capture = wire.right.capture("net0", 1.5);
    let all: Vec<Vec<u8>> = chosen.iter().map(|f| f.1.clone()).collect();
    wire.left.send_frames("sub0", &all);
    let seen = capture.frames();
    chosen
        .iter()
        .map(|(name, f)| (*name, seen.contains(f)))
        .collect()
}

/// Sets the MTU of the appliance's interfaces and of net0 (sub0, the test's own packet
/// socket sender, stays at 1508 throughout).
fn set_mtu(wire: &Wire, mtu: u32) {
    let mtu = mtu.to_string();
    for (ns, dev) in [
        (&wire.app, "acc0"),
        (&wire.app, "core0"),
        (&wire.right, "net0"),
    ] {
        ns.exec(&["ip", "link", "set", "dev", dev, "mtu", &mtu]);
    }
}

#[test]
fn full_size_s_tagged_and_qinq_frames_need_a_larger_mtu_on_af_packet() {
    if !available_or_skipped() {
        return;
    }
    let (dir, cfg) = op25b_dataplane::testkit::scratch_config("vlanmtu", POLICY);
    let wire = Wire::new("vm", "sub0", "net0", false);
    // The test's sender is a packet socket too, so it needs the room itself.
    wire.left
        .exec(&["ip", "link", "set", "dev", "sub0", "mtu", "1508"]);
    let frames = frames(&wire);
    let mut appliance = run_appliance(&wire.app, &cfg);
    let sock = dir.join("ctl.sock");
    wait_for_control(&sock);

    // MTU 1500 on both sides (veth takes frames up to MTU + 18 in, so the 1522-byte QinQ
    // frames would not even reach the appliance: they come below).
    let single = ["802.1Q", "802.1ad", "0x9100"];
    assert_eq!(
        cross(&wire, &frames, &single),
        [("802.1Q", true), ("802.1ad", false), ("0x9100", false)],
        "MTU 1500"
    );
    // 1504: every frame with one tag, and QinQ under an outer 802.1Q tag (the kernel's 4
    // bytes of allowance), but not QinQ under 802.1ad.
    set_mtu(&wire, 1504);
    let all: Vec<&str> = frames.iter().map(|f| f.0).collect();
    assert_eq!(
        cross(&wire, &frames, &all),
        [
            ("802.1Q", true),
            ("802.1ad", true),
            ("0x9100", true),
            ("QinQ under 802.1Q", true),
            ("QinQ under 802.1ad", false),
        ],
        "MTU 1504"
    );
    // 1508: everything.
    set_mtu(&wire, 1508);
    assert!(cross(&wire, &frames, &all).iter().all(|c| c.1), "MTU 1508");

    // Counted apart, by interface: 2 at 1500, 1 at 1504, all leaving through core0.
    std::thread::sleep(Duration::from_millis(600));
    let (ok, stats) = ctl(&sock, &["stats", "--json"]);
    assert!(ok, "{stats}");
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        v["tx_refused_tagged"],
        json!({"access": 0, "core": 3}),
        "{v}"
    );
    assert_eq!(v["tx_refused"], 3, "{v}");

    // A tagged frame longer than its tags allow for is over the MTU, not refused for its
    // tags: with acc0 (and the sender) at 1600 and core0 back at 1500, a 1560-byte
    // 802.1ad frame comes in but cannot leave, and counts in tx_refused alone.
    set_mtu(&wire, 1500);
    for (ns, dev) in [(&wire.app, "acc0"), (&wire.left, "sub0")] {
        ns.exec(&["ip", "link", "set", "dev", dev, "mtu", "1600"]);
    }
    // The worker reads the MTUs again at its next look at the links (every 250 ms).
    std::thread::sleep(Duration::from_millis(600));
    let macs = (wire.left.mac("sub0"), wire.right.mac("net0"));
    let long = tcp_syn_frame(
        macs,
        &[(0x88a8, 200)],
        [10, 0, 0, 200],
        [10, 0, 0, 1],
        587,
        1502,
    );
    assert_eq!(long.len(), 1560);
    assert_eq!(
        cross(&wire, &[("long 802.1ad", long)], &["long 802.1ad"]),
        [("long 802.1ad", false)]
    );
    std::thread::sleep(Duration::from_millis(600));
    let (ok, stats) = ctl(&sock, &["stats", "--json"]);
    assert!(ok, "{stats}");
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v["tx_refused"], 4, "{v}");
    assert_eq!(
        v["tx_refused_tagged"],
        json!({"access": 0, "core": 3}),
        "{v}"
    );

    let out = appliance.terminate();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    // Told once, naming the interface and the fix.
    assert_eq!(
        stderr
            .matches("the kernel refused to send full-size VLAN-tagged frames")
            .count(),
        1,
        "{stderr}"
    );
    for want in [
        "frames out of core0 (EMSGSIZE)",
        "raise the MTU of both interfaces by 4 per tag",
        "`ip link set dev core0 mtu 1508` and the same for acc0",
    ] {
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
    }
    assert!(
        stdout.contains(
            "tx refused by the kernel as VLAN-tagged frames over the MTU: 3 (acc0 0, core0 3)"
        ),
        "{stdout}"
    );
    let (rx, tx, dropped) = final_counters(&stdout, "access→core");
    assert_eq!(rx, tx + dropped, "{stdout}");
    println!("{stderr}{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
