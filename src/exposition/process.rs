//! The `process_*` families (CPU, memory, file descriptors of this process), gathered from /proc
//! by the `prometheus` crate's process collector at each scrape, and written through the same
//! [`Writer`] as every other family, so each format shows them its own way.

use std::sync::LazyLock;

use super::families::{Kind, Writer};

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

/// Writes the `process_*` families gathered now (small; gathered on every scrape so they are
/// always fresh) through `w`, whose prefix must be empty. Nothing where the process collector
/// is not available. Counters (`process_cpu_seconds_total`) carry the process's start time as
/// their created timestamp.
pub fn write(w: &mut dyn Writer) {
    use prometheus::proto::MetricType;
    let families = PROCESS.gather();
    let started_ms = families
        .iter()
        .find(|f| f.name() == "process_start_time_seconds")
        .and_then(|f| f.get_metric().first())
        .map(|m| (m.get_gauge().get_value() * 1000.0) as i64);
    for family in &families {
        let kind = match family.get_field_type() {
            MetricType::COUNTER => Kind::Counter,
            MetricType::GAUGE => Kind::Gauge,
            // The process collector makes no other type.
            _ => continue,
        };
        let name = family.name();
        w.header(name, kind, family.help());
        for m in family.get_metric() {
            let labels: Vec<(&str, &str)> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            let (value, created) = match kind {
                Kind::Counter => (m.get_counter().get_value(), started_ms),
                _ => (m.get_gauge().get_value(), None),
            };
            w.sample(name, &labels, &[], value, created);
        }
    }
}
