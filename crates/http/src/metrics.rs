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
