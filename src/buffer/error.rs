//! What can go wrong with the buffer, as its callers see it.

use std::path::{Path, PathBuf};

use super::database;
use super::record::FORMAT_VERSION;
use crate::gap::GapError;

/// What can go wrong with the buffer.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("cannot open the buffer at {path}: {source} (if the files are corrupt, move the directory aside and start again; nothing in it is deleted)")]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "the buffer at {path} is in use by another process (is a bridge already running on it?)"
    )]
    Locked { path: PathBuf },
    #[error("the buffer at {path} has format version {found}, newer than this build understands ({FORMAT_VERSION}); run a newer bridge or move the directory aside")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("the buffer at {path} has an unreadable format version marker")]
    BadFormatMarker { path: PathBuf },
    #[error("buffer write failed: {0} (is the disk full?)")]
    Write(sled::Error),
    #[error("buffer read failed: {0}")]
    Read(sled::Error),
    #[error("buffer flush failed: {0} (is the disk full?)")]
    Flush(String),
    #[error("the buffer refuses new events: {0}")]
    Refused(String),
    #[error("the buffer is failing and reopening: {0}")]
    Failing(String),
    #[error(transparent)]
    Gap(#[from] GapError),
}

pub(super) fn open_error(path: &Path, source: sled::Error) -> BufferError {
    if database::is_lock_error(&source) {
        BufferError::Locked {
            path: path.to_owned(),
        }
    } else {
        BufferError::Open {
            path: path.to_owned(),
            source,
        }
    }
}
