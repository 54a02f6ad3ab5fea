//! What a job may see: an environment built from an allow-list, and folders hidden from it
//! with Landlock.
//!
//! A training script is code Shoal did not write. It runs as the same Unix user as the hub or
//! the worker that starts it, so file modes do not keep it out of the hub's data folder (the
//! admin token, the manifest signing key, the metadata store). Three ways to keep it out were
//! weighed:
//! - **a Unix user of its own**: needs the hub to run as root to switch users, and a user per
//!   host set up by the installer; most hubs (a laptop, a container) run unprivileged.
//! - **a mount namespace** (a user namespace plus an empty tmpfs over the data folder): works
//!   unprivileged only where unprivileged user namespaces are enabled, and the job then sees
//!   itself as root inside it, which confuses tools that check their uid.
//! - **Landlock** (Linux 5.13+): an unprivileged process restricts itself and its children;
//!   nothing changes for the job except that the hidden paths cannot be opened, listed,
//!   executed or written, and other processes of the user cannot be traced or read through
//!   `/proc` (Landlock's ptrace scoping). This is what [`Sandbox`] uses.
//!
//! Landlock grants rights per hierarchy and has no "deny", so hiding a folder `/a/b/data` means
//! allowing every entry of `/`, then of `/a`, then of `/a/b`, except the one on the way to the
//! hidden folder; folders explicitly allowed (the job's own work folder, even inside a hidden
//! one) get full rights too. Symbolic links among those entries are skipped: what a link
//! points at is allowed or hidden where it really lives. New entries created later directly
//! inside an ancestor of a hidden folder are not reachable by the job, which is harmless.
//!
//! Landlock does not stop a job from reading its parent's `/proc/PID/environ` or listing its
//! open files, so the runner also makes itself non-dumpable before its first sandboxed job
//! (those entries then need CAP_SYS_PTRACE), and the job starts with an empty capability
//! bounding set, so a runner started as root does not hand it CAP_SYS_PTRACE either.
//!
//! Where the kernel has no Landlock, [`Sandbox::prepare`] says so: the caller refuses the job
//! when the sandbox is required, or logs a warning and runs it without.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Variables a job inherits from its runner when the runner's environment is filtered: what
/// programs need to start and find their tools, nothing that carries a credential.
pub const ENV_ALLOW_LIST: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_NUMERIC",
    "LC_TIME",
    "LC_COLLATE",
    "LC_MONETARY",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    "TERM",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Which of the runner's own variables a job inherits (its [`JobSpec::env`](crate::JobSpec)
/// is always added on top).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InheritEnv {
    /// Everything the runner has.
    #[default]
    All,
    /// Only the variables named in [`ENV_ALLOW_LIST`].
    AllowList,
}

impl InheritEnv {
    /// The runner's variables a job gets under this policy.
    pub fn inherited(&self) -> Vec<(OsString, OsString)> {
        let vars = std::env::vars_os();
        match self {
            InheritEnv::All => vars.collect(),
            InheritEnv::AllowList => vars
                .filter(|(name, _)| {
                    name.to_str()
                        .is_some_and(|name| ENV_ALLOW_LIST.contains(&name))
                })
                .collect(),
        }
    }
}

/// Folders a job must not reach, and folders it may use even inside them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sandbox {
    /// Hidden from the job: not opened, listed, executed or written (the hub's data folder,
    /// other runs' folders).
    pub hide: Vec<PathBuf>,
    /// Fully usable by the job even when inside a hidden folder (its own work folder).
    pub allow: Vec<PathBuf>,
    /// Refuse to start the job where the kernel cannot enforce the sandbox, rather than run it
    /// without one (with a warning).
    pub required: bool,
}

/// Why a sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel has no Landlock (older than 5.13, or not enabled at boot with `lsm=`).
    #[error("this kernel cannot hide folders from jobs (Landlock is unavailable: {0})")]
    Unsupported(io::Error),
    /// A rule could not be built.
    #[error("cannot build the job sandbox at {}: {source}", path.display())]
    Rule { path: PathBuf, source: io::Error },
}

/// A Landlock ruleset built in the runner, applied by the child between fork and exec with two
/// system calls (no allocation there).
#[derive(Debug)]
pub struct PreparedSandbox {
    ruleset: OwnedFd,
}

