//! `[buffer]`: where received events wait until Kafka has them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::error::ConfigError;

const MIB: u64 = 1024 * 1024;

/// The on-disk write-ahead buffer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Directory of the buffer (created if missing). Keep it on a local,
    /// persistent disk: it is what survives a crash or a Kafka outage.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// Memory for the buffer's page cache, in MiB. The backlog itself lives
    /// on disk. Each open segment (at most three) gets half of it and the
    /// main database a quarter; sled's own bookkeeping comes on top, per
    /// open segment, so it does not grow with the backlog. A larger cache
    /// speeds nothing up when the bridge keeps up, since the newest events
    /// are served from memory.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
    /// Most bytes the buffer may use on disk (the files in `path`). Once it
    /// is reached, new events are refused — counted in
    /// `gkb_buffer_refused_events_total` and named on `/readyz` — and every
    /// event already held is kept until Kafka has it. It is checked every
    /// `check_interval_ms` and after every MiB written, so it can be
    /// overshot by about a megabyte. Disk space comes back a segment at a
    /// time (`segment_bytes`): a drained segment is deleted, while the
    /// newest one's file keeps its size and reuses the space.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Free space to leave on the buffer's filesystem, in bytes: below it
    /// new events are refused, as for `max_bytes`. It must leave room for
    /// the buffer to record removals while it drains (a few MiB at least).
    /// Space inside the buffer's files that sled will reuse counts as free.
    /// On top of it the buffer keeps an 8 MiB file named `reserve` in
    /// `path`: if the filesystem fills anyway (another writer, or a burst),
    /// the reserve is released so the buffer can reopen and drain, and put
    /// back once there is room; until then its 8 MiB are kept free too.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    /// How often disk use and free space are measured, in ms.
    #[serde(default = "default_check_interval_ms")]
    pub check_interval_ms: u64,
    /// Most bytes of received events that may wait in memory for the
    /// buffer's writer thread. Sockets are read on a thread that never
    /// touches the disk: while the disk is slow or stalls, received events
    /// wait here, and beyond this bound they are refused — counted in
    /// `gkb_buffer_write_queue_refused_total` and named on `/readyz` —
    /// rather than the socket being left unread until Genesys closes it
    /// as a slow consumer. `gkb_buffer_write_queue_peak_bytes` shows how
    /// much of it a stall took.
    #[serde(default = "default_write_queue_bytes")]
    pub write_queue_bytes: u64,
    /// Size of each of the buffer's segments, in bytes. Events are kept in
    /// a series of segments (each its own sled database in
    /// `path/segments/`); appends go to the newest, which is closed and a
    /// new one started once this many bytes were written to it. A segment
    /// the drain emptied is deleted whole, giving its disk space back, and
    /// only a few are open at once, so the buffer's memory does not grow
    /// with the backlog.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
}

fn default_segment_bytes() -> u64 {
    64 * MIB
}

fn default_write_queue_bytes() -> u64 {
    32 * MIB
}

fn default_cache_mib() -> u64 {
    8
}

fn default_path() -> PathBuf {
    PathBuf::from("data/buffer")
}

fn default_max_bytes() -> u64 {
    8 * 1024 * MIB
}

fn default_min_free_bytes() -> u64 {
    256 * MIB
}

fn default_check_interval_ms() -> u64 {
    500
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            path: default_path(),
            cache_mib: default_cache_mib(),
            max_bytes: default_max_bytes(),
            min_free_bytes: default_min_free_bytes(),
            check_interval_ms: default_check_interval_ms(),
            write_queue_bytes: default_write_queue_bytes(),
            segment_bytes: default_segment_bytes(),
        }
    }
}

