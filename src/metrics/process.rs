//! The usual `process_*` metrics of a Prometheus client, read from `/proc` at scrape time.

/// The process as one scrape reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessSample {
    /// Resident memory.
    pub resident_bytes: u64,
    /// Virtual memory.
    pub virtual_bytes: u64,
    /// Open file descriptors (sockets included).
    pub open_fds: u64,
    /// The soft limit on them (`None`: unlimited).
    pub max_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_secs: f64,
    /// User and system CPU time.
    pub cpu_secs: f64,
}

/// Reads the process's numbers; `None` when `/proc` cannot be read (then the scrape leaves
/// the `process_*` metrics out rather than failing).
pub fn sample() -> Option<ProcessSample> {
    let me = procfs::process::Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs().ok()? as f64;
    let max_fds = me.limits().ok().and_then(|l| match l.max_open_files.soft_limit {
        procfs::process::LimitValue::Value(v) => Some(v),
        procfs::process::LimitValue::Unlimited => None,
    });
    Some(ProcessSample {
        resident_bytes: stat.rss.saturating_mul(procfs::page_size()),
        virtual_bytes: stat.vsize,
        open_fds: me.fd_count().ok()? as u64,
        max_fds,
        start_time_secs: boot + stat.starttime as f64 / ticks,
        cpu_secs: (stat.utime + stat.stime) as f64 / ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let before = sample().expect("/proc is readable in tests");
        let file = std::fs::File::open("/proc/self/stat").expect("open");
        let during = sample().expect("sample");
        drop(file);
        assert!(before.resident_bytes > 1 << 20, "{before:?}");
        // stdin, stdout, stderr and the file at least.
        assert!(during.open_fds >= 4, "{during:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(before.start_time_secs <= now + 1.0 && before.start_time_secs > now - 3600.0);
    }
}
