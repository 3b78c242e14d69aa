//! Prometheus text metrics, kept in atomics: counting costs no lock on the webhook's path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::RwLock;
use std::time::Duration;

/// A counter with one label.
#[derive(Debug, Default)]
struct Family {
    values: RwLock<BTreeMap<&'static str, AtomicU64>>,
}

impl Family {
    fn inc(&self, label: &'static str) {
        if let Some(v) = self
            .values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(label)
        {
            v.fetch_add(1, Relaxed);
            return;
        }
        self.values
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(label)
            .or_default()
            .fetch_add(1, Relaxed);
    }

    fn get(&self, label: &str) -> u64 {
        self.values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(label)
            .map_or(0, |v| v.load(Relaxed))
    }

    fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (l, v) in self
            .values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {}", v.load(Relaxed));
        }
    }
}

/// Upper bounds of the latency histogram, in seconds.
///
/// ```
/// assert_eq!(proxy_optout_host::LATENCY_BUCKETS[0], 0.0005);
/// ```
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// The pipeline's metrics, counted in atomics (no lock on the webhook's path) and rendered
/// as Prometheus text for the host's `/metrics`. Every name starts with a prefix,
/// `proxy_optout` unless [`with_prefix`](Metrics::with_prefix) says otherwise.
///
/// ```
/// let m = proxy_optout_host::Metrics::default();
/// m.message("forwarded");
/// assert_eq!(m.messages("forwarded"), 1);
/// assert!(m.render().contains("proxy_optout_messages_total{outcome=\"forwarded\"} 1"));
/// ```
#[derive(Debug)]
pub struct Metrics {
    prefix: &'static str,
    messages: Family,
    keyword_drops: Family,
    refusals: Family,
    store_errors: Family,
    send_errors: Family,
    rejected: Family,
    notices: Family,
    journal: Family,
    callbacks: RwLock<BTreeMap<(&'static str, &'static str), AtomicU64>>,
    sends_found: AtomicU64,
    latency: [Histogram; ROUTES.len()],
}

/// The route labels of the latency histogram.
///
/// ```
/// assert!(proxy_optout_host::ROUTES.contains(&"webhook"));
/// ```
pub const ROUTES: [&str; 6] = [
    "webhook",
    "status_callback",
    "admin",
    "health",
    "metrics",
    "other",
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with_prefix("proxy_optout")
    }
}

impl Metrics {
    /// Metrics whose names start with `prefix` (`{prefix}_messages_total`, …).
    ///
    /// ```
    /// let m = proxy_optout_host::Metrics::with_prefix("rides_sms");
    /// assert!(m.render().contains("# TYPE rides_sms_messages_total counter"));
    /// ```
    #[must_use]
    pub fn with_prefix(prefix: &'static str) -> Self {
        Metrics {
            prefix,
            messages: Family::default(),
            keyword_drops: Family::default(),
            refusals: Family::default(),
            store_errors: Family::default(),
            send_errors: Family::default(),
            rejected: Family::default(),
            notices: Family::default(),
            journal: Family::default(),
            callbacks: RwLock::default(),
            sends_found: AtomicU64::default(),
            latency: Default::default(),
        }
    }

    /// The prefix of every name.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::Metrics::default().prefix(), "proxy_optout");
    /// ```
    #[must_use]
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// Counts one handled inbound message by outcome (`forwarded`, `refused`, `replayed`, or a
    /// withheld reason such as `keyword_dropped`).
    ///
    /// ```
    /// proxy_optout_host::Metrics::default().message("replayed");
    /// ```
    pub fn message(&self, outcome: &'static str) {
        self.messages.inc(outcome);
    }

    /// How many messages had `outcome`.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::Metrics::default().messages("forwarded"), 0);
    /// ```
    #[must_use]
    pub fn messages(&self, outcome: &str) -> u64 {
        self.messages.get(outcome)
    }

    /// Counts a keyword the relay did not forward, by category (`opt_out`, `opt_in`, `help`).
    ///
    /// ```
    /// proxy_optout_host::Metrics::default().keyword_drop("opt_out");
    /// ```
    pub fn keyword_drop(&self, category: &'static str) {
        self.keyword_drops.inc(category);
    }

    /// Counts a 21610 refusal by where it was learnt (`ledger`, `rest`, `status_callback`).
    ///
    /// ```
    /// proxy_optout_host::Metrics::default().refusal("rest");
    /// ```
    pub fn refusal(&self, source: &'static str) {
        self.refusals.inc(source);
    }

    /// How many 21610 refusals came from `source`.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::Metrics::default().refusals("rest"), 0);
    /// ```
    #[must_use]
    pub fn refusals(&self, source: &str) -> u64 {
        self.refusals.get(source)
    }

    /// Counts a database failure by operation.
    ///
    /// ```
    /// proxy_optout_host::Metrics::default().store_error("ledger");
    /// ```
    pub fn store_error(&self, operation: &'static str) {
        self.store_errors.inc(operation);
    }

    /// Counts a send that reached no verdict, by sender.
    ///
    /// ```
    /// proxy_optout_host::Metrics::default().send_error("twilio");
    /// ```
    pub fn send_error(&self, sender: &'static str) {
        self.send_errors.inc(sender);
    }

