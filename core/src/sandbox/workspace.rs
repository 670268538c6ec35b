//! Workspaces on the Chorus host: one directory per (account, conversation) under
//! `DATA_DIR/sandbox/`, packed into a tar for each execution and replaced by what the
//! container left behind, if it fits the quota.
//!
//! Only regular files and directories cross in either direction: symlinks, hard
//! links and device nodes made in a container are dropped, so nothing a program
//! writes can point the server at a host path. Replacement is atomic (a staging
//! directory renamed over the old one): a refused copy-back leaves the workspace as
//! it was before the execution.

use chorus_model::ids::{AccountId, ConversationId};
use serde::Serialize;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most files one workspace may hold (each costs an inode and a tar header).
pub const MAX_FILES: usize = 10_000;

/// A file in a workspace, by its path relative to the workspace root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkspaceFile {
    pub path: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("file not found")]
    NotFound,
    #[error("invalid file path {0:?}: use a relative path without `..`")]
    InvalidPath(String),
    #[error(
        "workspace quota exceeded: the files would take more than {quota} bytes \
         (sandbox.workspace_quota_mb); the files written by this execution were not kept"
    )]
    QuotaExceeded { quota: u64 },
    #[error(
        "the workspace would hold more than {MAX_FILES} files; the files written by this \
         execution were not kept"
    )]
    TooManyFiles,
    #[error("workspace I/O: {0}")]
    Io(#[from] io::Error),
}

/// Size and modification time (seconds) of each file, to tell what an execution changed.
pub(crate) type Snapshot = HashMap<String, (u64, u64)>;

/// The workspaces of every account and conversation on this host.
#[derive(Debug)]
pub struct Workspaces {
    root: PathBuf,
    quota: u64,
    locks: Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>,
}

impl Workspaces {
    /// Workspaces under `DATA_DIR/sandbox`, each limited to `quota` bytes.
    pub fn new(data_dir: &Path, quota: u64) -> Self {
        Self {
            root: data_dir.join("sandbox"),
            quota,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The directory of one conversation's workspace. Ids are UUIDs, so the path has
    /// no separators or dots from outside.
    pub fn dir(&self, account: &AccountId, conversation: &ConversationId) -> PathBuf {
        self.root.join(account.as_str()).join(conversation.as_str())
    }

    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Serializes executions of one workspace: two at once would each copy back over
    /// the other's files.
    pub async fn lock(
        &self,
        account: &AccountId,
        conversation: &ConversationId,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let dir = self.dir(account, conversation);
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, w| w.strong_count() > 0);
            match locks.get(&dir).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(dir, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }

    /// Every file of a workspace (none when no execution has run yet).
    pub async fn list(
        &self,
        account: &AccountId,
        conversation: &ConversationId,
    ) -> Result<Vec<WorkspaceFile>, WorkspaceError> {
        let dir = self.dir(account, conversation);
        blocking(move || {
            let mut files: Vec<WorkspaceFile> = snapshot(&dir)?
                .into_iter()
                .map(|(path, (size, _))| WorkspaceFile { path, size })
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(files)
        })
        .await
    }

    /// Deletes a workspace (when its conversation is deleted), after any execution
    /// in it has finished copying back.
    pub async fn remove(
        &self,
        account: &AccountId,
        conversation: &ConversationId,
    ) -> Result<(), WorkspaceError> {
        let _lock = self.lock(account, conversation).await;
        let dir = self.dir(account, conversation);
        blocking(move || match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        })
        .await
    }

    /// Moves every workspace of `from` under `to`, after `from` was merged into `to`
    /// (its conversations moved with it). A conversation's workspace that already
    /// exists under `to` is kept as it is (it cannot: conversation ids are unique).
    pub async fn adopt(&self, from: &AccountId, to: &AccountId) -> Result<usize, WorkspaceError> {
        let source = self.root.join(from.as_str());
        let target = self.root.join(to.as_str());
        blocking(move || {
            let entries = match fs::read_dir(&source) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            fs::create_dir_all(&target)?;
            let mut moved = 0;
            for entry in entries {
                let entry = entry?;
                let destination = target.join(entry.file_name());
                if destination.exists() {
                    continue;
                }
                fs::rename(entry.path(), destination)?;
                moved += 1;
            }
            let _ = fs::remove_dir(&source);
            Ok(moved)
        })
        .await
    }

    /// Opens one workspace file for reading, refusing any path that leaves the
    /// workspace (`..`, absolute paths, symlinks). Returns the file and its size.
    pub async fn open(
        &self,
        account: &AccountId,
        conversation: &ConversationId,
        path: &str,
    ) -> Result<(tokio::fs::File, u64), WorkspaceError> {
        let relative = safe_relative(path)?;
        let dir = self.dir(account, conversation);
        let full = blocking(move || {
            let base = match dir.canonicalize() {
                Ok(base) => base,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(WorkspaceError::NotFound);
                }
                Err(e) => return Err(e.into()),
            };
            let full = match base.join(&relative).canonicalize() {
                Ok(full) => full,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(WorkspaceError::NotFound);
                }
                Err(e) => return Err(e.into()),
            };
            // Canonical paths resolve symlinks: whatever the path says, it must land
            // inside the workspace, on a regular file.
            if !full.starts_with(&base) || full == base || !full.is_file() {
                return Err(WorkspaceError::NotFound);
            }
            Ok(full)
        })
        .await?;
        let file = tokio::fs::File::open(&full).await?;
        let size = file.metadata().await?.len();
        Ok((file, size))
    }
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
) -> Result<T, WorkspaceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WorkspaceError::Io(io::Error::other(e)))?
}

