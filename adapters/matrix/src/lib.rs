//! The Matrix surface of Chorus: a matrix-sdk bot that answers in threads, streams
//! replies by editing them, takes reactions as controls, and works in encrypted rooms.

mod allow;
mod content;
mod key;
mod mention;
mod reaction;
mod sink;
mod tmp_core_api;

pub use allow::Allowlist;
pub use key::{channel_key, parse_channel_key};
pub use sink::{MatrixSink, MatrixSinkFactory};
