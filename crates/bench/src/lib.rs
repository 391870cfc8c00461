//! The reusable part of the `bench` topic: a latency summary in the shape etcd's own `benchmark` tool
//! prints (`Summary:`, `Requests/sec:`, a histogram, `Latency distribution:`), from a list of durations.
//!
//! It uses only the standard library, so it can be copied into any load test or service as is. Record one
//! `Duration` per request (each worker in its own `Vec`, merged at the end, so that recording costs no lock
//! on the hot path), then build a [`Summary`] and print it.

use std::fmt::Write as _;
use std::time::Duration;

/// The percentiles etcd's `benchmark` tool prints under `Latency distribution:`.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// What a run measured: every request's latency, sorted, and the wall time of the whole run.
///
/// Use it at the end of a load test: `Summary::new(latencies, elapsed)`, then print [`Summary::render`]
/// or read single figures ([`Summary::percentile`], [`Summary::requests_per_sec`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Every request's latency, sorted from fastest to slowest.
    pub sorted: Vec<Duration>,
    /// Wall-clock time of the whole run (not the sum of latencies: concurrent requests overlap).
    pub total: Duration,
}

impl Summary {
    /// Sorts `latencies` (one per request, in any order) and keeps the run's wall time.
    pub fn new(mut latencies: Vec<Duration>, total: Duration) -> Summary {
        latencies.sort_unstable();
        Summary {
            sorted: latencies,
            total,
        }
    }

    /// How many requests were measured.
    pub fn count(&self) -> usize {
        self.sorted.len()
    }

    /// Requests completed per second of wall time: the throughput figure to compare between tools.
    pub fn requests_per_sec(&self) -> f64 {
        let secs = self.total.as_secs_f64();
        if secs > 0.0 {
            self.count() as f64 / secs
        } else {
            0.0
        }
    }

    /// The slowest request, or zero when nothing was measured.
    pub fn slowest(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }

    /// The fastest request, or zero when nothing was measured.
    pub fn fastest(&self) -> Duration {
        self.sorted.first().copied().unwrap_or_default()
    }

    /// The mean latency.
    pub fn average(&self) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.sum_secs() / self.count() as f64)
    }

    /// The population standard deviation of the latencies (as etcd's tool computes it).
    pub fn stddev(&self) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let n = self.count() as f64;
        let mean = self.sum_secs() / n;
        let variance = self
            .sorted
            .iter()
            .map(|d| (d.as_secs_f64() - mean).powi(2))
            .sum::<f64>()
            / n;
        Duration::from_secs_f64(variance.sqrt())
    }

    /// The latency under which `p` percent of the requests completed (nearest rank: the smallest
    /// measured latency with at least `p`% of requests at or below it). `p` is clamped to 0..=100.
    ///
    /// etcd's Go tool picks the element at index `ceil(n·p/100)`, one place later; on thousands of
    /// requests the two differ by one sample, which is noise.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let n = self.count();
        // p·n/100 in floating point is a hair off for most p (99.9% of 1000 is 999.0000000000001):
        // a value within 1e-9 of a whole number is that number, so ceil() does not skip a rank.
        let exact = p.clamp(0.0, 100.0) * n as f64 / 100.0;
        let rank = if (exact - exact.round()).abs() < 1e-9 {
            exact.round()
        } else {
            exact.ceil()
        } as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }

    /// A histogram of `buckets` equal-width buckets from fastest to slowest: each entry is the bucket's
    /// upper bound and how many requests fell in it. Empty when nothing was measured.
    pub fn histogram(&self, buckets: usize) -> Vec<(Duration, usize)> {
        if self.sorted.is_empty() || buckets == 0 {
            return Vec::new();
        }
        let (low, high) = (self.fastest().as_secs_f64(), self.slowest().as_secs_f64());
        let width = (high - low) / buckets as f64;
        let mut counts = vec![0usize; buckets];
        for d in &self.sorted {
            let i = if width > 0.0 {
                (((d.as_secs_f64() - low) / width) as usize).min(buckets - 1)
            } else {
                buckets - 1
            };
            counts[i] += 1;
        }
        counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| (Duration::from_secs_f64(low + width * (i + 1) as f64), c))
            .collect()
    }

    /// The summary as etcd's `benchmark` tool prints it (tab after each label, seconds with 4 decimals),
    /// so the two tools' output can be read, and parsed, the same way.
    pub fn render(&self) -> String {
        let secs = |d: Duration| format!("{:.4}", d.as_secs_f64());
        let mut out = String::new();
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(out, "  Total:\t{} secs.", secs(self.total));
        let _ = writeln!(out, "  Slowest:\t{} secs.", secs(self.slowest()));
        let _ = writeln!(out, "  Fastest:\t{} secs.", secs(self.fastest()));
        let _ = writeln!(out, "  Average:\t{} secs.", secs(self.average()));
        let _ = writeln!(out, "  Stddev:\t{} secs.", secs(self.stddev()));
        let _ = writeln!(out, "  Requests/sec:\t{:.4}", self.requests_per_sec());
        let _ = writeln!(out, "\nResponse time histogram:");
        let histogram = self.histogram(10);
        let most = histogram.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1);
        for (bound, count) in histogram {
            let bar = "∎".repeat(count * 40 / most);
            let _ = writeln!(out, "  {} [{count}]\t|{bar}", secs(bound));
        }
        let _ = writeln!(out, "\nLatency distribution:");
        for p in PERCENTILES {
            let _ = writeln!(out, "  {p}% in {} secs.", secs(self.percentile(p)));
        }
        out
    }

    fn sum_secs(&self) -> f64 {
        self.sorted.iter().map(Duration::as_secs_f64).sum()
    }
}
