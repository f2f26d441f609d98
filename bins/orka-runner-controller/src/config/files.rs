//! Reading the small files the configuration names (`.env`, the config file, secret and
//! key files) without surprises: a FIFO, device or directory is refused instead of
//! blocking or reading forever, a dangling symlink is named as such, and size is capped.
//!
//! Reasons are sentence fragments that name the path, never the content.

use std::io::Read as _;
use std::path::Path;

/// The largest configuration, `.env` or secret file read (a PEM key is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads `path` as UTF-8 text if it is a regular file (symlinks followed) of at most
/// [`MAX_FILE_BYTES`].
pub fn read_regular_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match std::fs::read_link(path) {
                Ok(target) => {
                    format!("{shown} is a symlink to {}, which does not exist", target.display())
                }
                Err(_) => format!("{shown} does not exist"),
            });
        }
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    if !meta.is_file() {
        let kind =
            if meta.is_dir() { "a directory" } else { "not a regular file (a FIFO, socket or device?)" };
        return Err(format!("{shown} is {kind}; a regular file is required"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("{shown} is larger than {MAX_FILE_BYTES} bytes"));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut bytes = Vec::new();
    // The file may grow after the size check: never read more than the cap (+1 to notice).
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{shown} is larger than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "text\n").unwrap();
        assert_eq!(read_regular_file(&path).unwrap(), "text\n");
    }

    #[test]
    fn odd_paths_are_named_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(read_regular_file(&missing).unwrap_err().contains("does not exist"));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&missing, &link).unwrap();
        let err = read_regular_file(&link).unwrap_err();
        assert!(err.contains("symlink") && err.contains("missing"), "{err}");
        assert!(read_regular_file(dir.path()).unwrap_err().contains("directory"));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(read_regular_file(&big).unwrap_err().contains("larger"));
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(read_regular_file(&binary).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        let err = read_regular_file(&fifo).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
