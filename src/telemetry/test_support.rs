//! For telemetry's tests: what a piece of code logs, read back through
//! the bridge's own subscriber.

use std::sync::{Arc, Mutex};

use super::init::{subscriber, LogFormat};
use super::shared::lock;

/// What `f` logs at `info` through the bridge's own subscriber.
pub fn logged(format: LogFormat, f: impl FnOnce()) -> Vec<String> {
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Out {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Out::default();
    let writer = out.clone();
    let subscriber = subscriber(
        format,
        tracing_subscriber::EnvFilter::new("info"),
        false,
        move || writer.clone(),
    );
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(lock(&out.0).clone()).unwrap();
    text.lines().map(str::to_owned).collect()
}