// Landlock's ABI (linux/landlock.h).
const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;
const ACCESS_EXECUTE: u64 = 1 << 0;
const ACCESS_WRITE_FILE: u64 = 1 << 1;
const ACCESS_READ_FILE: u64 = 1 << 2;
/// Every filesystem right of ABI 1: execute, write, read, read dir, remove dir/file, make
/// char/dir/reg/sock/fifo/block/sym.
const ACCESS_ABI1: u64 = (1 << 13) - 1;
const ACCESS_REFER: u64 = 1 << 13;
const ACCESS_TRUNCATE: u64 = 1 << 14;
const ACCESS_IOCTL_DEV: u64 = 1 << 15;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

impl Sandbox {
    /// What a run may not see: `hidden` (the hub's data folder, a worker's own files) and
    /// every run folder under `runs_dir` but its own `workdir`.
    pub fn for_run(hidden: &[PathBuf], runs_dir: &Path, workdir: &Path, required: bool) -> Sandbox {
        let mut hide = hidden.to_vec();
        hide.push(runs_dir.to_path_buf());
        Sandbox {
            hide,
            allow: vec![workdir.to_path_buf()],
            required,
        }
    }

    /// Whether there is anything to enforce.
    pub fn is_empty(&self) -> bool {
        self.hide.is_empty()
    }

    /// Builds the ruleset. Paths that do not exist are skipped (nothing to hide there).
    ///
    /// # Errors
    /// [`SandboxError::Unsupported`] where the kernel has no Landlock; [`SandboxError::Rule`]
    /// when a path cannot be opened for a rule.
    pub fn prepare(&self) -> Result<PreparedSandbox, SandboxError> {
        protect_runner();
        let abi = landlock_abi().map_err(SandboxError::Unsupported)?;
        let mut handled = ACCESS_ABI1;
        if abi >= 2 {
            handled |= ACCESS_REFER;
        }
        if abi >= 3 {
            handled |= ACCESS_TRUNCATE;
        }
        if abi >= 5 {
            handled |= ACCESS_IOCTL_DEV;
        }
        let attr = RulesetAttr {
            handled_access_fs: handled,
        };
        // SAFETY: the attribute is a valid, initialised struct of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(SandboxError::Unsupported(io::Error::last_os_error()));
        }
        // SAFETY: the kernel just returned this descriptor and nothing else owns it.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let file_rights = handled
            & (ACCESS_EXECUTE
                | ACCESS_WRITE_FILE
                | ACCESS_READ_FILE
                | ACCESS_TRUNCATE
                | ACCESS_IOCTL_DEV);
        for path in self.allowed_paths()? {
            add_rule(&ruleset, &path, handled, file_rights)?;
        }
        Ok(PreparedSandbox { ruleset })
    }

    /// Every path that gets full rights: the siblings along the way to each hidden folder,
    /// and the explicitly allowed folders.
    fn allowed_paths(&self) -> Result<Vec<PathBuf>, SandboxError> {
        let canonical = |path: &PathBuf| match std::fs::canonicalize(path) {
            Ok(path) => Ok(Some(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SandboxError::Rule {
                path: path.clone(),
                source,
            }),
        };
        let mut hidden = BTreeSet::new();
        for path in &self.hide {
            if let Some(path) = canonical(path)? {
                hidden.insert(path);
            }
        }
        // For each folder on the way to a hidden one, the entries not to allow.
        let mut blocked: BTreeMap<PathBuf, BTreeSet<OsString>> = BTreeMap::new();
        for path in &hidden {
            let mut ancestor = PathBuf::from("/");
            for component in path.components().skip(1) {
                let name = component.as_os_str().to_os_string();
                blocked
                    .entry(ancestor.clone())
                    .or_default()
                    .insert(name.clone());
                ancestor.push(name);
            }
        }
        let mut allowed = Vec::new();
        for (folder, names) in &blocked {
            // An ancestor that is itself hidden (one hidden folder inside another) grants
            // nothing.
            if hidden.iter().any(|h| folder.starts_with(h)) {
                continue;
            }
            let entries = std::fs::read_dir(folder).map_err(|source| SandboxError::Rule {
                path: folder.clone(),
                source,
            })?;
            for entry in entries.flatten() {
                if names.contains(&entry.file_name()) {
                    continue;
                }
                let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(true);
                if !is_link {
                    allowed.push(entry.path());
                }
            }
        }
        for path in &self.allow {
            if let Some(path) = canonical(path)? {
                allowed.push(path);
            }
        }
        Ok(allowed)
    }
}

