//! Exemption tickets across restarts (`[control] tickets = FILE`): tickets added with
//! `op25b ctl exempt add` are in the file (0600) at once, one that expires leaves it, a
//! clean stop says how many are kept, and the next start puts them in force again with
//! their expiry. A file with an unreadable line, or with a ticket the edited config now
//! refuses, never keeps the appliance from starting: the problem is named, a copy of the
//! file is kept, and what can be used is used (and saved at once). A save that fails
//! after a delete removes the old list (it would bring the deleted ticket back) and is
//! tried again; one that fails after an add (a full disk) keeps the old list, so a kill
//! and a restart lose only the new ticket; a file that cannot be written is reported by
//! the answers, `status` and the shutdown.
//!
//! Needs root and iproute2 (the appliance runs on a veth wire); says SKIPPED otherwise.

use op25b_testbed::{available_or_skipped, ctl, run_appliance, wait_for_control, Reaped, Wire};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn config(dynamic: &str, tickets: &str) -> String {
    format!(
        r#"
[outbound]
dynamic = [{dynamic}]
[dataplane]
backend = "af_packet"
access = "acc0"
core = "core0"
[control]
socket = "ctl.sock"
metrics = "127.0.0.1:0"
tickets = "{tickets}"
"#
    )
}

/// The appliance's metrics page, from the address `status` says it bound (the config asks
/// for any free port), fetched inside its namespace.
fn metrics(ns: &op25b_testbed::Netns, sock: &Path) -> String {
    let (_, status) = ctl(sock, &["status"]);
    let url = status
        .lines()
        .find_map(|l| l.strip_prefix("metrics: "))
        .filter(|u| u.starts_with("http://127.0.0.1:") && !u.contains(":0/"))
        .unwrap_or_else(|| panic!("no bound metrics address in {status}"))
        .to_string();
    let out = ns.exec(&[
        "python3",
        "-c",
        &format!("import urllib.request; print(urllib.request.urlopen({url:?}, timeout=5).read().decode())"),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops the appliance cleanly; returns its stderr.
fn stop(mut appliance: Reaped) -> String {
    let out = appliance.terminate();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    err
}

/// The ticket lines of `exempt list`, sorted.
fn listed(sock: &Path) -> Vec<String> {
    let (ok, text) = ctl(sock, &["exempt", "list"]);
    assert!(ok, "{text}");
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn tickets_survive_a_restart_and_a_bad_tickets_file_never_stops_the_start() {
    if !available_or_skipped() {
        return;
    }
    let dir = op25b_dataplane::testkit::scratch_dir("live-tickets");
    let cfg = dir.join("op25b.toml");
    let (sock, file) = (dir.join("ctl.sock"), dir.join("state/tickets"));
    std::fs::write(&cfg, config("\"10.9.0.0/16\"", "state/tickets")).unwrap();
    let wire = Wire::new("tk", "tkl0", "tkr0", false);

    // First run: three tickets, one of which expires while it runs.
    let mut appliance = run_appliance(&wire.app, &cfg);
    wait_for_control(&sock);
    // A second appliance on the same tickets file would overwrite this one's tickets: it
    // is refused before it opens anything, naming the one that holds the file.
    let out = run_appliance(&wire.app, &cfg)
        .take()
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && err.contains(&format!(
                "[control] tickets {}: already in use by process {} (",
                file.display(),
                appliance.child().id()
            ))
            && err.contains(&format!(
                "(it holds {}): two appliances saving to one tickets file",
                dir.join("state/tickets.lock").display()
            )),
        "{err}"
    );
    assert!(ctl(&sock, &["status"]).0, "the first appliance serves on");
    let (_, status) = ctl(&sock, &["status"]);
    assert!(
        status.contains(&format!(
            "exemption tickets: 0 (kept in {} across restarts)",
            file.display()
        )),
        "{status}"
    );
    for add in [
        &["exempt", "add", "10.9.1.1"][..],
        &["exempt", "add", "10.9.2.0/24", "--ttl", "1h"],
        &["exempt", "add", "10.9.3.3", "--ttl", "2s"],
    ] {
        let (ok, text) = ctl(&sock, add);
        assert!(ok && !text.contains("warning"), "{text}");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("10.9.1.1/32 never\n")
            && text.contains("10.9.2.0/24 ")
            && text.contains("10.9.3.3/32 "),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&file).unwrap().contains("10.9.3.3") {
        assert!(
            Instant::now() < deadline,
            "the expired ticket stayed in the file"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Adding a ticket again replaces it, and says which expiry it replaced.
    let (ok, text) = ctl(&sock, &["exempt", "add", "10.9.4.4", "--ttl", "1h"]);
    assert!(ok && text.contains("(until 20"), "{text}");
    let (ok, text) = ctl(&sock, &["exempt", "add", "10.9.4.4"]);
    assert!(
        ok && text.contains("(until removed) (replacing its ticket that ran until 20"),
        "{text}"
    );
    assert!(ctl(&sock, &["exempt", "del", "10.9.4.4"]).0);
    let err = stop(appliance);
    assert!(
        err.contains(&format!(
            "2 exemption ticket(s) kept in {} for the next start",
            file.display()
        )) && !err.contains("dropped at shutdown"),
        "{err}"
    );
    // The audit trail: every add, replacement, removal and expiry, with its prefix.
    for line in [
        "op25b: exemption ticket added: 10.9.1.1/32 until removed; policy generation",
        "op25b: exemption ticket added: 10.9.2.0/24 until 20",
        "op25b: exemption ticket(s) expired: 10.9.3.3/32; policy generation",
        "op25b: exemption ticket added: 10.9.4.4/32 until removed (replacing its ticket that ran until 20",
        "op25b: exemption ticket removed: 10.9.4.4/32; policy generation",
    ] {
        assert!(err.contains(line), "{line:?} not in {err}");
    }

    // Second run: both are back, the timed one with what is left of its hour.
    let appliance = run_appliance(&wire.app, &cfg);
    wait_for_control(&sock);
    let list = listed(&sock);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0], "10.9.1.1/32 until removed");
    let left: u64 = list[1]
        .strip_prefix("10.9.2.0/24 expires in ")
        .and_then(|r| r.strip_suffix(" s"))
        .unwrap_or_else(|| panic!("{list:?}"))
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&left), "{list:?}");
    let (_, why) = ctl(&sock, &["explain", "10.9.1.1", "203.0.113.9", "25"]);
    assert!(
        why.contains("verdict: pass (source_exempt) under policy generation 1")
            && why.contains("10.9.1.1/32 (exemption ticket)"),
        "{why}"
    );
    let err = stop(appliance);
    assert!(
        err.contains(&format!(
            "2 exemption ticket(s) from {} in force",
            file.display()
        )),
        "{err}"
    );

    // A hand edit that broke a line: the readable tickets still apply, the line is named,
    // and a copy of the file is kept before the readable tickets are saved over it.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text += "10.9.8.8/32 1000000000\n";
    text += "10.9.4.4 tomorrow\n";
    std::fs::write(&file, &text).unwrap();
    let appliance = run_appliance(&wire.app, &cfg);
    wait_for_control(&sock);
    assert_eq!(listed(&sock).len(), 2);
    let refused = dir.join("state/tickets.refused");
    assert_eq!(std::fs::read_to_string(&refused).unwrap(), text);
    let rewritten = std::fs::read_to_string(&file).unwrap();
    assert!(
        !rewritten.contains("10.9.4.4")
            && !rewritten.contains("10.9.8.8")
            && rewritten.contains("10.9.1.1/32 never"),
        "{rewritten}"
    );
    let err = stop(appliance);
    let line = text.lines().count();
    assert!(
        err.contains(&format!(
            "exemption tickets: {}:{line}: 10.9.4.4 tomorrow: \"tomorrow\": an expiry is Unix seconds or `never`",
            file.display()
        )) && err.contains(&format!(
            "1 line(s) of {} cannot be read; its 2 readable ticket(s) are kept; {} as it was is kept as {}",
            file.display(),
            file.display(),
            refused.display()
        )) && err.contains(&format!(
            "op25b: 1 exemption ticket(s) in {} expired while op25b was stopped: 10.9.8.8/32 (ended 2001-09-09T01:46:40Z)",
            file.display()
        )),
        "{err}"
    );

    // The config now lists one ticket's prefix as a dynamic pool: that ticket no longer
    // fits, so op25b starts without it (naming it, keeping a copy of the file) and with the
    // other one.
    std::fs::write(
        &cfg,
        config("\"10.9.0.0/16\", \"10.9.2.0/24\"", "state/tickets"),
    )
    .unwrap();
    let appliance = run_appliance(&wire.app, &cfg);
    wait_for_control(&sock);
    assert_eq!(listed(&sock), vec!["10.9.1.1/32 until removed".to_string()]);
    let rewritten = std::fs::read_to_string(&file).unwrap();
    assert!(!rewritten.contains("10.9.2.0/24"), "{rewritten}");
    let err = stop(appliance);
    assert!(
        err.contains(
            "1 saved exemption ticket(s) do not fit this config and are not applied (add those"
        ) && err.contains(
            "exemption ticket 10.9.2.0/24 not applied: 10.9.2.0/24 is now listed in dynamic"
        ) && err.contains(&format!(
            "as it was is kept as {}",
            dir.join("state/tickets.refused.1").display()
        )) && err.contains(&format!(
            "1 exemption ticket(s) from {} in force",
            file.display()
        )),
        "{err}"
    );
    // A save that fails over an existing file (its temporary name is taken by a
    // directory): the old file must not bring the deleted ticket back, so it is removed,
    // and the save is tried again until it works.
    let mut appliance = run_appliance(&wire.app, &cfg);
    wait_for_control(&sock);
    assert!(ctl(&sock, &["exempt", "add", "10.9.6.6"]).0);
    // (`ip netns exec` execs the appliance: the child's pid is the appliance's.)
    let blocker = dir.join(format!("state/.tickets.{}.tmp", appliance.child().id()));
    std::fs::create_dir(&blocker).unwrap();
    let (ok, text) = ctl(&sock, &["exempt", "del", "10.9.6.6"]);
    assert!(
        ok && text.contains("\nwarning: exemption tickets not saved to ")
            && text.contains("was removed so no older list comes back"),
        "{text}"
    );
    assert!(!file.exists(), "the stale list is still there");
    // Alerting can see it.
    let page = metrics(&wire.app, &sock);
    assert!(
        page.contains("\nop25b_exemption_tickets_unsaved 1\n"),
        "{page}"
    );
    std::fs::remove_dir(&blocker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !file.exists() {
        assert!(Instant::now() < deadline, "the save was not tried again");
        std::thread::sleep(Duration::from_millis(200));
    }
    let page = metrics(&wire.app, &sock);
    assert!(
        page.contains("\nop25b_exemption_tickets_unsaved 0\n"),
        "{page}"
    );
    // A ticket for what the config exempts already says it changes nothing.
    std::fs::write(
        &cfg,
        config(
            "\"10.9.0.0/16\"]\nexempt = [\"10.9.7.0/24\"",
            "state/tickets",
        ),
    )
    .unwrap();
    assert!(ctl(&sock, &["reload"]).0);
    let (ok, text) = ctl(&sock, &["exempt", "add", "10.9.7.0/24", "--ttl", "1m"]);
    assert!(
        ok && text.contains("note: 10.9.7.0/24 is already exempt in the config (")
            && text.contains("op25b.toml:4); the ticket changes nothing"),
        "{text}"
    );
    assert!(ctl(&sock, &["exempt", "del", "10.9.7.0/24"]).0);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("10.9.1.1/32 never") && !saved.contains("10.9.6.6"),
        "{saved}"
    );
    let err = stop(appliance);
    assert!(
        err.contains(&format!(
            "exemption tickets saved to {} again",
            file.display()
        )),
        "{err}"
    );

    // A tickets file that cannot even be locked or read (its directory would be a regular
    // file):
    // nothing is written there this run, the ticket still applies, and the answer, status
    // and shutdown say it is not kept.
    std::fs::write(&cfg, config("\"10.9.0.0/16\"", "op25b.toml/tickets")).unwrap();
    let appliance = run_appliance(&wire.app, &cfg);
    wait_for_control(&sock);
    let (ok, text) = ctl(&sock, &["exempt", "add", "10.9.5.5"]);
    assert!(
        ok && text.contains("10.9.5.5/32 exempted from outbound blocking")
            && text.contains("\nwarning: cannot use the exemption tickets in ")
            && text.contains(
                "the file is not written this run (tickets added now will not survive a restart)"
            ),
        "{text}"
    );
    let (_, status) = ctl(&sock, &["status"]);
    assert!(
        status.contains("exemption tickets: 1 (NOT kept: cannot use the exemption tickets in"),
        "{status}"
    );
    let err = stop(appliance);
    assert!(
        err.contains("exemption ticket 10.9.5.5/32 dropped at shutdown"),
        "{err}"
    );
    println!(
        "tickets kept across 3 restarts; a run whose tickets file cannot be written: {}",
        err.lines()
            .filter(|l| l.contains("ticket"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tmpfs mounted at a folder for a test, unmounted when dropped (a failing test leaves
/// no mount behind).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) at `at`, which must exist.
    fn mount(at: &Path, size: &str) -> Tmpfs {
        op25b_testbed::run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            at.to_str().unwrap(),
        ]);
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `dir` with a file of its own until nothing more fits.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    while f.write_all(&[0u8; 512]).and_then(|()| f.sync_all()).is_ok() {}
}

#[test]
fn a_full_disk_loses_at_most_the_new_ticket_even_after_a_kill() {
    if !available_or_skipped() {
        return;
    }
    let dir = op25b_dataplane::testkit::scratch_dir("live-tickets-full");
    let cfg = dir.join("op25b.toml");
    let (sock, state) = (dir.join("ctl.sock"), dir.join("state"));
    let file = state.join("tickets");
    std::fs::create_dir(&state).unwrap();
    let _tmpfs = Tmpfs::mount(&state, "8k");
    std::fs::write(&cfg, config("\"10.9.0.0/16\"", "state/tickets")).unwrap();
    let wire = Wire::new("tf", "tfl0", "tfr0", false);

    let mut appliance = run_appliance(&wire.app, &cfg);
    wait_for_control(&sock);
    for add in [
        &["exempt", "add", "10.9.1.1"][..],
        &["exempt", "add", "10.9.2.0/24", "--ttl", "1h"],
        &["exempt", "add", "10.9.3.3", "--ttl", "1h"],
    ] {
        let (ok, text) = ctl(&sock, add);
        assert!(ok && !text.contains("warning"), "{text}");
    }
    fill(&state);
    // The new ticket is in force, but cannot be saved: the list saved before stays, and
    // the answer says the new ticket is what a restart would lose.
    let (ok, text) = ctl(&sock, &["exempt", "add", "10.9.7.7", "--ttl", "2h"]);
    assert!(
        ok && text.contains("10.9.7.7/32 exempted from outbound blocking")
            && text.contains(&format!(
                "\nwarning: exemption tickets not saved to {}: No space left on device",
                file.display()
            ))
            && text.contains(
                "keeps the list saved before, which grants nothing beyond what is in force; not saved, so a restart now would start without: 10.9.7.7/32 until 20"
            )
            && !text.contains("was removed"),
        "{text}"
    );
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("10.9.1.1/32 never") && !saved.contains("10.9.7.7"),
        "{saved}"
    );
    // Killed outright, then started again on the still full disk: the three older
    // tickets are in force, the one that could not be saved is not.
    let mut child = appliance.take();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keeps the list saved before") && !err.contains("was removed"),
        "{err}"
    );
    let appliance = run_appliance(&wire.app, &cfg);
    wait_for_control(&sock);
    let list = listed(&sock);
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list[0], "10.9.1.1/32 until removed");
    assert!(
        list[1].starts_with("10.9.2.0/24 expires in ")
            && list[2].starts_with("10.9.3.3/32 expires in "),
        "{list:?}"
    );
    let err = stop(appliance);
    assert!(
        err.contains(&format!(
            "3 exemption ticket(s) kept in {} for the next start",
            file.display()
        )),
        "{err}"
    );
    drop(_tmpfs);
    let _ = std::fs::remove_dir_all(&dir);
}
