//! The Debian package (`cargo deb`, packaging/): what it holds, its unit
//! checked by `systemd-analyze`, and the installed bridge run the way the
//! unit runs it — against the installed configuration, and as a real
//! `Type=notify` service: READY=1 once `/readyz` is 200, watchdog pings,
//! STOPPING=1 on SIGTERM, under the kernel's memory-deny-write-execute
//! (what the unit's `MemoryDenyWriteExecute=yes` enforces).
//!
//! The package is built from the debug binary the test run already has
//! (`cargo deb --no-build --profile dev`), unpacked with `dpkg-deb -x` into
//! a temp dir: nothing is installed on the machine. `cargo-deb` must be
//! installed (scripts/test does it) unless `BRIDGE_TESTS_SKIP_PACKAGE=1`;
//! without `systemd-analyze` (Debian's `systemd` package) the unit checks
//! are skipped with a message.

mod support;

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{bridge_config, free_port, http, Broker, Proc, Simulator, Stack};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const UNIT: &str = "lib/systemd/system/genesys-kafka-bridge.service";
const TEMPLATE_UNIT: &str = "lib/systemd/system/genesys-kafka-bridge@.service";

/// The built package and where it is unpacked, once per test binary.
struct Package {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    root: PathBuf,
}

fn package() -> Option<&'static Package> {
    static PACKAGE: OnceLock<Option<Package>> = OnceLock::new();
    PACKAGE.get_or_init(build_package).as_ref()
}

fn build_package() -> Option<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_deb {
        if std::env::var_os("BRIDGE_TESTS_SKIP_PACKAGE").is_some_and(|v| v == "1") {
            eprintln!(
                "cargo-deb not installed; package tests skipped (BRIDGE_TESTS_SKIP_PACKAGE=1)"
            );
            return None;
        }
        panic!(
            "cargo-deb is not installed: `cargo install cargo-deb --locked` (scripts/test does), \
             or set BRIDGE_TESTS_SKIP_PACKAGE=1 to skip the package tests"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // The binary the test run built (target/debug): packaging it is enough
    // to check the package; a release build is what `cargo deb` alone makes.
    let out = Command::new(&cargo)
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--no-strip",
            "--fast",
        ])
        .arg("--manifest-path")
        .arg(Path::new(MANIFEST_DIR).join("Cargo.toml"))
        .arg("--output")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote a .deb");
    let root = dir.path().join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    Some(Package {
        _dir: dir,
        deb,
        root,
    })
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn package_holds_binary_unit_conffiles_and_root_only_secret_file() {
    let Some(pkg) = package() else { return };
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(&pkg.deb));
    // "-rw------- 0/0  487 2026-… ./etc/genesys-kafka-bridge/bridge.env"
    let entry = |path: &str| -> (String, String) {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"));
        let mut fields = line.split_whitespace();
        (
            fields.next().unwrap().to_owned(),
            fields.next().unwrap().to_owned(),
        )
    };
    assert_eq!(
        entry("usr/bin/genesys-kafka-bridge"),
        ("-rwxr-xr-x".into(), "0/0".into())
    );
    assert_eq!(entry(UNIT), ("-rw-r--r--".into(), "0/0".into()));
    // The templated unit of cluster members on one host.
    assert_eq!(entry(TEMPLATE_UNIT), ("-rw-r--r--".into(), "0/0".into()));
    assert_eq!(
        entry("etc/genesys-kafka-bridge/bridge.toml"),
        ("-rw-r--r--".into(), "0/0".into())
    );
    assert_eq!(
        entry("etc/genesys-kafka-bridge/bridge.env"),
        ("-rw-------".into(), "0/0".into()),
        "the secret file must be root-only"
    );

    let conffiles = run_ok(
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&pkg.deb)
            .arg("conffiles"),
    );
    let mut conffiles: Vec<&str> = conffiles.lines().collect();
    conffiles.sort();
    assert_eq!(
        conffiles,
        [
            "/etc/genesys-kafka-bridge/bridge.env",
            "/etc/genesys-kafka-bridge/bridge.toml"
        ]
    );

    let control = run_ok(Command::new("dpkg-deb").arg("-I").arg(&pkg.deb));
    assert!(control.contains("Depends: adduser"), "{control}");
    for script in ["postinst", "prerm", "postrm"] {
        assert!(control.contains(script), "no {script}:\n{control}");
    }

    let env =
        std::fs::read_to_string(pkg.root.join("etc/genesys-kafka-bridge/bridge.env")).unwrap();
    assert!(env.lines().any(|l| l == "GENESYS_CLIENT_SECRET="), "{env}");
}

