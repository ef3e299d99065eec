//! Files only the service's own user may read: the SQLite database (password
//! hashes, PaymentIntent client secrets) with its `-wal` and `-shm`
//! companions, and the development secrets folder.
//!
//! New ones are created owner-only (files 0600, folders 0700) whatever the
//! umask. Existing ones are left as they are, since an operator may have
//! chosen a group on purpose, but any access for group or others is reported
//! at start-up as a warning naming the path and its mode.
//!
//! SQLite creates `-wal` and `-shm` with the permissions of the database
//! file (`robust_open` copies them), so creating the database file ourselves
//! before SQLite opens it is what makes all three owner-only.

use std::{
    io,
    path::{Path, PathBuf},
};

/// Permission bits that let someone other than the owner in.
#[cfg(unix)]
const GROUP_OR_OTHERS: u32 = 0o077;

/// Creates `folder` (and missing parents) owner-only; an existing folder is
/// left as it is.
pub fn create_folder(folder: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(folder)
}

/// Creates `path` empty and owner-only if it does not exist yet (an empty
/// file is a valid new SQLite database). An existing file is not touched.
pub fn create_file_if_missing(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `value` to `path` (replacing its content), creating it owner-only.
pub fn write(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(value.as_bytes())
}

/// The paths among `paths` that exist and are open to group or others, with
/// their permission bits. Missing paths are skipped.
pub fn open_to_others(paths: impl IntoIterator<Item = PathBuf>) -> Vec<(PathBuf, u32)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        paths
            .into_iter()
            .filter_map(|path| {
                let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o777;
                (mode & GROUP_OR_OTHERS != 0).then_some((path, mode))
            })
            .collect()
    }
    #[cfg(not(unix))]
    {
        let _ = paths;
        Vec::new()
    }
}

/// Logs one warning per path of `paths` that group or others may access.
pub fn warn_if_open_to_others(paths: impl IntoIterator<Item = PathBuf>) {
    for (path, mode) in open_to_others(paths) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "a private file or folder is accessible to other users; run chmod go-rwx on it"
        );
    }
}

/// The SQLite database file and its write-ahead log and shared-memory index.
pub fn sqlite_files(database: &Path) -> Vec<PathBuf> {
    let mut files = vec![database.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_files_and_folders_are_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("a/secrets");
        create_folder(&folder).unwrap();
        assert_eq!(mode(&folder), 0o700);
        let file = folder.join("db");
        create_file_if_missing(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        let secret = folder.join("key");
        write(&secret, "value").unwrap();
        assert_eq!(mode(&secret), 0o600);
        assert!(open_to_others([folder, file, secret]).is_empty());
    }

    #[test]
    fn an_existing_file_is_left_alone_and_reported_when_others_may_read_it() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("dispatch.db");
        std::fs::write(&file, "data").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_file_if_missing(&file).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
        assert_eq!(
            open_to_others(sqlite_files(&file)),
            vec![(file.clone(), 0o644)],
            "the missing -wal and -shm are skipped"
        );
    }
}
