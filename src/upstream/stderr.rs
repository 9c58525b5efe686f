//! A stdio child's stderr: read for as long as the child keeps it open (a child whose stderr
//! pipe closes gets EPIPE on its next write, and most servers die of it), and logged as lines
//! cut to [`LOGGED_LINE_BYTES`] within a per-upstream rate, so one chatty or hostile child can
//! neither flood the gateway's log nor grow its memory. Lines over the rate are counted
//! (`sekisho_upstream_discarded_total{kind="stderr_line"}`) and their number logged with the
//! next logged line, or after a second of quiet.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::observe::metrics::METRICS;

/// The most bytes of one stderr line that reach the log; the rest is counted, not kept.
pub const LOGGED_LINE_BYTES: usize = 2048;
/// Bytes read from the pipe at a time.
const READ_CHUNK: usize = 8192;
/// The bucket holds this many seconds' worth of lines (a child's start-up burst).
const BURST_SECONDS: u32 = 5;
/// After this long without output, the number of dropped lines is logged.
const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

/// The stderr log budget of one upstream, shared by its processes: a token bucket of
/// `stderr_lines_per_second` lines a second, holding [`BURST_SECONDS`] seconds' worth.
#[derive(Debug)]
pub struct StderrLog {
    upstream: Arc<str>,
    per_second: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

/// What the budget says about one line.
#[derive(Debug, PartialEq, Eq)]
enum Take {
    /// Log it; `dropped` lines were dropped since the last logged one.
    Log { dropped: u64 },
    /// Drop it.
    Drop,
}

impl StderrLog {
    /// The budget of `upstream`: `per_second` lines a second on average (0 logs nothing).
    pub fn new(upstream: &Arc<str>, per_second: u32) -> Self {
        let burst = f64::from(per_second.saturating_mul(BURST_SECONDS));
        StderrLog {
            upstream: Arc::clone(upstream),
            per_second: f64::from(per_second),
            burst,
            bucket: Mutex::new(Bucket { tokens: burst, refilled: Instant::now(), dropped: 0 }),
        }
    }

    fn take(&self, now: Instant) -> Take {
        let mut b = self.bucket.lock().expect("stderr bucket lock");
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Take::Log { dropped: std::mem::take(&mut b.dropped) }
        } else {
            b.dropped += 1;
            Take::Drop
        }
    }

    /// Log one line of process `pid` (`cut` more bytes of it were not kept), within budget.
    fn line(&self, pid: Option<u32>, text: &[u8], cut: usize) {
        match self.take(Instant::now()) {
            Take::Drop => METRICS.upstream_discarded(METRICS.upstream_name(&self.upstream), "stderr_line"),
            Take::Log { dropped } => {
                self.announce(dropped);
                let text = String::from_utf8_lossy(text);
                let text =
                    crate::detect::redact::text(&text, crate::detect::KindSet::ALL, crate::detect::redact::Place::Log);
                if cut > 0 {
                    tracing::info!(target: "sekisho::upstream::stderr", upstream = %self.upstream, pid, truncated_bytes = cut, "{text}…");
                } else {
                    tracing::info!(target: "sekisho::upstream::stderr", upstream = %self.upstream, pid, "{text}");
                }
            }
        }
    }
}

impl StderrLog {
    fn announce(&self, dropped: u64) {
        if dropped > 0 {
            tracing::warn!(upstream = %self.upstream, dropped, "stderr lines over the rate limit were not logged");
        }
    }

    /// Log how many lines were dropped since the last logged one, if any.
    fn flush(&self) {
        let dropped = std::mem::take(&mut self.bucket.lock().expect("stderr bucket lock").dropped);
        self.announce(dropped);
    }
}

/// Read `stderr` of process `pid` until it ends (the child closed it or exited), logging its
/// lines through `log`. Memory stays bounded by [`READ_CHUNK`] + [`LOGGED_LINE_BYTES`] however
/// long a line is.
pub async fn drain(log: Arc<StderrLog>, pid: Option<u32>, mut stderr: impl AsyncRead + Unpin) {
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut line = Line::default();
    loop {
        let n = match tokio::time::timeout(QUIET, stderr.read(&mut chunk)).await {
            Err(_) => {
                log.flush();
                continue;
            }
            Ok(read) => read,
        };
        let n = match n {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(upstream = %log.upstream, pid, error = %e, "reading the child's stderr failed");
                break;
            }
        };
        let mut rest = &chunk[..n];
        while let Some(i) = memchr::memchr(b'\n', rest) {
            line.push(&rest[..i]);
            line.finish(&log, pid);
            rest = &rest[i + 1..];
        }
        line.push(rest);
    }
    line.finish(&log, pid);
    log.flush();
}

/// The line being read: its first [`LOGGED_LINE_BYTES`] bytes, and how many more it had; and
/// whether it is inside a PEM private key that an earlier line opened (each line is redacted
/// alone, so a key printed over many lines is followed here until its `-----END` line).
#[derive(Default)]
struct Line {
    kept: Vec<u8>,
    cut: usize,
    in_private_key: bool,
}

impl Line {
    fn push(&mut self, part: &[u8]) {
        let room = LOGGED_LINE_BYTES - self.kept.len();
        let take = part.len().min(room);
        self.kept.extend_from_slice(&part[..take]);
        self.cut += part.len() - take;
    }

    fn finish(&mut self, log: &StderrLog, pid: Option<u32>) {
        let text = self.kept.strip_suffix(b"\r").unwrap_or(&self.kept);
        let hidden = crate::detect::redact::inside_private_key(&mut self.in_private_key, text);
        let text = hidden.as_ref().map_or(text, |h| h.as_bytes());
        if !text.iter().all(u8::is_ascii_whitespace) || self.cut > 0 {
            log.line(pid, text, self.cut);
        }
        self.kept.clear();
        self.cut = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_the_rate_and_counts_what_it_dropped() {
        let log = StderrLog::new(&Arc::from("u"), 2);
        let t0 = Instant::now();
        let logged = (0..20).filter(|_| log.take(t0) != Take::Drop).count();
        assert_eq!(logged, 10, "a burst of five seconds' worth");
        assert_eq!(log.take(t0 + Duration::from_secs(1)), Take::Log { dropped: 10 }, "refilled at 2 lines/s");
        assert_eq!(log.take(t0 + Duration::from_secs(1)), Take::Log { dropped: 0 });
        assert_eq!(log.take(t0 + Duration::from_secs(1)), Take::Drop);
        let silent = StderrLog::new(&Arc::from("u"), 0);
        assert_eq!(silent.take(t0 + Duration::from_secs(60)), Take::Drop, "0 logs nothing");
    }

    #[tokio::test]
    async fn a_line_longer_than_any_buffer_is_cut_and_reading_goes_on() {
        let (mut w, r) = tokio::io::duplex(1024);
        let log = Arc::new(StderrLog::new(&Arc::from("u"), 100));
        let reader = tokio::spawn(drain(Arc::clone(&log), None, r));
        use tokio::io::AsyncWriteExt;
        w.write_all(&vec![b'x'; 1 << 20]).await.unwrap();
        w.write_all(b"\nnext line\n").await.unwrap();
        drop(w);
        reader.await.unwrap();
        let b = log.bucket.lock().unwrap();
        assert!(b.tokens < log.burst - 1.5, "both lines were logged");
    }
}
