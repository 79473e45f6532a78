//! Locks that outlive a panicking holder: the buffer's state stays
//! usable (each lock guards data that is consistent between statements).

use std::sync::{Mutex, MutexGuard};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
