//! Which file is which, and where each was left: file identities,
//! fingerprints and the positions file.
//!
//! A file is known by its device and inode. An inode number is reused once
//! a file is deleted, so a stored position also records a fingerprint of
//! the file's first bytes: FNV-1a (64 bit) of its first 256 bytes, or of all
//! of it while it is shorter, with the number of bytes it covers. A stored
//! position belongs to a file found after a restart only when device, inode
//! and fingerprint all agree; a file with a reused inode starts afresh.
//!
//! The positions file is JSON, `{"version": 1, "files": [...]}`, one entry
//! per watched file: its path (for people; lookups go by identity), device,
//! inode, the offset just past the last acknowledged record, and the
//! fingerprint. It is replaced whole: written to `positions.json.tmp`,
//! fsynced, renamed over `positions.json`, and the directory fsynced — so
//! after a crash it is the old file or the new one, never a torn mix.

use serde::{Deserialize, Serialize};
use std::fs::{File, Metadata};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A file's identity while it exists: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub device: u64,
    pub inode: u64,
}

impl FileId {
    pub fn of(meta: &Metadata) -> Self {
        Self {
            device: meta.dev(),
            inode: meta.ino(),
        }
    }
}

/// How many leading bytes a full fingerprint covers.
pub(crate) const FINGERPRINT_BYTES: u64 = 256;

/// A hash of a file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Fingerprint {
    /// How many leading bytes it covers: up to [`FINGERPRINT_BYTES`].
    pub bytes: u64,
    /// FNV-1a (64 bit) of those bytes.
    pub hash: u64,
}

fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Fingerprint {
    pub fn of_prefix(prefix: &[u8]) -> Self {
        Self {
            bytes: prefix.len() as u64,
            hash: fnv1a64(prefix),
        }
    }

    /// Whether the fingerprint covers all it ever will.
    pub fn is_full(&self) -> bool {
        self.bytes >= FINGERPRINT_BYTES
    }

    /// The fingerprint of the first `min(size, 256)` bytes of `file`.
    ///
    /// # Errors
    /// Reading the file failed.
    pub fn read(file: &File, size: u64) -> std::io::Result<Self> {
        let mut buf = [0u8; FINGERPRINT_BYTES as usize];
        let want = size.min(FINGERPRINT_BYTES) as usize;
        let n = read_full_at(file, &mut buf[..want], 0)?;
        Ok(Self::of_prefix(&buf[..n]))
    }

    /// Whether `file`, `size` bytes long, starts with the bytes this
    /// fingerprint was taken of. A file shorter than that does not.
    ///
    /// # Errors
    /// Reading the file failed.
    pub fn matches(&self, file: &File, size: u64) -> std::io::Result<bool> {
        if size < self.bytes {
            return Ok(false);
        }
        let mut buf = [0u8; FINGERPRINT_BYTES as usize];
        let want = self.bytes.min(FINGERPRINT_BYTES) as usize;
        let n = read_full_at(file, &mut buf[..want], 0)?;
        Ok(n == want && fnv1a64(&buf[..n]) == self.hash)
    }
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One file's stored position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Position {
    /// Where the file was last seen; for people, not for lookups.
    pub path: String,
    pub device: u64,
    pub inode: u64,
    /// Just past the last record that was acknowledged downstream.
    pub offset: u64,
    /// How many leading bytes the fingerprint covers.
    pub fingerprint_bytes: u64,
    /// FNV-1a 64 of those bytes, as 16 hex digits.
    pub fingerprint: String,
}

impl Position {
    pub fn new(path: &Path, id: FileId, offset: u64, fp: Fingerprint) -> Self {
        Self {
            path: path.display().to_string(),
            device: id.device,
            inode: id.inode,
            offset,
            fingerprint_bytes: fp.bytes,
            fingerprint: format!("{:016x}", fp.hash),
        }
    }

    pub fn id(&self) -> FileId {
        FileId {
            device: self.device,
            inode: self.inode,
        }
    }

    /// The fingerprint, or `None` when the stored one does not parse.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        let hash = u64::from_str_radix(&self.fingerprint, 16).ok()?;
        (self.fingerprint_bytes <= FINGERPRINT_BYTES).then_some(Fingerprint {
            bytes: self.fingerprint_bytes,
            hash,
        })
    }
}

/// The positions file's format version this build reads and writes.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Document {
    version: u32,
    files: Vec<Position>,
}

/// `positions.json` in a source's data directory.
#[derive(Debug, Clone)]
pub(crate) struct PositionsFile {
    path: PathBuf,
}

