//! The format marker and the migrations run at open (one page per format
//! in `migrations/`): a new database is marked with [`FORMAT_VERSION`], an
//! older one is moved up step by step, a newer one is refused untouched.

use std::path::Path;

use super::error::{open_error, BufferError};
use super::record::FORMAT_VERSION;
use super::store::{self, Store};

/// `meta` key of the format marker: u32 BE.
pub(super) const META_FORMAT_KEY: &[u8] = b"format_version";

/// Checks the format marker; writes it into a new database and moves an
/// older one up: version 1 → 2 (nothing to rewrite: v1 records read as
/// they are; their unsynced blob files are synced once), 2 → 3 (nothing to
/// rewrite either: the events held stay in the main database and are read
/// first; new ones go to segments, see `migrations/v3.md`).
pub(super) fn migrate(store: &Store, path: &Path) -> Result<(), BufferError> {
    let open_err = |source: sled::Error| open_error(path, source);
    let found = match store.meta.get(META_FORMAT_KEY).map_err(open_err)? {
        None => None,
        Some(raw) => Some(u32::from_be_bytes(raw.as_ref().try_into().map_err(
            |_| BufferError::BadFormatMarker {
                path: path.to_owned(),
            },
        )?)),
    };
    match found {
        Some(v) if v > FORMAT_VERSION => {
            return Err(BufferError::NewerFormat {
                path: path.to_owned(),
                found: v,
            })
        }
        Some(FORMAT_VERSION) => return Ok(()),
        Some(v @ (1 | 2)) => {
            if v == 1 {
                let synced =
                    store::sync_legacy_blobs(path).map_err(|e| open_err(sled::Error::Io(e)))?;
                tracing::info!(
                    blobs_synced = synced,
                    "buffer format 1 → 2 (large values are chunked from now on; see migrations/v2.md)"
                );
            }
            tracing::info!(
                events_held = store.legacy_events.len(),
                "buffer format 2 → 3: new events go to segments (see migrations/v3.md); the events held stay where they are and are forwarded first"
            );
        }
        Some(_) | None => {}
    }
    store
        .meta
        .insert(META_FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
        .map_err(open_err)?;
    store
        .sync()
        .map_err(|e| BufferError::Flush(e.to_string()))?;
    Ok(())
}
