//! Why the kernel refused a privileged step, said so an operator can act on it. "Run as
//! root" is no help to a process that already is root but runs in a sandbox: systemd's
//! `CapabilityBoundingSet=` and `RestrictAddressFamilies=`, or a container, take
//! capabilities and address families away from root too. So the hints here look at what
//! the process actually holds (`/proc/self/status`: effective user, effective
//! capabilities, seccomp mode) and name what is missing and where it was cut.
//!
//! Invariants: only reads `/proc/self/status`; a process whose status cannot be read gets
//! the plain advice; nothing here fails or panics.

/// A capability the kernel checks, with the bits any one of which satisfies it (CAP_BPF
/// is also satisfied by CAP_SYS_ADMIN, the only way on kernels before 5.8).
#[derive(Clone, Copy, Debug)]
pub struct Need {
    /// How the capability is called (`CAP_BPF`).
    pub name: &'static str,
    /// Capability numbers (<linux/capability.h>), any one of which will do.
    pub bits: &'static [u32],
}

/// CAP_NET_ADMIN: interface settings, XDP attachment, promiscuous mode.
pub const CAP_NET_ADMIN: Need = Need {
    name: "CAP_NET_ADMIN",
    bits: &[12],
};
/// CAP_NET_RAW: packet and AF_XDP sockets.
pub const CAP_NET_RAW: Need = Need {
    name: "CAP_NET_RAW",
    bits: &[13],
};
/// CAP_BPF (or, before Linux 5.8, CAP_SYS_ADMIN): BPF maps and programs.
pub const CAP_BPF: Need = Need {
    name: "CAP_BPF",
    bits: &[39, 21],
};

/// What the process holds, from `/proc/self/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privileges {
    /// Effective user id 0.
    pub root: bool,
    /// Effective capability set (`CapEff`).
    pub effective: u64,
    /// A seccomp filter is on (`Seccomp: 2`): systemd's `RestrictAddressFamilies=` and
    /// `SystemCallFilter=` and container runtimes install one.
    pub seccomp: bool,
}

