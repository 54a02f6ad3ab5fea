//! The device's health as telemetry windows report it: the agent's CPU use since the last
//! window, its resident memory, and the free space where it keeps its data.
//!
//! Linux exposes the first two in `/proc/self`; free space comes from `statvfs`. Where any of
//! these is unavailable (another OS, a locked-down `/proc`) the value is 0 rather than an
//! error: health is informative, never a reason to lose a window. Reading them is blocking
//! file I/O, done on the blocking pool with the window's other disk work.

use std::path::Path;
use std::time::Instant;

/// One health reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostHealth {
    /// CPU time the process used since the previous reading, as a percentage of one core
    /// (above 100 when it kept several cores busy).
    pub cpu_percent: f32,
    pub rss_bytes: u64,
    /// Space available to the agent (not to root) on the data directory's filesystem.
    pub disk_free_bytes: u64,
}

/// Reads health; remembers the last CPU reading so each window gets its own share.
#[derive(Debug)]
pub struct HostSampler {
    /// Process CPU ticks and when they were read.
    last: Option<(u64, Instant)>,
    ticks_per_second: u64,
}

impl HostSampler {
    /// Starts counting CPU time from now.
    pub fn new() -> HostSampler {
        HostSampler {
            last: process_cpu_ticks().map(|ticks| (ticks, Instant::now())),
            ticks_per_second: clock_ticks_per_second(),
        }
    }

    /// Reads the process's CPU use since the last call, its RSS and the free space at
    /// `data_dir`.
    pub fn sample(&mut self, data_dir: &Path) -> HostHealth {
        let now = Instant::now();
        let ticks = process_cpu_ticks();
        let cpu_percent = match (self.last, ticks) {
            (Some((before, at)), Some(ticks)) => cpu_percent(
                ticks.saturating_sub(before),
                self.ticks_per_second,
                now.duration_since(at).as_secs_f64(),
            ),
            _ => 0.0,
        };
        self.last = ticks.map(|ticks| (ticks, now));
        HostHealth {
            cpu_percent,
            rss_bytes: resident_bytes().unwrap_or(0),
            disk_free_bytes: free_bytes(data_dir).unwrap_or(0),
        }
    }
}

impl Default for HostSampler {
    fn default() -> Self {
        HostSampler::new()
    }
}

fn cpu_percent(ticks: u64, ticks_per_second: u64, elapsed_secs: f64) -> f32 {
    if ticks_per_second == 0 || elapsed_secs <= 0.0 {
        return 0.0;
    }
    (ticks as f64 / ticks_per_second as f64 / elapsed_secs * 100.0) as f32
}

/// utime + stime of this process, in clock ticks.
fn process_cpu_ticks() -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The `stat` line is `pid (comm) state ppid …`; `comm` may hold spaces and parentheses, so
/// the fields are counted from the last `)`. utime and stime are fields 14 and 15.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn resident_bytes() -> Option<u64> {
    parse_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmRSS:     12345 kB` from `/proc/self/status`.
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(unix)]
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

#[cfg(not(unix))]
fn clock_ticks_per_second() -> u64 {
    100
}

#[cfg(unix)]
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `stat` is plain old data that statvfs fills in; `path` is a valid C string
    // that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
fn free_bytes(_path: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (shoal agent (x)) S 1 4242 4242 0 -1 4194304 2741 0 0 0 150 25 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(175));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        let status = "Name:\tshoal-agent\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t9\n";
        assert_eq!(parse_rss(status), Some(2048 * 1024));
        assert_eq!(parse_rss("Name: x\n"), None);
        assert_eq!(cpu_percent(50, 100, 2.0), 25.0);
        assert_eq!(cpu_percent(50, 100, 0.0), 0.0);
    }

    #[test]
    fn samples_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut sampler = HostSampler::new();
        let health = sampler.sample(dir.path());
        assert!(health.cpu_percent >= 0.0);
        if cfg!(target_os = "linux") {
            assert!(health.rss_bytes > 0, "{health:?}");
            assert!(health.disk_free_bytes > 0, "{health:?}");
        }
    }
}