impl PositionsFile {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("positions.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored positions; none when there is no file yet.
    ///
    /// # Errors
    /// The file is unreadable or not a positions file of this version; the
    /// message names the file.
    pub fn load(&self) -> Result<Vec<Position>, String> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let doc: Document = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a positions file: {e}", self.path.display()))?;
        if doc.version != VERSION {
            return Err(format!(
                "{} has format version {}; this build reads version {VERSION}",
                self.path.display(),
                doc.version
            ));
        }
        Ok(doc.files)
    }

    /// Replaces the file with `files`: temp → fsync → rename → fsync the
    /// directory. Creates the directory when missing.
    ///
    /// # Errors
    /// Any step failed; the old file is then still in place.
    pub fn save(&self, files: &[Position]) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let doc = Document {
            version: VERSION,
            files: files.to_vec(),
        };
        let text = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_file_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = PositionsFile::in_dir(&dir.path().join("tail"));
        assert_eq!(store.load().unwrap(), vec![]);
        let id = FileId {
            device: 2049,
            inode: 77,
        };
        let fp = Fingerprint::of_prefix(b"first line\n");
        let files = vec![Position::new(Path::new("/var/log/app.log"), id, 1234, fp)];
        store.save(&files).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded, files);
        assert_eq!(loaded[0].id(), id);
        assert_eq!(loaded[0].fingerprint(), Some(fp));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("tail"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["positions.json"]);
    }

    #[test]
    fn positions_file_is_replaced_whole_and_a_stale_temp_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = PositionsFile::in_dir(dir.path());
        let id = FileId {
            device: 1,
            inode: 2,
        };
        let fp = Fingerprint::of_prefix(b"x");
        store
            .save(&[Position::new(Path::new("/a"), id, 10, fp)])
            .unwrap();
        // A crash between writing the temp file and renaming it leaves the
        // old positions in force.
        std::fs::write(dir.path().join("positions.json.tmp"), b"{\"torn").unwrap();
        assert_eq!(store.load().unwrap()[0].offset, 10);
        store
            .save(&[Position::new(Path::new("/a"), id, 20, fp)])
            .unwrap();
        assert_eq!(store.load().unwrap()[0].offset, 20);
        assert!(!dir.path().join("positions.json.tmp").exists());
    }

    #[test]
    fn unreadable_positions_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = PositionsFile::in_dir(dir.path());
        std::fs::write(store.path(), b"garbage").unwrap();
        let e = store.load().unwrap_err();
        assert!(
            e.starts_with(&format!(
                "{} is not a positions file: ",
                store.path().display()
            )),
            "{e}"
        );
        std::fs::write(store.path(), br#"{"version": 9, "files": []}"#).unwrap();
        assert_eq!(
            store.load().unwrap_err(),
            format!(
                "{} has format version 9; this build reads version 1",
                store.path().display()
            )
        );
    }

    #[test]
    fn fingerprint_covers_the_first_256_bytes_and_tells_a_reused_inode_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut content = vec![b'a'; 300];
        std::fs::write(&path, &content).unwrap();
        let f = File::open(&path).unwrap();
        let fp = Fingerprint::read(&f, 300).unwrap();
        assert_eq!(fp.bytes, 256);
        assert!(fp.is_full());
        assert_eq!(fp, Fingerprint::of_prefix(&content[..256]));
        assert!(fp.matches(&f, 300).unwrap());
        // Bytes past the first 256 do not count.
        content[299] = b'b';
        std::fs::write(&path, &content).unwrap();
        assert!(fp.matches(&File::open(&path).unwrap(), 300).unwrap());
        // Different first bytes: another file, whatever its inode.
        content[0] = b'z';
        std::fs::write(&path, &content).unwrap();
        assert!(!fp.matches(&File::open(&path).unwrap(), 300).unwrap());
    }

    #[test]
    fn fingerprint_of_a_short_file_matches_it_grown_but_not_a_shorter_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        let fp = Fingerprint::read(&File::open(&path).unwrap(), 6).unwrap();
        assert_eq!(fp.bytes, 6);
        assert!(!fp.is_full());
        std::fs::write(&path, b"hello\nworld\n").unwrap();
        assert!(fp.matches(&File::open(&path).unwrap(), 12).unwrap());
        std::fs::write(&path, b"hel").unwrap();
        assert!(!fp.matches(&File::open(&path).unwrap(), 3).unwrap());
    }

    #[test]
    fn identity_is_device_and_inode_and_survives_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let before = FileId::of(&std::fs::metadata(&a).unwrap());
        let b = dir.path().join("b");
        std::fs::rename(&a, &b).unwrap();
        assert_eq!(FileId::of(&std::fs::metadata(&b).unwrap()), before);
        std::fs::write(&a, b"x").unwrap();
        assert_ne!(FileId::of(&std::fs::metadata(&a).unwrap()), before);
    }
}
