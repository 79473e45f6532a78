//! What telemetry reads of the buffer ([`BufferView`]): the backlog, the
//! gap count and the buffer's problems, without telemetry knowing the
//! buffer.

use super::handle::Buffer;
use crate::telemetry::BufferView;

impl BufferView for Buffer {
    fn waiting(&self) -> u64 {
        self.len() as u64
    }

    fn gaps_recorded(&self) -> u64 {
        self.gaps_len()
    }

    fn problems(&self) -> Vec<String> {
        Buffer::problems(self)
    }
}