#[test]
fn installed_config_is_the_example_with_the_state_dir_buffer() {
    let Some(pkg) = package() else { return };
    let installed =
        std::fs::read_to_string(pkg.root.join("etc/genesys-kafka-bridge/bridge.toml")).unwrap();
    let example =
        std::fs::read_to_string(Path::new(MANIFEST_DIR).join("config/example.toml")).unwrap();
    let body = |text: &str| text[text.find("[genesys]").unwrap()..].to_owned();
    assert_eq!(
        body(&installed),
        body(&example),
        "packaging/bridge.toml drifted from config/example.toml below its header"
    );
    assert!(installed.contains("path = \"/var/lib/genesys-kafka-bridge/buffer\""));
}

/// check-config on the installed files, as the unit's ExecStartPre runs it:
/// the environment file as shipped (empty secret) fails with 78 naming the
/// variable; with a secret it passes and never shows it.
#[test]
fn installed_check_config_with_the_environment_file() {
    let Some(pkg) = package() else { return };
    let bin = pkg.root.join("usr/bin/genesys-kafka-bridge");
    let config = pkg.root.join("etc/genesys-kafka-bridge/bridge.toml");
    let env_file =
        std::fs::read_to_string(pkg.root.join("etc/genesys-kafka-bridge/bridge.env")).unwrap();
    // systemd's EnvironmentFile= reading: KEY=value lines, '#' comments.
    let shipped: Vec<(String, String)> = env_file
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    assert_eq!(shipped, [("GENESYS_CLIENT_SECRET".into(), String::new())]);

    let check = |secret: &str| {
        let out = Command::new(&bin)
            .args(["check-config", "--config"])
            .arg(&config)
            .env_clear()
            .env("GENESYS_CLIENT_SECRET", secret)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, text) = check("");
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("GENESYS_CLIENT_SECRET"), "{text}");

    let secret = "installed-secret-value-789";
    let (code, text) = check(secret);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("valid"), "{text}");
    assert!(!text.contains(secret), "secret shown:\n{text}");
}

fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "systemd-analyze not found (Debian: apt-get install systemd); unit checks skipped"
        );
        return None;
    }
    Some("systemd-analyze")
}

/// The unit with its commands pointing at the unpacked binary, so that
/// `systemd-analyze` on this machine (no package installed) finds it.
fn unit_for_analysis(pkg: &Package, dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(pkg.root.join(UNIT)).unwrap();
    let bin = pkg.root.join("usr/bin/genesys-kafka-bridge");
    let unit = unit.replace("/usr/bin/genesys-kafka-bridge", bin.to_str().unwrap());
    let path = dir.join("genesys-kafka-bridge.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn unit_passes_systemd_analyze_verify_and_security() {
    let Some(pkg) = package() else { return };
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let unit = std::fs::read_to_string(pkg.root.join(UNIT)).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStartPre=/usr/bin/genesys-kafka-bridge check-config --config /etc/genesys-kafka-bridge/bridge.toml",
        "ExecStart=/usr/bin/genesys-kafka-bridge run --config /etc/genesys-kafka-bridge/bridge.toml",
        "EnvironmentFile=/etc/genesys-kafka-bridge/bridge.env",
        "User=genesys-kafka-bridge",
        "StateDirectory=genesys-kafka-bridge",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "WatchdogSec=60",
        "MemoryDenyWriteExecute=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line:?}");
    }
    // Stop timeout above what the bridge takes: sockets ≤10 s + drain ≤10 s.
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec")
        .parse()
        .unwrap();
    assert!(stop > 2 * 10 + 5, "TimeoutStopSec={stop}");

    let dir = tempfile::tempdir().unwrap();
    let path = unit_for_analysis(pkg, dir.path());
    verify(analyze, &path);

    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let line = said
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure level:\n{said}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    println!("systemd-analyze security --offline: {line}");
    let score: f64 = line
        .rsplit(": ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(score <= 2.0, "hardening weakened: {line}");

    // The cluster members' templated unit, as an instance: the same
    // checks, and its paths are the instance's own.
    let template = std::fs::read_to_string(pkg.root.join(TEMPLATE_UNIT)).unwrap();
    for line in [
        "ExecStart=/usr/bin/genesys-kafka-bridge run --config /etc/genesys-kafka-bridge/%i.toml",
        "EnvironmentFile=/etc/genesys-kafka-bridge/%i.env",
        "StateDirectory=genesys-kafka-bridge/%i",
        "ReadWritePaths=/var/lib/genesys-kafka-bridge/%i",
        "Type=notify",
        "MemoryDenyWriteExecute=yes",
    ] {
        assert!(
            template.lines().any(|l| l == line),
            "templated unit lacks {line:?}"
        );
    }
    let bin = pkg.root.join("usr/bin/genesys-kafka-bridge");
    std::fs::write(
        dir.path().join("genesys-kafka-bridge@.service"),
        template.replace("/usr/bin/genesys-kafka-bridge", bin.to_str().unwrap()),
    )
    .unwrap();
    let instance = dir.path().join("genesys-kafka-bridge@a.service");
    std::os::unix::fs::symlink("genesys-kafka-bridge@.service", &instance).unwrap();
    verify(analyze, &instance);
}

