//! A real disk for a test to stall: an ext4 filesystem in a sparse image
//! file, loop-mounted, which `fsfreeze` can freeze (every write to it,
//! and every fsync, then blocks in the kernel until it is thawed, as on a
//! disk that stops answering). Needs root, a loop device, `mkfs.ext4` and
//! `fsfreeze`; [`LoopFs::mount`] says what is missing instead of failing.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopFs {
    pub path: PathBuf,
}

fn run(program: &str, args: &[&str], path: &Path) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl LoopFs {
    /// An ext4 filesystem of `mib` MiB in `dir/disk.img`, mounted on
    /// `dir/mnt`; `Err` says why this machine cannot have one.
    pub fn mount(dir: &Path, mib: u64) -> Result<LoopFs, String> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let image = dir.join("disk.img");
        let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        file.set_len(mib << 20).map_err(|e| e.to_string())?;
        run("mkfs.ext4", &["-q", "-F"], &image)?;
        let path = dir.join("mnt");
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -o loop: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let fs = LoopFs { path };
        // Freezing works here, or the test cannot run.
        fs.freeze()?;
        fs.thaw();
        Ok(fs)
    }

    /// Writes and fsyncs to the filesystem block from now on.
    pub fn freeze(&self) -> Result<(), String> {
        run("fsfreeze", &["--freeze"], &self.path)
    }

    /// Writes go through again (nothing happens if it is not frozen).
    pub fn thaw(&self) {
        let _ = run("fsfreeze", &["--unfreeze"], &self.path);
    }

    /// A guard that thaws the filesystem when it goes: declared after the
    /// processes that write to it, it is dropped before them, so that a
    /// test that fails while the disk is frozen can still stop them (a
    /// process blocked on a frozen disk cannot die).
    pub fn thaw_on_drop(&self) -> Thaw {
        Thaw {
            path: self.path.clone(),
        }
    }
}

pub struct Thaw {
    path: PathBuf,
}

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = run("fsfreeze", &["--unfreeze"], &self.path);
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.thaw();
        // Lazily: a process killed a moment ago may still hold a file.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
