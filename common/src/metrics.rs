//! The Prometheus text format (version 0.0.4) that `roamgw run --http` and `roamer run --http`
//! serve, and the one histogram both keep. Rendering is pure: a scrape builds an
//! [`Exposition`] from a snapshot of values.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A scrape's text, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Exposition {
    /// Declares a family; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
        self
    }

    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        let _ = writeln!(self.out, "{name}{} {value}", labels_text(labels));
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// A gauge family with one sample per possible value of `label`: 1 for `current`, 0 for
    /// the others (Prometheus' way of showing a state). `subject` is the one label before it.
    pub fn state_set(
        &mut self,
        name: &str,
        help: &str,
        subject: (&str, &str),
        label: &str,
        values: &[&str],
        current: &str,
    ) -> &mut Self {
        self.family(name, Kind::Gauge, help);
        for value in values {
            self.sample(
                name,
                &[subject, (label, value)],
                u8::from(*value == current),
            );
        }
        self
    }

    /// A histogram family with its buckets, sum and count.
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) -> &mut Self {
        self.family(name, Kind::Histogram, help);
        let mut cumulative = 0;
        for (le, count) in h.bounds.iter().zip(&h.buckets) {
            cumulative += count;
            let le = le.to_string();
            self.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative);
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], h.sum_secs);
        self.sample(&format!("{name}_count"), &[], h.count)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A histogram of durations, shared between the thread that observes and the one that serves.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative: [`Exposition::histogram`] adds them up).
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// What a scrape shows of a [`Histogram`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_secs: f64,
}

impl Histogram {
    /// `bounds`: upper bounds in seconds, ascending.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_secs: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Checks a rendered text the way a scraper would: every sample belongs to a declared family,
/// and every family is declared once. For the renderers' tests.
pub fn check_text(text: &str) -> Result<(), String> {
    let mut declared = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default().to_string();
            if declared.contains(&name) {
                return Err(format!("{name} declared twice"));
            }
            declared.push(name);
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|f| declared.iter().any(|d| d == f))
                })
                .unwrap_or(name);
            if !declared.iter().any(|d| d == family) {
                return Err(format!("{name} has no # TYPE line before it"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 3] = [0.01, 0.1, 1.0];

    #[test]
    fn durations_land_in_their_bucket_and_render_cumulatively() {
        let h = Histogram::new(&BOUNDS);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(60));
        h.observe(Duration::from_secs(3));
        let snapshot = h.snapshot();
        assert_eq!(snapshot.buckets, [1, 2, 0]);
        assert_eq!(snapshot.count, 4);
        let mut e = Exposition::default();
        e.histogram("x_seconds", "help", &snapshot);
        let text = e.finish();
        for expected in [
            r#"x_seconds_bucket{le="0.01"} 1"#,
            r#"x_seconds_bucket{le="0.1"} 3"#,
            r#"x_seconds_bucket{le="1"} 3"#,
            r#"x_seconds_bucket{le="+Inf"} 4"#,
            "x_seconds_sum 3.115",
            "x_seconds_count 4",
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected}:\n{text}");
        }
        assert_eq!(check_text(&text), Ok(()));
    }

    #[test]
    fn labels_are_escaped() {
        let mut e = Exposition::default();
        e.family("a", Kind::Gauge, "h")
            .sample("a", &[("name", "x\"y\\z\n")], 1);
        assert!(e.finish().contains(r#"a{name="x\"y\\z\n"} 1"#));
    }

    #[test]
    fn the_checker_finds_undeclared_and_twice_declared_families() {
        assert!(check_text("a 1\n").is_err());
        assert!(check_text("# TYPE a gauge\n# TYPE a gauge\n").is_err());
        assert_eq!(check_text("# TYPE a_count counter\na_count 1\n"), Ok(()));
    }
}