impl BufferConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid("buffer.path", "must not be empty"));
        }
        if !(4..=65_536).contains(&self.cache_mib) {
            return Err(ConfigError::invalid(
                "buffer.cache_mib",
                "must be between 4 and 65536",
            ));
        }
        if self.path.is_file() {
            return Err(ConfigError::invalid(
                "buffer.path",
                format!("{} is a file; it must be a directory", self.path.display()),
            ));
        }
        // Below a few sled segments (512 KiB each) the buffer could not
        // hold even one large frame.
        if self.max_bytes < 8 * MIB {
            return Err(ConfigError::invalid(
                "buffer.max_bytes",
                "must be at least 8388608 (8 MiB)",
            ));
        }
        // Draining writes too (removals are logged): without headroom a
        // full disk could not be emptied.
        if self.min_free_bytes < 4 * MIB {
            return Err(ConfigError::invalid(
                "buffer.min_free_bytes",
                "must be at least 4194304 (4 MiB), room to record removals while draining",
            ));
        }
        if !(MIB..=4096 * MIB).contains(&self.write_queue_bytes) {
            return Err(ConfigError::invalid(
                "buffer.write_queue_bytes",
                "must be between 1048576 (1 MiB) and 4294967296 (4 GiB)",
            ));
        }
        if !(MIB..=4096 * MIB).contains(&self.segment_bytes) {
            return Err(ConfigError::invalid(
                "buffer.segment_bytes",
                "must be between 1048576 (1 MiB) and 4294967296 (4 GiB)",
            ));
        }
        if !(50..=60_000).contains(&self.check_interval_ms) {
            return Err(ConfigError::invalid(
                "buffer.check_interval_ms",
                "must be between 50 and 60000",
            ));
        }
        Ok(())
    }

    /// What an operator should know before starting on this buffer's
    /// filesystem, measured now: free space already below the floor (new
    /// events would be refused from the start), or a filesystem too small
    /// for the floor ever to be met. `None` when neither holds or the
    /// filesystem cannot be measured.
    pub fn disk_warning(&self) -> Option<String> {
        let dir = self.path.ancestors().find(|p| p.exists())?;
        let (free, total) = super::admission::filesystem_bytes(dir)?;
        // Space the buffer's own files hold counts as free to it: sled
        // reuses what a drain left inside them. Its reserve file is kept
        // on top of the floor (`reserve.rs`).
        let reserve = super::reserve::RESERVE_BYTES;
        let own = super::admission::dir_bytes(&self.path)
            + if super::reserve::present(&self.path) {
                reserve
            } else {
                0
            };
        if total < self.min_free_bytes {
            Some(format!(
                "buffer.min_free_bytes: the filesystem of {} holds {total} bytes in all, less than min_free_bytes {}: the bridge would refuse every event",
                dir.display(),
                self.min_free_bytes
            ))
        } else if free.saturating_add(own) < self.min_free_bytes + reserve {
            Some(format!(
                "buffer.min_free_bytes: the filesystem of {} has {free} bytes free, below min_free_bytes {} plus the buffer's {reserve}-byte reserve: the bridge would refuse new events from the start, until space is freed",
                dir.display(),
                self.min_free_bytes
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_filesystem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ok = BufferConfig {
            path: dir.path().join("buffer"),
            min_free_bytes: 4 * MIB,
            ..BufferConfig::default()
        };
        // The test machine's filesystem has 4 MiB free.
        assert_eq!(ok.disk_warning(), None);
        let absurd = BufferConfig {
            min_free_bytes: u64::MAX / 2,
            ..ok
        };
        let warning = absurd.disk_warning().expect("a floor no disk meets");
        assert!(warning.starts_with("buffer.min_free_bytes: "), "{warning}");
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        BufferConfig::default().validate().unwrap();
        type Spoil = fn(&mut BufferConfig);
        let cases: [(&str, Spoil); 6] = [
            ("buffer.segment_bytes", |c| c.segment_bytes = 1024),
            ("buffer.write_queue_bytes", |c| c.write_queue_bytes = 1024),
            ("buffer.max_bytes", |c| c.max_bytes = MIB),
            ("buffer.min_free_bytes", |c| c.min_free_bytes = 0),
            ("buffer.check_interval_ms", |c| c.check_interval_ms = 0),
            ("buffer.cache_mib", |c| c.cache_mib = 1),
        ];
        for (key, spoil) in cases {
            let mut config = BufferConfig::default();
            spoil(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.key(), Some(key), "{err}");
        }
    }
}
