//! Tests of the monitor with tokio's paused clock: a sample per interval, a ring that holds
//! `retention` and no more, breakdowns bounded with many upstreams, deltas and percentiles of
//! the process's real metrics.

use std::sync::Arc;
use std::time::Duration;

use super::exposition::Counts;
use super::reading::{ChildStat, Reading, Sources, UpstreamState};
use super::sample::{OTHER, percentile};
use super::*;
use crate::observe::metrics::{METRICS, Name};
use crate::observe::proc::ProcStat;
use crate::upstream::UpstreamSet;

fn config(interval: u64, retention: u64, top_n: usize) -> MonitorConfig {
    MonitorConfig {
        enabled: true,
        interval: Duration::from_secs(interval),
        retention: Duration::from_secs(retention),
        top_n,
        replica: String::new(),
    }
}

fn real_reading(upstreams: &UpstreamSet) -> Reading {
    Reading::take(&Sources { upstreams, admission: None, sessions: 3, streams: 1, cost: None })
}

#[tokio::test(start_paused = true)]
async fn samples_every_interval() {
    let monitor = Arc::new(Monitor::new(&config(30, 24 * 3600, 10)));
    let upstreams = Arc::new(UpstreamSet::new(std::iter::empty()));
    let stop = CancellationToken::new();
    let (m, u, s) = (Arc::clone(&monitor), Arc::clone(&upstreams), stop.clone());
    let task = tokio::spawn(async move { m.run(|| Some(real_reading(&u)), s).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(monitor.len(), 0, "the first reading is the baseline");
    for n in 1..=5 {
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(monitor.len(), n);
    }
    let samples = monitor.samples(Duration::from_secs(3600));
    assert_eq!(samples.len(), 5);
    for pair in samples.windows(2) {
        assert_eq!(pair[1].timestamp_ms - pair[0].timestamp_ms, 30_000);
    }
    let last = monitor.latest().unwrap();
    assert_eq!((last.interval_ms, last.sessions, last.streams), (30_000, 3, 1));
    assert!(last.gateway.as_ref().is_some_and(|g| g.rss_bytes > 0), "{last:?}");
    assert_eq!(monitor.samples(Duration::from_secs(60)).len(), 2, "only the last minute's");
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_ring_holds_retention_and_no_more_over_a_day_and_more() {
    let monitor = Arc::new(Monitor::new(&config(30, 24 * 3600, 10)));
    assert_eq!(monitor.capacity(), 2880);
    let allocated = monitor.ring.lock().unwrap().samples.capacity();
    let stop = CancellationToken::new();
    let (m, s) = (Arc::clone(&monitor), stop.clone());
    let task = tokio::spawn(async move { m.run(|| Some(Reading::default()), s).await });
    let start = monitor.now_ms();
    tokio::time::sleep(Duration::from_secs(24 * 3600 + 1)).await;
    assert_eq!(monitor.len(), 2880, "a day of samples");
    tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
    assert_eq!(monitor.len(), 2880, "still a day after 30 h");
    let samples = monitor.samples(Duration::from_secs(48 * 3600));
    assert_eq!(samples.len(), 2880);
    // 3600 samples were made; the first 720 (6 h) were dropped.
    assert_eq!(samples[0].timestamp_ms, start + 721 * 30_000);
    assert_eq!(samples.last().unwrap().timestamp_ms, start + 3600 * 30_000);
    assert_eq!(monitor.samples(Duration::from_secs(3600)).len(), 120);
    assert_eq!(monitor.ring.lock().unwrap().samples.capacity(), allocated, "the ring never grew");
    stop.cancel();
    task.await.unwrap();
}

/// A reading of `n` upstreams after `round` rounds of calls (upstream `i` gets `i + 1` calls a
/// round, one error in ten), with two children each.
fn synthetic(n: usize, round: u64, bounds: &[f64]) -> Reading {
    let mut r = Reading::default();
    r.totals.bounds = bounds.to_vec();
    for i in 0..n {
        let name: Arc<str> = format!("up{i:02}").into();
        let calls = round * (i as u64 + 1);
        let c = Counts {
            calls,
            errors: calls / 10,
            buckets: vec![calls / 2, calls, calls],
            seconds: calls as f64 * 0.01,
            ..Default::default()
        };
        r.totals.upstreams.insert(Arc::clone(&name), c.clone());
        r.totals.methods.insert(format!("m{i}").into(), c.clone());
        r.totals.tool_calls.insert((Arc::clone(&name), "t".into()), c);
        r.upstreams.push(UpstreamState {
            name: Arc::clone(&name),
            up: i % 7 != 0,
            breakers_open: 1,
            ..Default::default()
        });
        for k in 0..2 {
            let stat = ProcStat { rss_bytes: (i as u64 + 1) << 20, cpu_ticks: round * 10 };
            r.children.push(ChildStat { upstream: Arc::clone(&name), pid: (i * 2 + k) as u32 + 1000, stat });
        }
    }
    r
}

#[tokio::test(start_paused = true)]
async fn memory_is_bounded_with_fifty_upstreams_over_a_simulated_day() {
    let monitor = Monitor::new(&config(30, 24 * 3600, 10));
    let bounds = [0.01, 0.1];
    let allocated = monitor.ring.lock().unwrap().samples.capacity();
    for round in 0..=3000 {
        monitor.record(synthetic(50, round, &bounds));
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    assert_eq!(monitor.len(), 2880);
    assert_eq!(monitor.ring.lock().unwrap().samples.capacity(), allocated);
    let s = monitor.latest().unwrap();
    assert_eq!(s.calls, (1..=50).sum::<u64>());
    assert_eq!(s.by_upstream.len(), 11, "top 10 and other");
    assert_eq!(s.by_method.len(), 11);
    assert_eq!(s.by_tool.len(), 11, "top 10 tools and other");
    let (busiest, rest) = (&s.by_tool[0], s.by_tool.last().unwrap());
    assert_eq!((busiest.upstream.as_ref(), busiest.tool.as_ref(), busiest.calls), ("up49", "t", 50));
    assert_eq!((busiest.errors, busiest.mean_ms), (5, Some(10.0)), "one in ten failed, 10 ms each");
    assert_eq!((rest.tool.as_ref(), rest.calls), (OTHER, (1..=40).sum::<u64>()));
    assert_eq!(s.health.len(), 11);
    assert_eq!(s.children.len(), 11);
    assert_eq!(s.by_upstream[0].name.as_ref(), "up49", "the busiest first");
    let other = s.by_upstream.last().unwrap();
    assert_eq!((other.name.as_ref(), other.calls), (OTHER, (1..=40).sum::<u64>()));
    assert_eq!(s.by_upstream.iter().map(|b| b.calls).sum::<u64>(), s.calls, "nothing lost in other");
    assert_eq!((s.upstreams_up + s.upstreams_down, s.upstreams_down, s.breakers_open), (50, 8, 50));
    assert_eq!(s.health[0].down, 1, "down upstreams first");
    let hidden = s.children.last().unwrap();
    assert_eq!((hidden.name.as_ref(), hidden.count), (OTHER, 90));
    assert!(s.children[0].cpu_percent > 0.0);
}

#[test]
fn percentiles_interpolate_within_buckets() {
    let bounds = [0.001, 0.002, 0.004];
    // 10 calls ≤ 1 ms, 10 more ≤ 2 ms, none ≤ 4 ms, none above.
    assert_eq!(percentile(&bounds, &[10, 20, 20, 20], 0.5), Some(1.0));
    assert_eq!(percentile(&bounds, &[10, 20, 20, 20], 0.25), Some(0.5));
    assert_eq!(percentile(&bounds, &[10, 20, 20, 20], 0.75), Some(1.5));
    // Above every bound: the largest bound.
    assert_eq!(percentile(&bounds, &[0, 0, 0, 4], 0.99), Some(4.0));
    assert_eq!(percentile(&bounds, &[0, 0, 0, 0], 0.5), None);
}

#[tokio::test(start_paused = true)]
async fn a_sample_counts_the_calls_of_its_interval() {
    let monitor = Monitor::new(&config(1, 60, 10));
    let upstreams = UpstreamSet::new(std::iter::empty());
    let up = || Name::Static("monitor-a");
    METRICS.call("tools/call", up(), "ok", Duration::from_millis(3));
    monitor.record(real_reading(&upstreams));
    for _ in 0..9 {
        METRICS.call("tools/call", up(), "ok", Duration::from_millis(3));
    }
    METRICS.call("tools/call", up(), "timeout", Duration::from_millis(3));
    METRICS.call("tools/call", up(), "tool_error", Duration::from_millis(3));
    tokio::time::advance(Duration::from_secs(1)).await;
    monitor.record(real_reading(&upstreams));
    let s = monitor.latest().unwrap();
    let a = s.by_upstream.iter().find(|b| b.name.as_ref() == "monitor-a").expect("monitor-a");
    assert_eq!((a.calls, a.errors, a.tool_errors), (11, 1, 1));
    // 3 ms lies in the (2.048 ms, 4.096 ms] bucket.
    assert!(a.p95_ms.is_some_and(|p| (2.048..=4.096).contains(&p)), "{a:?}");
    assert!(s.calls >= 11 && s.requests_per_sec >= 11.0, "{s:?}");
    assert!(s.error_rate > 0.0);
}

#[test]
fn a_sample_is_small() {
    // The ring reserves this much per sample at start (2880 samples at the defaults: under
    // 1.5 MiB); breakdowns add ~64 bytes an entry. Grew from 400 with the recommendations'
    // admission queue, the performance totals and cost per hour.
    assert!(std::mem::size_of::<Sample>() <= 512, "size_of::<Sample>() = {}", std::mem::size_of::<Sample>());
}

#[tokio::test(start_paused = true)]
async fn samples_read_back_from_json_go_before_the_own_ones_within_capacity() {
    let monitor = Monitor::new(&config(30, 90, 10));
    assert_eq!(monitor.capacity(), 3);
    let bounds = [0.01, 0.1];
    monitor.record(synthetic(2, 0, &bounds));
    tokio::time::advance(Duration::from_secs(30)).await;
    monitor.record(synthetic(2, 1, &bounds));
    let own = monitor.latest().unwrap();
    let json = serde_json::to_vec(&own).unwrap();
    let back: Sample = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, own, "a sample survives its trip through Redis");
    let old = |t: u64| Sample { timestamp_ms: t, ..back.clone() };
    let first = own.timestamp_ms;
    monitor.restore(vec![old(first - 3000), old(first - 2000), old(first - 1000), old(first + 5)]);
    let stamps: Vec<u64> = monitor.samples(Duration::from_secs(3600)).iter().map(|s| s.timestamp_ms).collect();
    assert_eq!(stamps, [first - 2000, first - 1000, first], "the newest that fit, oldest first; none after its own");
}
