//! Local staging directories of jobs: made by the service (never named from event text) in the
//! work directory, each holding an exclusive `flock` on its `.lock` file for as long as its job
//! runs. A clean-up removes only directories whose lock no live process holds, so what a killed
//! run left is removed and a neighbour's job in progress is not. Also: the room a job needs.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;

use rustix::fs::FlockOperation;

const PREFIX: &str = "stylestream-job-";
const LOCK: &str = ".lock";

/// A job's staging directory; removed when dropped, locked until then.
pub struct StagingDir {
    // Field order: the directory goes before the lock is released.
    dir: tempfile::TempDir,
    _lock: File,
}

impl StagingDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Makes a staging directory in `work_dir` and takes its lock.
pub fn create(work_dir: &Path) -> io::Result<StagingDir> {
    std::fs::create_dir_all(work_dir)?;
    let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in(work_dir)?;
    let lock = File::create(dir.path().join(LOCK))?;
    rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive)?;
    Ok(StagingDir { dir, _lock: lock })
}

/// Removes the staging directories in `work_dir` that no live process holds (a directory
/// without a lock file counts as held for its first minute: it is being made). Returns how many
/// were removed.
pub fn clean(work_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(work_dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        let stale = match File::open(path.join(LOCK)) {
            // Held by nobody if we can take it; dropping the file releases it again.
            Ok(f) => rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok(),
            Err(_) => e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(60)),
        };
        if stale && std::fs::remove_dir_all(&path).is_ok() {
            tracing::info!(dir = %path.display(), "removed a staging directory left by a stopped run");
            removed += 1;
        }
    }
    removed
}

/// Why a job does not fit on the work directory's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoom {
    /// Larger than the whole file system: it never will.
    Never(String),
    /// Not in the free space now: later, perhaps.
    Now(String),
}

/// Checks that `factor × input_bytes` (input, output and room) fits on the file system of
/// `dir` as a whole, and that it plus `margin_bytes` fits in its free space now.
pub fn check_room(dir: &Path, input_bytes: u64, factor: f64, margin_bytes: u64) -> Result<(), NoRoom> {
    let need = (input_bytes as f64 * factor.max(1.0)).ceil() as u64;
    let Ok(st) = rustix::fs::statvfs(dir) else {
        return Ok(()); // unknown: the writes themselves will tell
    };
    let total = st.f_blocks.saturating_mul(st.f_frsize);
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if need > total {
        return Err(NoRoom::Never(format!(
            "needs {need} bytes of local disk, more than the work directory's file system holds ({total} bytes)"
        )));
    }
    if need.saturating_add(margin_bytes) > free {
        return Err(NoRoom::Now(format!(
            "needs {} bytes of local disk, {free} free now",
            need.saturating_add(margin_bytes)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_removes_only_directories_nobody_holds() {
        let work = tempfile::tempdir().unwrap();
        let live = create(work.path()).unwrap();
        std::fs::write(live.path().join("input.media"), b"x").unwrap();
        // A killed run: its directory and lock file stay, but nobody holds the lock.
        let dead = work.path().join(format!("{PREFIX}dead"));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("output.mp4"), b"partial").unwrap();
        // Not ours.
        std::fs::create_dir(work.path().join("other")).unwrap();
        assert_eq!(clean(work.path()), 1);
        assert!(!dead.exists());
        assert!(live.path().join("input.media").exists(), "a live job's directory was removed");
        assert!(work.path().join("other").exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }

    #[test]
    fn room_is_checked_against_the_whole_disk_and_the_free_space() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_room(dir.path(), 1, 3.0, 0), Ok(()));
        assert!(matches!(check_room(dir.path(), u64::MAX / 8, 3.0, 0), Err(NoRoom::Never(_))));
        let st = rustix::fs::statvfs(dir.path()).unwrap();
        let free = st.f_bavail * st.f_frsize;
        assert!(matches!(check_room(dir.path(), 1, 1.0, free + 1), Err(NoRoom::Now(_))));
    }
}
