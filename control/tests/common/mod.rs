//! Helpers shared by the replay integration tests: writing pcap/pcapng files, running the
//! `op25b` binary, reading captures back.

#![allow(dead_code)]

use op25b_dataplane::port::pcap::{CaptureReader, Next, PcapWriter};
use op25b_dataplane::port::Burst;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = op25b_dataplane::testkit::scratch_dir(&format!("test-{name}"));
    d
}

/// Writes frames as a microsecond (or nanosecond) pcap; timestamps 1 ms apart.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>], nanos: bool) {
    let mut w = PcapWriter::new(Vec::new(), nanos).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(1_700_000_000_000_000_000 + i as u64 * 1_000_123, f)
            .unwrap();
    }
    std::fs::write(path, w.finish().unwrap()).unwrap();
}

/// A pcapng block: type, body, padded, with both length fields.
pub fn ng_block(be: bool, btype: u32, body: &[u8]) -> Vec<u8> {
    let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&u32b(btype));
    b.extend_from_slice(&u32b(len));
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&u32b(len));
    b
}

/// Section header block.
pub fn ng_shb(be: bool) -> Vec<u8> {
    let mut body = Vec::new();
    if be {
        body.extend_from_slice(&0x1A2B_3C4Du32.to_be_bytes());
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
    } else {
        body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
    }
    body.extend_from_slice(&[0xff; 8]); // section length unknown
    ng_block(be, 0x0A0D_0D0A, &body)
}

/// Interface description block with this link type.
pub fn ng_idb(be: bool, linktype: u16) -> Vec<u8> {
    let mut body = Vec::new();
    if be {
        body.extend_from_slice(&linktype.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&65535u32.to_be_bytes());
    } else {
        body.extend_from_slice(&linktype.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&65535u32.to_le_bytes());
    }
    ng_block(be, 1, &body)
}

/// Interface description block for Ethernet with these options (code, value), each
/// padded, then the end of options.
pub fn ng_idb_with(be: bool, options: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut body = Vec::new();
    body.extend_from_slice(&u16b(1));
    body.extend_from_slice(&u16b(0));
    body.extend_from_slice(&if be {
        65535u32.to_be_bytes()
    } else {
        65535u32.to_le_bytes()
    });
    for (code, value) in options {
        body.extend_from_slice(&u16b(*code));
        body.extend_from_slice(&u16b(value.len() as u16));
        body.extend_from_slice(value);
        body.resize(body.len().div_ceil(4) * 4, 0);
    }
    body.extend_from_slice(&[0, 0, 0, 0]);
    ng_block(be, 1, &body)
}

/// Enhanced packet block on interface `iface`, with a comment option.
pub fn ng_epb(be: bool, iface: u32, ts: u64, frame: &[u8]) -> Vec<u8> {
    let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut body = Vec::new();
    body.extend_from_slice(&u32b(iface));
    body.extend_from_slice(&u32b((ts >> 32) as u32));
    body.extend_from_slice(&u32b(ts as u32));
    body.extend_from_slice(&u32b(frame.len() as u32));
    body.extend_from_slice(&u32b(frame.len() as u32));
    body.extend_from_slice(frame);
    body.resize(body.len().div_ceil(4) * 4, 0);
    // opt_comment "hi", then opt_endofopt
    body.extend_from_slice(&u16b(1));
    body.extend_from_slice(&u16b(2));
    body.extend_from_slice(b"hi\0\0");
    body.extend_from_slice(&[0, 0, 0, 0]);
    ng_block(be, 6, &body)
}

/// Simple packet block.
pub fn ng_spb(be: bool, frame: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&if be {
        (frame.len() as u32).to_be_bytes()
    } else {
        (frame.len() as u32).to_le_bytes()
    });
    body.extend_from_slice(frame);
    ng_block(be, 3, &body)
}

/// Path of the built `op25b` binary.
pub fn op25b() -> Command {
    Command::new(env!("CARGO_BIN_EXE_op25b"))
}

/// Runs `op25b replay` with a report; returns the process output.
pub fn replay(config: &Path, input: &Path, dir: &Path, extra: &[&str]) -> Output {
    op25b()
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg("--input")
        .arg(input)
        .arg("--pass-out")
        .arg(dir.join("pass.out"))
        .arg("--drop-out")
        .arg(dir.join("drop.out"))
        .arg("--report")
        .arg(dir.join("report.json"))
        .args(extra)
        .output()
        .unwrap()
}

/// The report a replay wrote into `dir`.
pub fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Every record of a capture, as raw record bytes, plus the bytes of the header and each
/// non-packet block in file order (`None` marks where a packet record stood).
pub fn records(path: &Path) -> (Vec<Vec<u8>>, Vec<Option<Vec<u8>>>) {
    let data = std::fs::read(path).unwrap();
    let mut r = CaptureReader::open(&data[..]).unwrap();
    let mut layout = vec![Some(r.header().to_vec())];
    let mut recs = Vec::new();
    let mut b = Burst::new(1);
    loop {
        b.clear();
        match r.next_into(&mut b).unwrap() {
            Next::Frame => {
                recs.push(b.record(0).to_vec());
                layout.push(None);
            }
            Next::Meta => layout.push(Some(r.meta().to_vec())),
            Next::End => break,
        }
    }
    (recs, layout)
}

/// Checks that `pass` and `drop` partition `input`'s records, in order, bit-exact; returns
/// the verdict sequence (true = dropped).
pub fn check_partition(input: &[Vec<u8>], pass: &[Vec<u8>], drop: &[Vec<u8>]) -> Vec<bool> {
    assert_eq!(input.len(), pass.len() + drop.len(), "rx != pass + drop");
    let (mut p, mut d) = (0, 0);
    let mut out = Vec::new();
    for (i, rec) in input.iter().enumerate() {
        if p < pass.len() && &pass[p] == rec {
            p += 1;
            out.push(false);
        } else if d < drop.len() && &drop[d] == rec {
            d += 1;
            out.push(true);
        } else {
            panic!("input record {i} is not the next record of either output");
        }
    }
    out
}
