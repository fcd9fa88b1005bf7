//! Build script: with the `dpdk` feature, finds DPDK through `pkg-config libdpdk`, compiles
//! the C shim (`src/port/dpdk/shim.c`) with the same flags, and links the DPDK libraries.
//! Without the feature it does nothing, so the default build needs no system library.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::process::Command;

    /// Runs `pkg-config ARGS libdpdk` and returns its words, or stops the build saying why.
    fn pkg_config(args: &[&str]) -> Vec<String> {
        let out = Command::new("pkg-config")
            .args(args)
            .arg("libdpdk")
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            Ok(o) => fail(&format!(
                "`pkg-config {} libdpdk` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => fail(&format!("cannot run pkg-config: {e}")),
        }
    }

    fn fail(why: &str) -> ! {
        eprintln!(
            "error: the `dpdk` feature needs DPDK 22.11 development files: {why}\n\
         install them with `apt-get install libdpdk-dev pkg-config` (scripts/setup.sh does), \
         or build without the `dpdk` feature"
        );
        std::process::exit(1);
    }

    pub fn build() {
        println!("cargo:rerun-if-changed=src/port/dpdk/shim.c");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
        let version = pkg_config(&["--modversion"]).join("");
        if !version.starts_with("22.11") {
            fail(&format!(
                "found libdpdk {version}; the hand-written declarations are for 22.11"
            ));
        }
        let mut shim = cc::Build::new();
        shim.file("src/port/dpdk/shim.c")
            .opt_level(3)
            .warnings(true);
        let cflags = pkg_config(&["--cflags"]);
        let mut words = cflags.iter();
        while let Some(w) = words.next() {
            if w == "-include" {
                // `-include rte_config.h` is two words that must stay together.
                if let Some(file) = words.next() {
                    shim.flag("-include").flag(file);
                }
            } else if let Some(dir) = w.strip_prefix("-I") {
                shim.include(dir);
            } else {
                shim.flag(w);
            }
        }
        shim.compile("op25b_dpdk_shim");
        for w in pkg_config(&["--libs"]) {
            if let Some(dir) = w.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            } else if let Some(lib) = w.strip_prefix("-l") {
                println!("cargo:rustc-link-lib={lib}");
            }
            // Linker options such as -Wl,--as-needed are left to rustc's defaults.
        }
    }
}
