//! Small state files that must survive a crash whole: what a component
//! remembers across restarts, in its data dir. A file is replaced, never
//! edited: written beside itself, fsynced, renamed over the old one, and
//! the directory fsynced, so after a crash or power cut it is the old file
//! or the new one, never a torn one.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` (see the module docs); creates its
/// directory when missing.
///
/// # Errors
/// The step that failed, with its path; the old file is then still in place.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail =
        |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail("create", dir, e))?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| fail("create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| fail("write", &tmp, e))?;
    f.sync_all().map_err(|e| fail("fsync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| fail("rename", &tmp, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("fsync", dir, e))
}

/// Replaces `path` with `value` as pretty JSON and a final newline.
///
/// # Errors
/// As [`replace`].
pub fn replace_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    text.push(b'\n');
    replace(path, &text)
}

/// Reads the JSON state at `path`; `Ok(None)` when there is none yet.
///
/// # Errors
/// The file exists but cannot be read, or is not `what` (with the JSON
/// error's line).
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{} is not {what}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_state_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(read_json::<Vec<u32>>(&path, "a list").unwrap(), None);
        replace_json(&path, &vec![1u32, 2]).unwrap();
        replace_json(&path, &vec![3u32]).unwrap();
        assert_eq!(
            read_json::<Vec<u32>>(&path, "a list").unwrap(),
            Some(vec![3])
        );
        assert!(!dir.path().join("sub/state.json.tmp").exists());
        std::fs::write(&path, "{torn").unwrap();
        let e = read_json::<Vec<u32>>(&path, "a list").unwrap_err();
        assert!(
            e.starts_with(&format!("{} is not a list: ", path.display())),
            "{e}"
        );
    }
}
