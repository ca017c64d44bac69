//! One scrape: everything `/metrics` shows, read once, then encoded in the Prometheus text
//! format by prometheus-client (as a collector of a registry built for the scrape).

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::{Registry, Unit},
};

use super::{
    busiest::ClientCounts, database::WRITE_RESULTS, decisions::LABELS as DECISION_LABELS,
    histogram::HistogramSnapshot, process::ProcessSample, traffic::TrafficTotals, upstream::FAILURE_KINDS,
    STATUS_CLASSES,
};

/// The `backend` label of answers the gateway made itself.
pub const NO_BACKEND: &str = "none";

/// One backend as a scrape reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSample {
    /// Base URL (the `backend` label).
    pub url: String,
    /// Takes traffic now (healthy, enabled; or routed to in panic mode).
    pub up: bool,
    /// Requests in flight.
    pub in_flight: u64,
    /// Answers by status class.
    pub answers: [u64; 5],
    /// Failures by kind.
    pub failures: [u64; FAILURE_KINDS.len()],
}

/// Everything one scrape shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    /// Every listed backend.
    pub backends: Vec<BackendSample>,
    /// The proxy workers' counters, added up.
    pub traffic: TrafficTotals,
    /// Rate-limit decisions (`None` with rate limiting off).
    pub decisions: Option<[u64; 5]>,
    /// The busiest registered clients, shared with the scan that found them (the scrapes
    /// queued behind one scan share its result).
    pub clients: std::sync::Arc<Vec<ClientCounts>>,
    /// Write-behind flushes, failures, rows and durations (`None` with rate limiting off).
    pub write_behind: Option<((u64, u64, u64), HistogramSnapshot)>,
    /// Admin writes by result.
    pub admin_writes: [u64; 3],
    /// The process (`None` when `/proc` could not be read).
    pub process: Option<ProcessSample>,
}

/// Content type of [`render`]'s output (OpenMetrics text, which Prometheus reads natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Scrape {
    /// The scrape in the OpenMetrics text format.
    pub fn render(self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

fn counter<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in series {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum_secs, h.count, &h.buckets, None)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = &self.traffic;
        let requests = self
            .backends
            .iter()
            .map(|b| (b.url.as_str(), b.answers))
            .chain(std::iter::once((NO_BACKEND, t.own_answers)))
            .flat_map(|(backend, answers)| {
                STATUS_CLASSES
                    .iter()
                    .zip(answers)
                    .map(move |(class, n)| (vec![("status_class", *class), ("backend", backend)], n))
            });
        counter(
            &mut e,
            "tollgate_requests",
            "Requests answered, by status class and the backend that answered (none: the gateway itself).",
            requests,
        )?;
        histogram(
            &mut e,
            "tollgate_request_duration",
            "Whole requests, from arrival to the last byte of the answer.",
            &t.request_duration,
        )?;
        histogram(
            &mut e,
            "tollgate_upstream_response_duration",
            "Time from sending a request to a backend to its response head.",
            &t.upstream_head,
        )?;
        counter(
            &mut e,
            "tollgate_requests_abandoned",
            "Requests whose client went away before any answer was ready (not in tollgate_requests_total).",
            [(vec![], t.abandoned)],
        )?;
        counter(
            &mut e,
            "tollgate_upstream_retries",
            "Attempts on a backend after a failed one.",
            [(vec![], t.retries)],
        )?;
        let failures = self.backends.iter().flat_map(|b| {
            FAILURE_KINDS
                .iter()
                .zip(b.failures)
                .map(move |(kind, n)| (vec![("backend", b.url.as_str()), ("kind", *kind)], n))
        });
        counter(
            &mut e,
            "tollgate_upstream_failures",
            "Failed requests to a backend, by kind.",
            failures,
        )?;
        gauge(
            &mut e,
            "tollgate_backend_up",
            "1 while the backend is healthy and enabled, else 0 (in panic mode an unhealthy backend takes traffic at 0).",
            None,
            self.backends
                .iter()
                .map(|b| (vec![("backend", b.url.as_str())], f64::from(u8::from(b.up)))),
        )?;
        gauge(
            &mut e,
            "tollgate_backend_in_flight",
            "Requests in flight to the backend now.",
            None,
            self.backends
                .iter()
                .map(|b| (vec![("backend", b.url.as_str())], b.in_flight as f64)),
        )?;
        if let Some(d) = self.decisions {
            let series = DECISION_LABELS.iter().zip(d).map(|((kind, result, shadow), n)| {
                (vec![("result", *result), ("kind", *kind), ("shadow", *shadow)], n)
            });
            counter(
                &mut e,
                "tollgate_ratelimit_decisions",
                "Rate-limit decisions (shadow=true: refused, but let through in shadow mode).",
                series,
            )?;
            let clients = self.clients.iter().flat_map(|c| {
                [
                    (
                        vec![("client", c.id.as_str()), ("result", "admitted")],
                        c.admitted,
                    ),
                    (vec![("client", c.id.as_str()), ("result", "refused")], c.refused),
                ]
            });
            counter(
                &mut e,
                "tollgate_client_requests",
                "Per registered client, for the busiest TOLLGATE_METRICS_CLIENT_LIMIT clients: requests admitted and refused (shadow refusals included) since the client's counts began.",
                clients,
            )?;
        }
        if let Some(((flushes, failures, rows), duration)) = &self.write_behind {
            counter(
                &mut e,
                "tollgate_db_flushes",
                "Bucket write-behind flushes that succeeded.",
                [(vec![], *flushes)],
            )?;
            counter(
                &mut e,
                "tollgate_db_flush_failures",
                "Bucket write-behind flushes that failed (retried).",
                [(vec![], *failures)],
            )?;
            counter(
                &mut e,
                "tollgate_db_flushed_rows",
                "Client rows written by the write-behind.",
                [(vec![], *rows)],
            )?;
            histogram(
                &mut e,
                "tollgate_db_flush_duration",
                "Write-behind flushes, scan and write.",
                duration,
            )?;
        }
        let writes = WRITE_RESULTS
            .iter()
            .zip(self.admin_writes)
            .map(|(result, n)| (vec![("result", *result)], n));
        counter(
            &mut e,
            "tollgate_admin_writes",
            "Admin API writes (POST, PUT, PATCH, DELETE) by result.",
            writes,
        )?;
        if let Some(p) = &self.process {
            counter_f64(
                &mut e,
                "process_cpu_seconds",
                "User and system CPU time.",
                p.cpu_secs,
            )?;
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory.",
                None,
                [(vec![], p.resident_bytes as f64)],
            )?;
            gauge(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory.",
                None,
                [(vec![], p.virtual_bytes as f64)],
            )?;
            gauge(
                &mut e,
                "process_open_fds",
                "Open file descriptors.",
                None,
                [(vec![], p.open_fds as f64)],
            )?;
            if let Some(max) = p.max_fds {
                gauge(
                    &mut e,
                    "process_max_fds",
                    "Limit on open file descriptors.",
                    None,
                    [(vec![], max as f64)],
                )?;
            }
            gauge(
                &mut e,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch.",
                None,
                [(vec![], p.start_time_secs)],
            )?;
        }
        Ok(())
    }
}

fn counter_f64(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}
