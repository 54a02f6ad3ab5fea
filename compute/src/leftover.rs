//! Cleaning up after a runner that died without stopping its job.
//!
//! A job runs in a process group of its own, so when the runner (the hub or a worker) is
//! killed with SIGKILL, nothing signals that group: the job keeps running as an orphan,
//! holding CPUs, GPUs and ports. To find it again, [`run_job`](crate::run_job) writes a
//! [`GroupRecord`] to [`JobSpec::group_file`](crate::JobSpec::group_file) while the job runs
//! and removes it once the group is gone. A restarted runner calls [`kill_leftover_group`] on
//! every record it finds.
//!
//! Process ids are reused, so a record alone does not prove the group is still the job's. A
//! group is killed only when the record was written during this boot (the kernel's boot id)
//! and its leader is either gone (the group's members are then the job's orphans: a new group
//! with that id needs a new leader with that pid) or is the very process that was started
//! (same start time, in clock ticks since boot).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Which process group a job ran in, and how to recognise it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The group id, which is the leader's pid.
    pub pgid: i32,
    /// The leader's start time in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub leader_start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` when the job started.
    pub boot_id: String,
}

impl GroupRecord {
    /// Describes the group led by `pid`, or `None` when `/proc` cannot tell.
    pub fn for_leader(pid: u32) -> Option<GroupRecord> {
        Some(GroupRecord {
            pgid: i32::try_from(pid).ok()?,
            leader_start_ticks: start_ticks(pid)?,
            boot_id: boot_id()?,
        })
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Field 22 of `/proc/<pid>/stat`; the command name (field 2) may hold spaces and parentheses,
/// so fields are counted after its closing parenthesis.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After ")": field 3 (state) is the first; field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether any process is in group `pgid` (zombies included).
fn group_exists(pgid: i32) -> bool {
    // SAFETY: killpg with signal 0 only checks for existence and permission.
    unsafe { libc::killpg(pgid, 0) == 0 }
}

/// Writes a record atomically (temporary file, then rename).
///
/// # Errors
/// When the file cannot be written.
pub fn write_group_record(path: &Path, record: &GroupRecord) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("tmp");
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, path)
}

/// Kills what is left of the job recorded at `path`, if it is still the job's, and removes
/// the record. Returns whether a group was killed. A missing record is not an error.
///
/// # Errors
/// When the record exists but cannot be read or removed.
pub fn kill_leftover_group(path: &Path) -> io::Result<bool> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    let killed = match serde_json::from_slice::<GroupRecord>(&bytes) {
        Ok(record) if is_still_the_job(&record) => {
            // SAFETY: plain signal delivery to a process group we verified as the job's.
            let sent = unsafe { libc::killpg(record.pgid, libc::SIGKILL) } == 0;
            if sent {
                tracing::warn!(
                    pgid = record.pgid,
                    "killed a job's process group left behind by an earlier runner"
                );
            }
            sent
        }
        Ok(_) => false,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "unreadable process group record");
            false
        }
    };
    std::fs::remove_file(path)?;
    Ok(killed)
}

fn is_still_the_job(record: &GroupRecord) -> bool {
    if record.pgid <= 1 || boot_id().as_deref() != Some(record.boot_id.as_str()) {
        return false;
    }
    if !group_exists(record.pgid) {
        return false;
    }
    match start_ticks(record.pgid as u32) {
        // The leader is gone: the members are the job's orphans.
        None => true,
        Some(ticks) => ticks == record.leader_start_ticks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_of_this_process_are_readable() {
        assert!(start_ticks(std::process::id()).is_some());
        let record = GroupRecord::for_leader(std::process::id()).expect("a record");
        assert!(!record.boot_id.is_empty());
    }

    #[test]
    fn a_record_from_another_boot_or_a_reused_pid_kills_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("group.json");
        // This test process leads no group of its own that may be killed: use a record whose
        // leader is this process but with another start time.
        let mut record = GroupRecord::for_leader(std::process::id()).expect("a record");
        record.leader_start_ticks += 1;
        write_group_record(&path, &record).expect("write");
        assert!(!kill_leftover_group(&path).expect("checked"));
        assert!(!path.exists(), "the record is removed either way");

        record.leader_start_ticks -= 1;
        record.boot_id = "another-boot".into();
        write_group_record(&path, &record).expect("write");
        assert!(!kill_leftover_group(&path).expect("checked"));
        assert!(!kill_leftover_group(&path).expect("a missing record is fine"));
    }
}