impl Privileges {
    /// This process's, or `None` when `/proc/self/status` cannot be read or parsed.
    pub fn current() -> Option<Privileges> {
        Privileges::parse(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    /// Parses a `/proc/PID/status` text.
    pub fn parse(status: &str) -> Option<Privileges> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        // Uid: real, effective, saved, filesystem.
        let euid: u32 = field("Uid")?.split_whitespace().nth(1)?.parse().ok()?;
        let effective = u64::from_str_radix(field("CapEff")?, 16).ok()?;
        let seccomp = field("Seccomp").is_some_and(|m| m == "2");
        Some(Privileges {
            root: euid == 0,
            effective,
            seccomp,
        })
    }

    /// Whether `need` is met.
    pub fn has(&self, need: &Need) -> bool {
        need.bits
            .iter()
            .any(|&b| b < 64 && self.effective & (1u64 << b) != 0)
    }
}

fn names(needs: &[Need]) -> String {
    needs.iter().map(|n| n.name).collect::<Vec<_>>().join(", ")
}

/// Advice after EPERM/EACCES on a step that needs `needs`, for a process holding `p`
/// (`None`: unknown). `dropin` names what gives the systemd unit those capabilities (e.g.
/// "scripts/op25b.service.d/af_xdp.conf"), or is empty when the unit has them already.
/// Starts with "; ", to follow the kernel's error.
pub fn permission_hint(p: Option<Privileges>, needs: &[Need], dropin: &str) -> String {
    let unit = if dropin.is_empty() {
        "CapabilityBoundingSet=/AmbientCapabilities=".to_string()
    } else {
        format!("CapabilityBoundingSet=/AmbientCapabilities= (install {dropin})")
    };
    let Some(p) = p else {
        return format!("; run op25b as root (or with {})", names(needs));
    };
    let missing: Vec<Need> = needs.iter().copied().filter(|n| !p.has(n)).collect();
    if missing.is_empty() {
        // Root, or a user given the capabilities (`setcap`, AmbientCapabilities= with User=).
        return format!(
            "; op25b runs as {} with {}, so something else refuses it: a seccomp filter (systemd SystemCallFilter=, a container's profile){} or a security module (SELinux, AppArmor, kernel lockdown)",
            if p.root { "root" } else { "a user" },
            names(needs),
            if p.seccomp { ", which is on here," } else { "" }
        );
    }
    let bpf_before_5_8 = if missing.iter().any(|n| n.name == "CAP_BPF") {
        "; kernels before 5.8 have no CAP_BPF and need CAP_SYS_ADMIN instead"
    } else {
        ""
    };
    if !p.root {
        return format!(
            "; run op25b as root (or give it {}; it runs as a user without {}: under systemd, {unit}; with `setcap` on the binary otherwise){bpf_before_5_8}",
            names(&missing),
            if missing.len() == 1 { "it" } else { "them" }
        );
    }
    format!(
        "; op25b runs as root but without {}: a sandbox cut its capabilities — under systemd, {unit}; in a container, its capability set (e.g. `--cap-add`){bpf_before_5_8}",
        names(&missing),
    )
}

/// Advice after EAFNOSUPPORT from `socket(family, …)`: the kernel lacks the family
/// (`config`: its kernel option), or a sandbox forbids it. Starts with "; ".
pub fn family_hint(p: Option<Privileges>, family: &str, config: &str, dropin: &str) -> String {
    let unit = if dropin.is_empty() {
        format!("RestrictAddressFamilies= must list {family}")
    } else {
        format!("RestrictAddressFamilies= must list {family} (install {dropin})")
    };
    let sandbox = format!(
        "a sandbox forbids the address family: under systemd, {unit}; in a container, its seccomp profile must allow it"
    );
    if p.is_some_and(|p| p.seccomp) {
        format!("; {family} sockets are refused and a seccomp filter is on: most likely {sandbox}; otherwise this kernel has no {family} ({config})")
    } else {
        format!(
            "; {family} sockets are refused: this kernel has no {family} ({config}), or {sandbox}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\top25b\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t0000000000003000\nCapEff:\t0000000000003000\nCapBnd:\t0000000000003000\nSeccomp:\t2\n";

    #[test]
    fn status_is_read_and_capabilities_named() {
        let p = Privileges::parse(STATUS).unwrap();
        assert_eq!(
            p,
            Privileges {
                root: true,
                effective: 0x3000,
                seccomp: true
            }
        );
        assert!(p.has(&CAP_NET_ADMIN) && p.has(&CAP_NET_RAW) && !p.has(&CAP_BPF));
        // CAP_SYS_ADMIN stands in for CAP_BPF.
        let old = Privileges {
            effective: 1 << 21,
            ..p
        };
        assert!(old.has(&CAP_BPF));
        assert!(Privileges::parse("Name:\tx\n").is_none());
        assert!(Privileges::current().is_some());
    }

    #[test]
    fn root_in_a_sandbox_is_told_about_the_sandbox() {
        let needs = [CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF];
        let p = Privileges::parse(STATUS);
        assert_eq!(
            permission_hint(p, &needs, "scripts/op25b.service.d/af_xdp.conf"),
            "; op25b runs as root but without CAP_BPF: a sandbox cut its capabilities — under \
             systemd, CapabilityBoundingSet=/AmbientCapabilities= (install \
             scripts/op25b.service.d/af_xdp.conf); in a container, its capability set (e.g. \
             `--cap-add`); kernels before 5.8 have no CAP_BPF and need CAP_SYS_ADMIN instead"
        );
        let all = p.map(|p| Privileges {
            effective: u64::MAX,
            ..p
        });
        assert!(permission_hint(all, &needs, "").contains("so something else refuses it"));
        // A user is told only what it lacks, and a user holding every capability needed
        // is not told to become root.
        let user = p.map(|p| Privileges { root: false, ..p });
        assert_eq!(
            permission_hint(user, &needs, ""),
            "; run op25b as root (or give it CAP_BPF; it runs as a user without it: under \
             systemd, CapabilityBoundingSet=/AmbientCapabilities=; with `setcap` on the binary \
             otherwise); kernels before 5.8 have no CAP_BPF and need CAP_SYS_ADMIN instead"
        );
        let bare = user.map(|p| Privileges { effective: 0, ..p });
        assert!(permission_hint(bare, &needs, "").starts_with(
            "; run op25b as root (or give it CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF; it runs as a \
             user without them: under systemd"
        ));
        let capable = user.map(|p| Privileges {
            effective: u64::MAX,
            ..p
        });
        let h = permission_hint(capable, &needs, "");
        assert!(
            h.starts_with("; op25b runs as a user with CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, so something else refuses it"),
            "{h}"
        );
        assert_eq!(
            permission_hint(None, &needs, ""),
            "; run op25b as root (or with CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF)"
        );
        let h = family_hint(
            p,
            "AF_XDP",
            "CONFIG_XDP_SOCKETS",
            "scripts/op25b.service.d/af_xdp.conf",
        );
        assert!(
            h.contains("a seccomp filter is on")
                && h.contains("RestrictAddressFamilies= must list AF_XDP (install scripts/op25b.service.d/af_xdp.conf)")
                && h.contains("CONFIG_XDP_SOCKETS"),
            "{h}"
        );
    }
}
