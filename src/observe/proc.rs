//! Memory and CPU time of a process from Linux's `/proc/<pid>/stat` (fields 14 and 15: user
//! and system time in clock ticks) and `/proc/<pid>/statm` (field 2: resident pages). Other
//! systems read nothing (the monitor shows no process figures there).

use std::sync::LazyLock;

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time so far, in clock ticks ([`ticks_per_second`]).
    pub cpu_ticks: u64,
}

static PAGE_SIZE: LazyLock<u64> = LazyLock::new(|| {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().map_or(4096, |v| v.max(1) as u64)
});

static TICKS: LazyLock<u64> = LazyLock::new(|| {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().map_or(100, |v| v.max(1) as u64)
});

/// Clock ticks per second of [`ProcStat::cpu_ticks`].
pub fn ticks_per_second() -> u64 {
    *TICKS
}

/// Read process `pid` (`None`: this process); `None` when it is gone or `/proc` is absent.
pub fn read(pid: Option<u32>) -> Option<ProcStat> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_string(),
    };
    let statm = std::fs::read_to_string(format!("{dir}/statm")).ok()?;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(ProcStat { rss_bytes: pages.saturating_mul(*PAGE_SIZE), cpu_ticks: cpu_ticks(&stat)? })
}

/// utime + stime of a `stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// CPU use between two readings `elapsed_ms` apart, in percent of one core.
pub fn cpu_percent(before: u64, after: u64, elapsed_ms: u64) -> f64 {
    if elapsed_ms == 0 {
        return 0.0;
    }
    let seconds = after.saturating_sub(before) as f64 / ticks_per_second() as f64;
    seconds * 100_000.0 / elapsed_ms as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = read(None).expect("/proc/self on Linux");
        assert!(me.rss_bytes > 1 << 20, "{me:?}");
        assert_eq!(read(Some(u32::MAX)), None);
    }

    #[test]
    fn a_name_with_parentheses_does_not_shift_fields() {
        let stat = "42 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 17 4 0 0 20 0";
        assert_eq!(cpu_ticks(stat), Some(21));
        assert_eq!(cpu_percent(0, ticks_per_second(), 2000), 50.0);
    }
}

/// The gateway's own memory and CPU on every scrape of `/metrics`:
/// `sekisho_process_resident_memory_bytes` (gauge, bytes) and
/// `sekisho_process_cpu_seconds_total` (counter, seconds of user plus system time), the
/// Prometheus process-collector conventions under the gateway's prefix. Nothing is written
/// where `/proc` is absent. `deploy/prometheus/` alerts on the first.
#[derive(Debug)]
pub struct ProcessCollector;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::registry::Unit;
        let Some(stat) = read(None) else { return Ok(()) };
        let rss = ConstGauge::new(stat.rss_bytes as i64);
        let unit = Unit::Bytes;
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory",
            "Resident set size of the gateway process",
            Some(&unit),
            rss.metric_type(),
        )?)?;
        let cpu = ConstCounter::new(stat.cpu_ticks as f64 / ticks_per_second() as f64);
        let unit = Unit::Seconds;
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time of the gateway process",
            Some(&unit),
            cpu.metric_type(),
        )?)?;
        Ok(())
    }
}
