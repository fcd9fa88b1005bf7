//! The bundled sample capture is exactly what `samples/regenerate.sh` makes from the bundled
//! pools, so nobody has to trust a binary blob in the repository.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn bundled_sample_is_reproducible() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = std::fs::read_to_string(root.join("samples/regenerate.sh")).unwrap();
    // Run the same arguments the script passes, with the test build of the binary.
    let args: Vec<String> = script
        .split("synth")
        .nth(1)
        .unwrap()
        .split("--out")
        .next()
        .unwrap()
        .split_whitespace()
        .filter(|w| *w != "\\")
        .map(String::from)
        .collect();
    let out = std::env::temp_dir().join(format!("op25b-sample-{}.pcap", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_op25b-bench"))
        .current_dir(&root)
        .arg("synth")
        .args(&args)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let made = std::fs::read(&out).unwrap();
    let committed = std::fs::read(root.join("samples/sample.pcap")).unwrap();
    assert!(
        made == committed,
        "samples/sample.pcap differs from what samples/regenerate.sh makes ({} vs {} bytes)",
        committed.len(),
        made.len()
    );
    std::fs::remove_file(out).unwrap();
}
