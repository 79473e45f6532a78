//! The binary: everything lives in the library (see `lib.rs`).

/// jemalloc rather than glibc's malloc: forwarding allocates and frees a
/// few small buffers per event on several threads, where glibc's per-thread
/// arenas cost a quarter of the forwarding thread's CPU (perf, during a
/// backlog drain) and kept freed memory. mimalloc was tried too: faster
/// than glibc but it held three times the memory. Measured with
/// scripts/bench.
///
/// jemalloc also takes `malloc` itself (tikv-jemallocator's unprefixed
/// feature), so librdkafka and OpenSSL allocate from it too rather than
/// from glibc: bridge CPU fell by 11 % end to end, 18 % at 2,000 events/s
/// and 9 % during a drain (scripts/bench, one run each way). Its options
/// are read from `MALLOC_CONF` as well as from `JEMALLOC_CONF` below.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// See [`genesys_kafka_bridge::JEMALLOC_CONF`].
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8; 60] = genesys_kafka_bridge::JEMALLOC_CONF;

fn main() -> std::process::ExitCode {
    genesys_kafka_bridge::cli::main()
}
