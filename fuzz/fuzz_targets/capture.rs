//! Fuzz target: any byte string as a capture file through the pcap/pcapng port and the
//! worker. Invariants checked: no panic, and every frame read is emitted exactly once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use op25b_dataplane::policy::Policy;
use op25b_dataplane::port::pcap::{CaptureReader, PcapPort};
use op25b_dataplane::worker::{PolicyHandle, Worker};

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = CaptureReader::open(data) else {
        return;
    };
    let mut port = PcapPort::new(reader, Vec::new(), Vec::new()).unwrap();
    let handle = PolicyHandle::from_pointee(Policy::empty());
    let mut w = Worker::new(8);
    let _ = w.run_to_end(&handle, &mut port);
    let c = w.counters();
    assert_eq!(c.rx, c.tx + c.dropped);
    assert_eq!(c.rx, port.reader().frames_read());
});
