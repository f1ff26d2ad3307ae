//! The `process_*` families (CPU, memory, file descriptors of this process), gathered from /proc
//! by the `prometheus` crate's process collector at each scrape.

use std::sync::LazyLock;

use prometheus::Encoder as _;

static PROCESS: LazyLock<prometheus::Registry> = LazyLock::new(|| {
    let registry = prometheus::Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    registry
});

/// The `process_*` families in the text format, gathered now (small; rendered on every scrape so
/// they are always fresh). Empty where the process collector is not available.
pub fn render() -> Vec<u8> {
    let mut buf = Vec::with_capacity(1024);
    if prometheus::TextEncoder::new()
        .encode(&PROCESS.gather(), &mut buf)
        .is_err()
    {
        buf.clear();
    }
    buf
}
