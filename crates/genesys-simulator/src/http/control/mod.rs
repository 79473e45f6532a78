//! The control API under `/sim/` (no auth): generate events, inspect what
//! was emitted and the simulator's state, inject faults, change the
//! directory. Documented for users in the crate's header (`lib.rs`).

pub(crate) mod directory;
pub(crate) mod faults;
pub(crate) mod generate;
pub(crate) mod inspect;
