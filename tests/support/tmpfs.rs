//! A small filesystem of its own for a test, to fill up: a tmpfs mounted
//! on creation and unmounted on drop. Needs root (or CAP_SYS_ADMIN).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB on `path` (created if missing).
    pub fn mount(path: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Fills the filesystem to the last byte with the file `name`;
    /// returns its size.
    pub fn fill(&self, name: &str) -> u64 {
        let mut file = File::create(self.path.join(name)).unwrap();
        let mut written = 0u64;
        // Large writes first, then small ones for the last partial page.
        for size in [1 << 20, 4096, 1] {
            let chunk = vec![0u8; size];
            while file.write_all(&chunk).is_ok() {
                written += size as u64;
            }
        }
        written
    }

    /// Free bytes left, as statvfs reports them.
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.path)
            .output()
            .expect("df runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a process killed a moment ago may still hold a file.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
