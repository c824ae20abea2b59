//! Prometheus metrics, kept by hand: a few counters and one latency histogram do not justify an
//! exporter stack. Labels come from the matched route (never the raw path), so cardinality is bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    total: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    tokens_issued: BTreeMap<String, u64>,
    token_failures: BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        // A client may send any token as its method: one series each would let it grow the
        // metrics without bound, so methods beyond the standard ones count together.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "CONNECT" | "TRACE" => method,
            _ => "other",
        };
        self.with(|m| {
            *m.requests
                .entry((route.to_owned(), method.to_owned(), status))
                .or_default() += 1;
            let h = m.latency.entry(route.to_owned()).or_default();
            h.total += 1;
            h.sum += secs;
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
        });
    }

    pub fn token_issued(&self, grant: &str) {
        self.with(|m| *m.tokens_issued.entry(grant.to_owned()).or_default() += 1);
    }

    pub fn token_failed(&self, error: &str) {
        self.with(|m| *m.token_failures.entry(error.to_owned()).or_default() += 1);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            let _ = writeln!(out, "# HELP ims_http_requests_total HTTP requests by route, method and status.");
            let _ = writeln!(out, "# TYPE ims_http_requests_total counter");
            for ((route, method, status), n) in &m.requests {
                let _ = writeln!(out, "ims_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP ims_http_request_duration_seconds Time to answer, by route.");
            let _ = writeln!(out, "# TYPE ims_http_request_duration_seconds histogram");
            for (route, h) in &m.latency {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(out, "ims_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}", h.counts[i]);
                }
                let _ = writeln!(out, "ims_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.total);
                let _ = writeln!(out, "ims_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
                let _ = writeln!(out, "ims_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.total);
            }
            let _ = writeln!(out, "# HELP ims_tokens_issued_total Access tokens issued, by grant type.");
            let _ = writeln!(out, "# TYPE ims_tokens_issued_total counter");
            for (grant, n) in &m.tokens_issued {
                let _ = writeln!(out, "ims_tokens_issued_total{{grant_type=\"{grant}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP ims_token_failures_total Refused token requests, by OAuth error code.");
            let _ = writeln!(out, "# TYPE ims_token_failures_total counter");
            for (error, n) in &m.token_failures {
                let _ = writeln!(out, "ims_token_failures_total{{error=\"{error}\"}} {n}");
            }
            out
        })
    }
}

/// The process's own figures in the Prometheus client libraries' names, read from `/proc`
/// (nothing where there is none), and the build as an info series.
pub fn process_text() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP ims_build_info The running build.");
    let _ = writeln!(out, "# TYPE ims_build_info gauge");
    let _ = writeln!(
        out,
        "ims_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let Some(p) = Process::read() else {
        return out;
    };
    let series: [(&str, &str, &str, f64); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent.",
            p.cpu_secs,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory.",
            p.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory.",
            p.virtual_bytes,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time since the Unix epoch.",
            p.start_secs,
        ),
        ("process_open_fds", "gauge", "Open file descriptors.", p.open_fds),
        (
            "process_max_fds",
            "gauge",
            "The limit of open file descriptors.",
            p.max_fds,
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

struct Process {
    cpu_secs: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    start_secs: f64,
    open_fds: f64,
    max_fds: f64,
}

impl Process {
    fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
        // Field n of proc(5) is fields[n - 3] here.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })?;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()?
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse::<f64>().ok()))
            .unwrap_or(0.0);
        Some(Process {
            cpu_secs: (field(14)? + field(15)?) / ticks,
            start_secs: boot + field(22)? / ticks,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * rustix::param::page_size() as f64,
            open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as f64,
            max_fds,
        })
    }
}

/// A database pool's connections as exposition lines; `whose` says which pool in the help text.
pub fn pool_text(whose: &str, c: &ims_identity::store::Connections) -> String {
    format!(
        "# HELP ims_db_connections The {whose} database pool's connections.\n\
         # TYPE ims_db_connections gauge\n\
         ims_db_connections{{state=\"idle\"}} {}\n\
         ims_db_connections{{state=\"in_use\"}} {}\n\
         # HELP ims_db_connections_max The bound of the {whose} database pool.\n\
         # TYPE ims_db_connections_max gauge\n\
         ims_db_connections_max {}\n",
        c.idle,
        c.open.saturating_sub(c.idle),
        c.max
    )
}

/// The answer of a `/metrics` route: the text exposition format.
pub fn exposition(text: String) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.observe_request("/ims/token/v2", "POST", 200, Duration::from_millis(2));
        m.token_issued("client_credentials");
        m.token_failed("invalid_client");
        let text = m.render();
        assert!(text
            .contains("ims_http_requests_total{route=\"/ims/token/v2\",method=\"POST\",status=\"200\"} 1"));
        assert!(text
            .contains("ims_http_request_duration_seconds_bucket{route=\"/ims/token/v2\",le=\"0.0025\"} 1"));
        assert!(
            text.contains("ims_http_request_duration_seconds_bucket{route=\"/ims/token/v2\",le=\"0.001\"} 0")
        );
        assert!(text.contains("ims_tokens_issued_total{grant_type=\"client_credentials\"} 1"));
        assert!(text.contains("ims_token_failures_total{error=\"invalid_client\"} 1"));
    }

    #[test]
    fn process_and_build_series() {
        let text = process_text();
        assert!(text.contains(&format!(
            "ims_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing: {text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        // This test process: some CPU, some memory, started in the last day, files open.
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        let now = ims_core::Now::system().millis() as f64 / 1000.0;
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        let fd = std::fs::File::open("/proc/self/stat").unwrap();
        let open = value("process_open_fds");
        drop(fd);
        assert!(open >= 3.0 && open <= value("process_max_fds"));
    }

    #[test]
    fn methods_a_client_invents_share_one_series() {
        let m = Metrics::default();
        for method in ["BREW", "WHEN", "X-ANYTHING-0001", "GET"] {
            m.observe_request("unmatched", method, 405, Duration::from_millis(1));
        }
        let text = m.render();
        assert!(
            text.contains("ims_http_requests_total{route=\"unmatched\",method=\"other\",status=\"405\"} 3")
        );
        assert!(text.contains("ims_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"405\"} 1"));
        assert!(!text.contains("BREW"), "{text}");
    }
}