/// A relative path made only of normal components, or an error naming it.
pub fn safe_relative(path: &str) -> Result<PathBuf, WorkspaceError> {
    let bad = || WorkspaceError::InvalidPath(path.chars().take(200).collect());
    if path.is_empty() || path.len() > 1024 || path.contains(['\0', '\\']) {
        return Err(bad());
    }
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => out.push(part),
            _ => return Err(bad()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn mtime_secs(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Size and mtime of every regular file under `dir` (empty when it does not exist).
pub(crate) fn snapshot(dir: &Path) -> Result<Snapshot, WorkspaceError> {
    let mut out = Snapshot::new();
    if !dir.exists() {
        return Ok(out);
    }
    walk(dir, dir, &mut |rel, meta| {
        if meta.is_file() {
            out.insert(rel.to_string(), (meta.len(), mtime_secs(meta)));
        }
        Ok(())
    })?;
    Ok(out)
}

/// Visits files and directories under `dir` (not following symlinks) with their path
/// relative to `base`, `/`-separated.
fn walk(
    base: &Path,
    dir: &Path,
    visit: &mut dyn FnMut(&str, &fs::Metadata) -> Result<(), WorkspaceError>,
) -> Result<(), WorkspaceError> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let meta = fs::symlink_metadata(entry.path())?;
        let rel = entry
            .path()
            .strip_prefix(base)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .into_owned();
        if meta.is_dir() {
            visit(&rel, &meta)?;
            walk(base, &entry.path(), visit)?;
        } else if meta.is_file() {
            visit(&rel, &meta)?;
        }
    }
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Writes the tar uploaded to the container's `/mnt`: `data/` (the workspace, world
/// writable so the unprivileged user can change it) and `code/PROGRAM` (read-only).
pub(crate) fn pack(
    workspace: &Path,
    program_name: &str,
    program: &[u8],
    out: impl Write,
) -> Result<(), WorkspaceError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let mut tar = tar::Builder::new(out);
    let dir = header(tar::EntryType::Directory, 0o777, 0, now);
    tar.append_data(&mut dir.clone(), "data/", io::empty())?;
    if workspace.exists() {
        walk(workspace, workspace, &mut |rel, meta| {
            let path = format!("data/{rel}");
            if meta.is_dir() {
                tar.append_data(&mut dir.clone(), format!("{path}/"), io::empty())?;
            } else {
                let mut h = header(tar::EntryType::Regular, 0o666, meta.len(), mtime_secs(meta));
                let file = fs::File::open(workspace.join(rel))?;
                tar.append_data(&mut h, &path, file.take(meta.len()))?;
            }
            Ok(())
        })?;
    }
    let mut code_dir = header(tar::EntryType::Directory, 0o555, 0, now);
    tar.append_data(&mut code_dir, "code/", io::empty())?;
    let mut code = header(tar::EntryType::Regular, 0o444, program.len() as u64, now);
    tar.append_data(&mut code, format!("code/{program_name}"), program)?;
    tar.into_inner()?.flush()?;
    Ok(())
}

/// What a copy-back changed.
#[derive(Debug, Default)]
pub(crate) struct Unpacked {
    /// Files new or changed since `before`.
    pub changed: Vec<WorkspaceFile>,
    /// Entries that were not regular files or directories, dropped.
    pub skipped: Vec<String>,
}

/// Replaces `workspace` with the contents of `archive` (a tar of `data/` as Docker
/// returns it), if every file fits the quota; otherwise leaves it untouched.
pub(crate) fn unpack(
    archive: impl Read,
    workspace: &Path,
    quota: u64,
    before: &Snapshot,
) -> Result<Unpacked, WorkspaceError> {
    let parent = workspace
        .parent()
        .ok_or_else(|| io::Error::other("workspace has no parent directory"))?;
    fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".staging-{}", uuid::Uuid::new_v4()));
    fs::create_dir(&staging)?;
    let result = extract(archive, &staging, quota, before);
    match result {
        Ok(report) => {
            let old = parent.join(format!(".old-{}", uuid::Uuid::new_v4()));
            let had_old = workspace.exists();
            if had_old {
                fs::rename(workspace, &old)?;
            }
            if let Err(e) = fs::rename(&staging, workspace) {
                if had_old {
                    let _ = fs::rename(&old, workspace);
                }
                let _ = fs::remove_dir_all(&staging);
                return Err(e.into());
            }
            if had_old {
                fs::remove_dir_all(&old)?;
            }
            Ok(report)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn extract(
    archive: impl Read,
    staging: &Path,
    quota: u64,
    before: &Snapshot,
) -> Result<Unpacked, WorkspaceError> {
    let mut report = Unpacked::default();
    let mut used = 0u64;
    let mut files = 0usize;
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.to_string_lossy().into_owned();
        // Docker names entries after the directory asked for: `data/...`.
        let rel = raw.split_once('/').map_or("", |(_, rest)| rest);
        let rel = rel.trim_end_matches('/');
        if rel.is_empty() {
            continue;
        }
        let Ok(rel_path) = safe_relative(rel) else {
            report.skipped.push(rel.to_string());
            continue;
        };
        let kind = entry.header().entry_type();
        let target = staging.join(&rel_path);
        if kind.is_dir() {
            fs::create_dir_all(&target)?;
        } else if kind.is_file() {
            let size = entry.header().size()?;
            used += size;
            files += 1;
            if used > quota {
                return Err(WorkspaceError::QuotaExceeded { quota });
            }
            if files > MAX_FILES {
                return Err(WorkspaceError::TooManyFiles);
            }
            if let Some(dir) = target.parent() {
                fs::create_dir_all(dir)?;
            }
            let mut out = fs::File::create(&target)?;
            io::copy(&mut (&mut entry).take(size), &mut out)?;
            let mtime = entry.header().mtime().unwrap_or(0);
            out.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))?;
            if before.get(rel) != Some(&(size, mtime)) {
                report.changed.push(WorkspaceFile {
                    path: rel.to_string(),
                    size,
                });
            }
        } else {
            report.skipped.push(rel.to_string());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_merged_accounts_workspaces_move_to_the_surviving_account() {
        let data = tempfile::tempdir().unwrap();
        let workspaces = Workspaces::new(data.path(), 1 << 20);
        let (old, new) = (AccountId::generate(), AccountId::generate());
        let (moved_conv, kept_conv) = (ConversationId::generate(), ConversationId::generate());
        let moved = workspaces.dir(&old, &moved_conv);
        fs::create_dir_all(&moved).unwrap();
        fs::write(moved.join("result.csv"), b"a,b\n").unwrap();
        fs::create_dir_all(workspaces.dir(&new, &kept_conv)).unwrap();

        assert_eq!(workspaces.adopt(&old, &new).await.unwrap(), 1);
        let files = workspaces.list(&new, &moved_conv).await.unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].path, "result.csv");
        assert!(workspaces.list(&old, &moved_conv).await.unwrap().is_empty());
        assert!(workspaces.dir(&new, &kept_conv).is_dir());
        // Adopting an account that never ran code is a no-op.
        assert_eq!(
            workspaces
                .adopt(&AccountId::generate(), &new)
                .await
                .unwrap(),
            0
        );
    }

    #[test]
    fn relative_paths_must_stay_inside() {
        assert!(safe_relative("out/plot.png").is_ok());
        for bad in ["", "../x", "a/../../x", "/etc/passwd", "a\\b", "./", "a\0b"] {
            assert!(safe_relative(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// A tar as Docker returns it: files, a symlink and a traversal attempt.
    fn docker_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = header(*kind, 0o644, data.len() as u64, 1_700_000_000);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                b.append_link(&mut h, path, "/etc/passwd").unwrap();
            } else {
                // `append_data` refuses `..`; write the raw name like a hostile tar would.
                h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpack_keeps_files_drops_links_and_enforces_the_quota() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("acct").join("conv");
        let tar = docker_tar(&[
            ("data/", tar::EntryType::Directory, b""),
            ("data/a.txt", tar::EntryType::Regular, b"hello"),
            ("data/sub/b.txt", tar::EntryType::Regular, b"world!"),
            ("data/link", tar::EntryType::Symlink, b""),
            ("data/../../escape", tar::EntryType::Regular, b"x"),
        ]);
        let report = unpack(&tar[..], &ws, 1024, &Snapshot::new()).unwrap();
        assert_eq!(fs::read_to_string(ws.join("a.txt")).unwrap(), "hello");
        assert_eq!(fs::read_to_string(ws.join("sub/b.txt")).unwrap(), "world!");
        assert!(!ws.join("link").exists());
        assert!(!tmp.path().join("escape").exists());
        assert_eq!(report.changed.len(), 2);
        assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);

        // Unchanged files are not reported again.
        let before = snapshot(&ws).unwrap();
        let report = unpack(&tar[..], &ws, 1024, &before).unwrap();
        assert!(report.changed.is_empty(), "{:?}", report.changed);

        // Over the quota: refused, and the workspace is as it was.
        let big = docker_tar(&[("data/big", tar::EntryType::Regular, &[0u8; 2048])]);
        let err = unpack(&big[..], &ws, 1024, &before).unwrap_err();
        assert!(matches!(err, WorkspaceError::QuotaExceeded { .. }), "{err}");
        assert_eq!(fs::read_to_string(ws.join("a.txt")).unwrap(), "hello");
        assert!(!ws.join("big").exists());
        let leftovers: Vec<_> = fs::read_dir(ws.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "staging directories left behind");
    }

    #[test]
    fn pack_puts_workspace_under_data_and_program_under_code() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("d")).unwrap();
        fs::write(tmp.path().join("d/f.txt"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("evil")).unwrap();
        let mut out = Vec::new();
        pack(tmp.path(), "main.py", b"print(1)", &mut out).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&out[..]).entries().unwrap() {
            let e = e.unwrap();
            names.push(e.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            names,
            ["data/", "data/d/", "data/d/f.txt", "code/", "code/main.py"]
        );
    }
}