/// `systemd-analyze verify` on a unit file, which must pass without a
/// word: unknown keys and bad values are only warnings to verify.
fn verify(analyze: &str, unit: &Path) {
    let out = Command::new(analyze)
        .arg("verify")
        .arg(unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "systemd-analyze verify {}: exit {:?} {said:?}",
        unit.display(),
        out.status.code()
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// Runs `cmd` with the kernel's memory-deny-write-execute on (what
/// `MemoryDenyWriteExecute=yes` enforces, through seccomp there).
fn deny_write_execute(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
            if libc::prctl(libc::PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Whether this kernel has PR_SET_MDWE (Linux 6.3+), shown by a process
/// that tries to map writable+executable memory failing under it.
fn mdwe_available() -> bool {
    let out = deny_write_execute(Command::new("python3").args([
        "-c",
        "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ|mmap.PROT_WRITE|mmap.PROT_EXEC)",
    ]))
    .output();
    match out {
        Ok(out) => {
            let refused = !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("Permission denied");
            if !refused {
                eprintln!(
                    "PR_SET_MDWE did not refuse a W+X mapping: {:?} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            refused
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput || e.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!("this kernel has no PR_SET_MDWE (Linux 6.3+): {e}");
            false
        }
        Err(e) => panic!("python3 -c: {e}"),
    }
}

/// The installed binary as systemd runs it: `Type=notify` with a watchdog
/// of 2 s, against the simulator and a real broker. READY=1 arrives once,
/// when /readyz is 200; WATCHDOG=1 every second; SIGTERM gives STOPPING=1
/// and a clean exit. Under memory-deny-write-execute when the kernel has it.
#[test]
fn installed_bridge_notifies_systemd() {
    let Some(pkg) = package() else { return };
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let (broker, sim, secret) = broker_and_simulator(dir.path());
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        bridge_config(&sim.url, &broker.bootstrap(), &dir.path().join("buffer")),
    )
    .unwrap();
    let health = format!("127.0.0.1:{}", free_port());
    let mdwe = mdwe_available();
    let mut cmd = Command::new(pkg.root.join("usr/bin/genesys-kafka-bridge"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("E2E_CLIENT_SECRET", &secret)
        .env("GKB_HEALTH__LISTEN", &health)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "2000000")
        .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn");
    if mdwe {
        deny_write_execute(&mut cmd);
    } else {
        eprintln!("memory-deny-write-execute not checked on this kernel");
    }
    let mut bridge = Proc::spawn("bridge", cmd, dir.path());

    // Until READY=1: the first message is a STATUS saying what it waits for.
    let seen = await_ready(&manager, &bridge, &health);
    assert!(
        seen.iter()
            .any(|l| l.starts_with("STATUS=starting: waiting for")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("EXTEND_TIMEOUT_USEC=")),
        "{seen:?}"
    );

    let after = receive(&manager, Duration::from_secs(3));
    let pings = after.iter().filter(|l| *l == "WATCHDOG=1").count();
    assert!(
        pings >= 2,
        "watchdog pings in 3 s with WATCHDOG_USEC=2s: {after:?}"
    );
    assert!(
        !after.iter().any(|l| l == "READY=1"),
        "READY=1 twice: {after:?}"
    );

    let status = bridge.terminate();
    let stopping = receive(&manager, Duration::from_millis(500));
    assert!(
        seen.iter()
            .chain(&after)
            .chain(&stopping)
            .any(|l| l == "STOPPING=1"),
        "no STOPPING=1: {stopping:?}"
    );
    assert!(status.success(), "{status:?}\n{}", bridge.log_text());
    println!(
        "installed bridge: READY=1 after {} messages, {pings} watchdog pings in 3 s, STOPPING=1, exit 0{}",
        seen.len(),
        if mdwe {
            ", under memory-deny-write-execute"
        } else {
            ""
        }
    );
}

/// The package installed on this machine, as an operator installs it
/// (`apt-get install ./….deb`), then the service run the way its unit runs
/// it: `ExecStartPre` and `ExecStart` as the package's system user, with
/// the root-only environment file read by the "manager" (this test, as
/// root), `Type=notify`. Then an edited conffile kept across a reinstall,
/// and a purge that keeps the buffer.
///
/// It changes the machine (a package, a system user, /etc and /var/lib
/// entries), so it runs only when asked: `BRIDGE_TESTS_INSTALL_PACKAGE=1` as root,
/// which `.ci/run` sets on CI's throwaway machine. Without systemd as PID 1
/// the postinst skips `systemctl`, which is what lets it run in a
/// container; the unit itself is checked by `systemd-analyze` above.
#[test]
fn package_installs_and_its_service_runs_as_the_system_user() {
    const USER: &str = "genesys-kafka-bridge";
    const STATE: &str = "/var/lib/genesys-kafka-bridge";
    const CONFIG: &str = "/etc/genesys-kafka-bridge/bridge.toml";
    const ENV_FILE: &str = "/etc/genesys-kafka-bridge/bridge.env";
    if std::env::var_os("BRIDGE_TESTS_INSTALL_PACKAGE").is_none_or(|v| v != "1") {
        eprintln!(
            "package install not tried (BRIDGE_TESTS_INSTALL_PACKAGE=1 as root does; .ci/run sets it)"
        );
        return;
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "BRIDGE_TESTS_INSTALL_PACKAGE=1 needs root"
    );
    let Some(pkg) = package() else { return };
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    // A rerun on the same machine starts from nothing.
    let _ = Command::new("dpkg")
        .args(["--purge", "genesys-kafka-bridge"])
        .output();
    let _ = std::fs::remove_dir_all(STATE);
    let installed = run_ok(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .arg(&pkg.deb)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
    assert!(
        installed.contains("systemctl enable --now genesys-kafka-bridge"),
        "postinst's first-install hint missing:\n{installed}"
    );

    let passwd = run_ok(Command::new("getent").args(["passwd", USER]));
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields[5], STATE, "{passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
    let (uid, gid): (u32, u32) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
    assert!(uid < 1000, "a system user: {passwd}");
    let state = std::fs::metadata(STATE).unwrap();
    assert_eq!((state.uid(), state.gid()), (uid, gid));
    assert_eq!(state.permissions().mode() & 0o777, 0o750);
    let env_meta = std::fs::metadata(ENV_FILE).unwrap();
    assert_eq!(
        (env_meta.uid(), env_meta.permissions().mode() & 0o777),
        (0, 0o600)
    );
    let version = run_ok(Command::new("/usr/bin/genesys-kafka-bridge").arg("--version"));
    assert!(version.starts_with("genesys-kafka-bridge "), "{version}");

    // An operator's edit survives a reinstall of the package.
    let mut edited = std::fs::read_to_string(CONFIG).unwrap();
    edited.push_str("\n# edited by the operator\n");
    std::fs::write(CONFIG, &edited).unwrap();
    run_ok(Command::new("dpkg").arg("-i").arg(&pkg.deb));
    assert_eq!(std::fs::read_to_string(CONFIG).unwrap(), edited);

    // The service, as its unit runs it, against the simulator and a broker.
    let dir = tempfile::tempdir().unwrap();
    // The service user sends to the notify socket: it must reach it.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let notify_path = shared.join("notify");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (broker, sim, secret) = broker_and_simulator(dir.path());
    let config = bridge_config(
        &sim.url,
        &broker.bootstrap(),
        &Path::new(STATE).join("buffer"),
    )
    .replace("E2E_CLIENT_SECRET", "GENESYS_CLIENT_SECRET");
    std::fs::write(CONFIG, config).unwrap();
    std::fs::write(ENV_FILE, format!("GENESYS_CLIENT_SECRET={secret}\n")).unwrap();

    let unit = std::fs::read_to_string(Path::new("/").join(UNIT)).unwrap();
    let setting = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(setting("User"), [USER]);
    assert_eq!(setting("EnvironmentFile"), [ENV_FILE]);
    let environment: Vec<(String, String)> = std::fs::read_to_string(ENV_FILE)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let health = format!("127.0.0.1:{}", free_port());
    let as_unit_runs = |command_line: &str| -> Command {
        let mut words = command_line.split_whitespace();
        let mut cmd = Command::new(words.next().unwrap());
        cmd.args(words)
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k, v)))
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("GKB_HEALTH__LISTEN", &health)
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .current_dir(STATE)
            .uid(uid)
            .gid(gid);
        assert_eq!(setting("UMask"), ["0027"]);
        // SAFETY: umask is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0o027);
                Ok(())
            });
        }
        cmd
    };
    for pre in setting("ExecStartPre") {
        let out = as_unit_runs(&pre).output().unwrap();
        assert!(
            out.status.success(),
            "{pre}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let [start] = &setting("ExecStart")[..] else {
        panic!("one ExecStart expected:\n{unit}");
    };
    let mut cmd = as_unit_runs(start);
    cmd.env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "2000000");
    let mut bridge = Proc::spawn("installed-bridge", cmd, dir.path());
    let seen = await_ready(&manager, &bridge, &health);
    let pings = receive(&manager, Duration::from_secs(3))
        .iter()
        .filter(|l| *l == "WATCHDOG=1")
        .count();
    assert!(pings >= 2, "watchdog pings in 3 s: {pings}");

    // The buffer under /var/lib, the service user's; the tools read it
    // through the running bridge.
    let buffer = std::fs::metadata(Path::new(STATE).join("buffer")).unwrap();
    assert_eq!(buffer.uid(), uid);
    let socket = std::fs::metadata(Path::new(STATE).join("buffer/control.sock")).unwrap();
    assert_eq!(
        (socket.uid(), socket.permissions().mode() & 0o777),
        (uid, 0o600),
        "the control socket is the service user's alone"
    );
    let stats: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("/usr/bin/genesys-kafka-bridge")
            .args(["buffer", "stats", "--json", "--config", CONFIG]),
    ))
    .unwrap();
    assert_eq!(
        stats["source"], "running bridge (control socket)",
        "{stats}"
    );

    let status = bridge.terminate();
    assert!(status.success(), "{status:?}\n{}", bridge.log_text());
    let log = bridge.log_text();
    assert!(!log.contains(&secret), "the secret is in the log");

    run_ok(Command::new("dpkg").args(["--purge", "genesys-kafka-bridge"]));
    assert!(!Path::new("/usr/bin/genesys-kafka-bridge").exists());
    assert!(
        !Path::new(CONFIG).exists(),
        "purge removes the configuration"
    );
    assert!(
        Path::new(STATE).join("buffer").is_dir(),
        "purge keeps the buffer: it may hold events not yet in Kafka"
    );
    println!(
        "apt-get install: user {USER} (uid {uid}), {STATE} 0750, {ENV_FILE} 0600 root; \
         ExecStartPre passed as {USER}; READY=1 after {} messages; {pings} watchdog pings \
         in 3 s; buffer stats through the control socket; SIGTERM exit 0; purge kept the buffer",
        seen.len()
    );
    let _ = std::fs::remove_dir_all(STATE);
}

/// Notify messages received within `limit`, a line each.
fn receive(manager: &UnixDatagram, limit: Duration) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match manager.recv(&mut buf) {
            Ok(n) => lines.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    lines
}

/// Reads notify messages until READY=1 (checking that `/readyz` then
/// says 200); returns every line seen up to it.
fn await_ready(manager: &UnixDatagram, bridge: &Proc, health: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no READY=1 in 90 s; got {seen:?}\n{}",
            bridge.log_text()
        );
        let Ok(n) = manager.recv(&mut buf) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        let ready = message.lines().any(|l| l == "READY=1");
        seen.extend(message.lines().map(str::to_owned));
        if ready {
            let readyz = http::get(&format!("http://{health}/readyz")).unwrap();
            assert_eq!(
                readyz.status, 200,
                "READY=1 while /readyz says {}",
                readyz.body
            );
            return seen;
        }
    }
}

/// A broker with the test topics and a simulator with 3 queues, and the
/// secret of its OAuth client `e2e-client`.
fn broker_and_simulator(dir: &Path) -> (Broker, Simulator, String) {
    let setup = Stack::builder(dir).queues(3);
    let broker = setup.start_broker();
    let sim = setup.start_simulator();
    (broker, sim, setup.secret().to_owned())
}