    /// Counts a refused webhook request by reason (`signature`, `form`, `content_type`…).
    ///
    /// ```
    /// proxy_optout_host::Metrics::default().rejected("signature");
    /// ```
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.inc(reason);
    }

    /// Counts a journal event: a webhook kept (`journaled_<cause>`: `database`, `send`, `busy`,
    /// `ledger`), or an entry handled from it (`replayed`, `dropped`).
    ///
    /// ```
    /// let m = proxy_optout_host::Metrics::default();
    /// m.journal("journaled_database");
    /// assert_eq!(m.journal_events("journaled_database"), 1);
    /// ```
    pub fn journal(&self, event: &'static str) {
        self.journal.inc(event);
    }

    /// How many journal events of this kind happened.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::Metrics::default().journal_events("replayed"), 0);
    /// ```
    #[must_use]
    pub fn journal_events(&self, event: &str) -> u64 {
        self.journal.get(event)
    }

    /// Counts a send that was not made again because the provider already had the message.
    ///
    /// ```
    /// let m = proxy_optout_host::Metrics::default();
    /// m.send_found();
    /// assert_eq!(m.sends_found(), 1);
    /// ```
    pub fn send_found(&self) {
        self.sends_found.fetch_add(1, Relaxed);
    }

    /// How many sends the provider already had.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::Metrics::default().sends_found(), 0);
    /// ```
    #[must_use]
    pub fn sends_found(&self) -> u64 {
        self.sends_found.load(Relaxed)
    }

    /// Counts a debugger notice by code.
    ///
    /// ```
    /// proxy_optout_host::Metrics::default().notice("80901");
    /// ```
    pub fn notice(&self, code: &'static str) {
        self.notices.inc(code);
    }

    /// Counts one callback the host made (Proxy's `CallbackUrl`, `InterceptCallbackUrl`,
    /// `OutOfSessionCallbackUrl`, a debugger webhook) by its kind and what came of it.
    ///
    /// ```
    /// let m = proxy_optout_host::Metrics::default();
    /// m.callback("intercept", "blocked");
    /// assert_eq!(m.callbacks("intercept", "blocked"), 1);
    /// assert!(m.render().contains("proxy_optout_callbacks_total{kind=\"intercept\",outcome=\"blocked\"} 1"));
    /// ```
    pub fn callback(&self, kind: &'static str, outcome: &'static str) {
        let read = self
            .callbacks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = read.get(&(kind, outcome)) {
            v.fetch_add(1, Relaxed);
            return;
        }
        drop(read);
        self.callbacks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((kind, outcome))
            .or_default()
            .fetch_add(1, Relaxed);
    }

    /// How many callbacks of `kind` came to `outcome`.
    ///
    /// ```
    /// assert_eq!(proxy_optout_host::Metrics::default().callbacks("callback", "delivered"), 0);
    /// ```
    #[must_use]
    pub fn callbacks(&self, kind: &str, outcome: &str) -> u64 {
        self.callbacks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|((k, o), _)| *k == kind && *o == outcome)
            .map_or(0, |(_, v)| v.load(Relaxed))
    }

    /// Records one request's latency under a [`ROUTES`] label (unknown labels count as `other`).
    ///
    /// ```
    /// proxy_optout_host::Metrics::default().observe("webhook", std::time::Duration::from_millis(2));
    /// ```
    pub fn observe(&self, route: &str, latency: Duration) {
        let i = ROUTES
            .iter()
            .position(|r| *r == route)
            .unwrap_or(ROUTES.len() - 1);
        self.latency[i].observe(latency);
    }

    /// The Prometheus text exposition.
    ///
    /// ```
    /// assert!(proxy_optout_host::Metrics::default().render().contains("# TYPE proxy_optout_request_duration_seconds histogram"));
    /// ```
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.messages.render(
            &mut out,
            &format!("{}_messages_total", self.prefix),
            "outcome",
            "Inbound messages handled, by outcome.",
        );
        self.keyword_drops.render(
            &mut out,
            &format!("{}_keyword_drops_total", self.prefix),
            "category",
            "Keywords not forwarded (80901), by category.",
        );
        self.refusals.render(
            &mut out,
            &format!("{}_refusals_21610_total", self.prefix),
            "source",
            "Sends refused with 21610, by where it was learnt.",
        );
        self.store_errors.render(
            &mut out,
            &format!("{}_store_errors_total", self.prefix),
            "operation",
            "Database failures, by operation.",
        );
        self.send_errors.render(
            &mut out,
            &format!("{}_send_errors_total", self.prefix),
            "sender",
            "Sends that reached no verdict.",
        );
        self.rejected.render(
            &mut out,
            &format!("{}_rejected_requests_total", self.prefix),
            "reason",
            "Webhook requests refused before handling.",
        );
        self.notices.render(
            &mut out,
            &format!("{}_notices_total", self.prefix),
            "code",
            "Debugger notices raised.",
        );
        self.journal.render(
            &mut out,
            &format!("{}_journal_events_total", self.prefix),
            "event",
            "Webhooks kept in the local journal, by cause, and entries handled from it.",
        );
        let name = format!("{}_callbacks_total", self.prefix);
        let _ = writeln!(
            out,
            "# HELP {name} Callbacks made, by kind and outcome.\n# TYPE {name} counter"
        );
        for ((kind, outcome), v) in self
            .callbacks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "{name}{{kind=\"{kind}\",outcome=\"{outcome}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP {p}_sends_found_total Sends not made again: the provider already had the message.\n# TYPE {p}_sends_found_total counter\n{p}_sends_found_total {}",
            self.sends_found.load(Relaxed),
            p = self.prefix
        );
        let name = format!("{}_request_duration_seconds", self.prefix);
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency.\n# TYPE {name} histogram"
        );
        for (route, h) in ROUTES.iter().zip(&self.latency) {
            for (b, bound) in h.buckets.iter().zip(LATENCY_BUCKETS) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    b.load(Relaxed)
                );
            }
            let count = h.count.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let sum = h.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_sum{{route=\"{route}\"}} {sum}\n{name}_count{{route=\"{route}\"}} {count}"
            );
        }
        out
    }
}
