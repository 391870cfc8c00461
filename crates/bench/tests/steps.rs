//! `src/lib.rs` in-process: the summary math against inputs whose answers are known.

use std::time::Duration;

use bench::{Summary, PERCENTILES};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 1, 2, ..., 1000 ms, shuffled (the summary must not depend on the order requests finished in).
fn one_to_a_thousand() -> Summary {
    let mut latencies: Vec<Duration> = (1..=1000).map(ms).collect();
    latencies.reverse();
    latencies.swap(0, 500);
    Summary::new(latencies, Duration::from_secs(2))
}

#[test]
fn percentiles_of_one_to_a_thousand_ms_are_nearest_rank() {
    let s = one_to_a_thousand();
    for (p, expected) in [
        (10.0, 100),
        (25.0, 250),
        (50.0, 500),
        (75.0, 750),
        (90.0, 900),
        (95.0, 950),
        (99.0, 990),
        (99.9, 999),
        (100.0, 1000),
        (0.0, 1),
    ] {
        assert_eq!(s.percentile(p), ms(expected), "p{p}");
    }
    assert_eq!(s.fastest(), ms(1));
    assert_eq!(s.slowest(), ms(1000));
    assert_eq!(s.count(), 1000);
}

#[test]
fn average_stddev_and_throughput_of_one_to_a_thousand_ms() {
    let s = one_to_a_thousand();
    let close = |a: Duration, b: f64| (a.as_secs_f64() - b).abs() < 1e-6;
    assert!(close(s.average(), 0.5005), "{:?}", s.average());
    // Population stddev of 1..=n is sqrt((n² - 1) / 12): 288.675 ms for n = 1000.
    assert!(close(s.stddev(), 0.288_674_9), "{:?}", s.stddev());
    assert!((s.requests_per_sec() - 500.0).abs() < 1e-9);
}

#[test]
fn the_histogram_spreads_uniform_latencies_evenly() {
    let s = one_to_a_thousand();
    let histogram = s.histogram(10);
    assert_eq!(histogram.len(), 10);
    assert_eq!(histogram.iter().map(|(_, c)| c).sum::<usize>(), 1000);
    for (bound, count) in &histogram {
        assert!((99..=101).contains(count), "{bound:?}: {count}");
    }
    assert_eq!(histogram.last().unwrap().0, ms(1000));
}

#[test]
fn render_prints_etcds_summary_lines() {
    let text = one_to_a_thousand().render();
    for line in [
        "Summary:",
        "  Total:\t2.0000 secs.",
        "  Slowest:\t1.0000 secs.",
        "  Fastest:\t0.0010 secs.",
        "  Average:\t0.5005 secs.",
        "  Stddev:\t0.2887 secs.",
        "  Requests/sec:\t500.0000",
        "Response time histogram:",
        "Latency distribution:",
        "  10% in 0.1000 secs.",
        "  50% in 0.5000 secs.",
        "  99% in 0.9900 secs.",
        "  99.9% in 0.9990 secs.",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.ends_with(" secs.") && l.contains("% in "))
            .count(),
        PERCENTILES.len()
    );
}

#[test]
fn one_request_and_no_request_give_sane_figures() {
    let one = Summary::new(vec![ms(7)], ms(7));
    assert_eq!(one.percentile(50.0), ms(7));
    assert_eq!(one.percentile(99.9), ms(7));
    assert_eq!(one.stddev(), Duration::ZERO);
    assert_eq!(one.histogram(10).iter().map(|(_, c)| c).sum::<usize>(), 1);

    let none = Summary::new(vec![], Duration::ZERO);
    assert_eq!(none.percentile(50.0), Duration::ZERO);
    assert_eq!(none.average(), Duration::ZERO);
    assert_eq!(none.requests_per_sec(), 0.0);
    assert!(none.histogram(10).is_empty());
    assert!(none.render().contains("Requests/sec:\t0.0000"));
}