impl PreparedSandbox {
    /// Restricts the calling process. Meant for the child between fork and exec: two system
    /// calls, no allocation.
    ///
    /// # Errors
    /// The system call's error.
    pub fn restrict_self(&self) -> io::Result<()> {
        // SAFETY: prctl and landlock_restrict_self take plain integers; the descriptor is
        // open for the lifetime of `self`.
        unsafe {
            // A runner started as root would hand the job every capability at exec, and
            // CAP_SYS_PTRACE reads the runner's memory and environment through /proc. Emptying
            // the bounding set leaves the job none (this fails harmlessly when not root).
            for capability in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0);
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Makes the runner's own process non-dumpable, once: its `/proc` entries (environment,
/// open files, memory) then need CAP_SYS_PTRACE to read, which jobs do not have. Landlock
/// alone lets a job read its parent's `/proc/PID/environ`. Side effects: no core dumps of the
/// runner, and its `/proc` entries belong to root.
fn protect_runner() {
    static PROTECTED: std::sync::Once = std::sync::Once::new();
    PROTECTED.call_once(|| {
        // SAFETY: a plain prctl on the calling process.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot make the runner non-dumpable; jobs may read its environment through /proc");
        }
    });
}

/// The Landlock ABI version the kernel offers.
fn landlock_abi() -> io::Result<i64> {
    // SAFETY: with the VERSION flag, the attribute pointer must be null and its size 0.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if abi < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(abi)
    }
}

fn add_rule(
    ruleset: &OwnedFd,
    path: &Path,
    dir_rights: u64,
    file_rights: u64,
) -> Result<(), SandboxError> {
    let rule_error = |source| SandboxError::Rule {
        path: path.to_path_buf(),
        source,
    };
    let mut c_path = path.as_os_str().as_bytes().to_vec();
    c_path.push(0);
    // SAFETY: a NUL-terminated path; O_PATH opens no content.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr().cast(),
            libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        // Gone since it was listed, or a special file: nothing to grant.
        if error.kind() == io::ErrorKind::NotFound {
            return Ok(());
        }
        return Err(rule_error(error));
    }
    // SAFETY: just opened, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let is_dir = std::fs::symlink_metadata(path)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    let attr = PathBeneathAttr {
        allowed_access: if is_dir { dir_rights } else { file_rights },
        parent_fd: fd.as_raw_fd(),
    };
    // SAFETY: a valid rule attribute for RULE_PATH_BENEATH and an open ruleset descriptor.
    let added = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    if added != 0 {
        return Err(rule_error(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_keeps_path_and_drops_credentials() {
        std::env::set_var("SHOAL_SANDBOX_TEST_SECRET", "s3cret");
        let inherited = InheritEnv::AllowList.inherited();
        assert!(inherited.iter().any(|(k, _)| k == "PATH"));
        assert!(!inherited
            .iter()
            .any(|(k, _)| k == "SHOAL_SANDBOX_TEST_SECRET"));
        assert!(InheritEnv::All
            .inherited()
            .iter()
            .any(|(k, _)| k == "SHOAL_SANDBOX_TEST_SECRET"));
    }

    #[test]
    fn siblings_along_the_way_are_allowed_and_the_hidden_folder_is_not() {
        let root = tempfile::tempdir().unwrap();
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        let data = root_path.join("data");
        let runs = root_path.join("runs");
        std::fs::create_dir_all(data.join("inner")).unwrap();
        std::fs::create_dir_all(runs.join("r1")).unwrap();
        std::fs::create_dir_all(runs.join("r2")).unwrap();
        std::fs::write(root_path.join("readme"), "x").unwrap();
        std::os::unix::fs::symlink(&data, root_path.join("link-to-data")).unwrap();
        let sandbox = Sandbox {
            hide: vec![data.clone(), runs.clone()],
            allow: vec![runs.join("r1")],
            required: true,
        };
        let allowed = sandbox.allowed_paths().unwrap();
        assert!(allowed.contains(&root_path.join("readme")));
        assert!(allowed.contains(&runs.join("r1")));
        assert!(!allowed.iter().any(|p| p.starts_with(&data)));
        assert!(!allowed.contains(&runs.join("r2")));
        assert!(!allowed.contains(&root_path.join("link-to-data")));
        assert!(allowed.contains(&PathBuf::from("/usr")));
    }
}
