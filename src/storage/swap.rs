//! Replacing a group of sealed segments with one rewritten file (what a
//! compaction cleaning produces), so that a crash at any point leaves
//! either all the old segments or the new one: never a mix, never a loss.
//!
//! The steps, each durable before the next (the directory is fsynced after
//! every rename or removal):
//! 1. the cleaner writes and fdatasyncs `<base>.log.cleaned`;
//! 2. commit: rename it to `<base>.<end>.swap` (the group is `[base, end)`:
//!    every segment whose base offset lies there is replaced);
//! 3. finish: remove the group's other segments and every index file of the
//!    group, then rename the swap file over `<base>.log`.
//!
//! Recovery (`recover`, before a log's segments are listed): a `.cleaned`
//! file is an uncommitted cleaning and goes; a `.swap` file is a committed
//! one and is finished.
//!
//! Must never: remove a segment outside its group, or remove anything of
//! a group before its replacement is committed.

use std::path::Path;

use super::segment::{self, file_name};
use super::{sync_dir, StorageError};

const CLEANED_SUFFIX: &str = ".log.cleaned";
const SWAP_SUFFIX: &str = ".swap";

/// Where the cleaner writes a group's replacement before it is committed.
pub fn cleaned_name(base: i64) -> String {
    format!("{base:020}{CLEANED_SUFFIX}")
}

/// The committed replacement of the segments with base offsets in
/// `[base, end)`.
pub fn swap_name(base: i64, end: i64) -> String {
    format!("{base:020}.{end:020}{SWAP_SUFFIX}")
}

fn parse_swap(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(SWAP_SUFFIX)?;
    let (b, e) = stem.split_once('.')?;
    if b.len() != 20 || e.len() != 20 {
        return None;
    }
    let (b, e) = (b.parse().ok()?, e.parse().ok()?);
    (0 <= b && b < e).then_some((b, e))
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |e| StorageError::io(op, path, e)
}

/// Step 2: the written and synced `.cleaned` file becomes the group's
/// replacement. From here a crash finishes the swap instead of undoing it.
pub fn commit(dir: &Path, base: i64, end: i64) -> Result<(), StorageError> {
    assert!(base < end, "a group holds at least its first segment");
    let from = dir.join(cleaned_name(base));
    std::fs::rename(&from, dir.join(swap_name(base, end))).map_err(io("rename", &from))?;
    sync_dir(dir)
}

/// Step 3: the group's old segments go and the replacement takes the
/// first one's name. Idempotent: recovery may run it again after a crash
/// halfway.
pub fn finish(dir: &Path, base: i64, end: i64) -> Result<(), StorageError> {
    let swap = dir.join(swap_name(base, end));
    for b in segment_bases(dir)? {
        if b > base && b < end {
            segment::remove_files(dir, b)?;
        }
    }
    segment::remove_index_files(dir, base)?;
    sync_dir(dir)?;
    std::fs::rename(&swap, dir.join(file_name(base))).map_err(io("rename", &swap))?;
    sync_dir(dir)
}

/// Before a log is opened: drops uncommitted cleanings, finishes committed
/// ones. Returns how many of each, for the log.
pub fn recover(dir: &Path) -> Result<(usize, usize), StorageError> {
    let (mut dropped, mut finished) = (0, 0);
    let mut swaps = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(CLEANED_SUFFIX) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(io("remove", &p))?;
            dropped += 1;
        } else if let Some(group) = parse_swap(name) {
            swaps.push(group);
        }
    }
    if dropped > 0 {
        sync_dir(dir)?;
    }
    swaps.sort_unstable();
    for (base, end) in swaps {
        finish(dir, base, end)?;
        finished += 1;
    }
    Ok((dropped, finished))
}

/// Base offsets of the segment files in `dir`, ascending.
fn segment_bases(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        if let Some(Ok(b)) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
        {
            v.push(b);
        }
    }
    v.sort_unstable();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    fn files(dir: &Path) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Segments 0, 10, 20 (each with index files) and the active 30.
    fn log_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for b in [0i64, 10, 20, 30] {
            put(d.path(), &file_name(b), &format!("old {b}"));
            put(d.path(), &format!("{b:020}.index"), "i");
            put(d.path(), &format!("{b:020}.timeindex"), "t");
        }
        d
    }

    fn replaced(dir: &Path) -> Vec<(String, String)> {
        let mut want = vec![(file_name(0), "new 0..30".to_owned())];
        want.push((file_name(30), "old 30".into()));
        want.push((format!("{:020}.index", 30), "i".into()));
        want.push((format!("{:020}.timeindex", 30), "t".into()));
        want.sort();
        assert_eq!(files(dir), want);
        want
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_segments_or_the_new_one() {
        // Before the commit: the old segments, whole.
        let d = log_dir();
        let before = files(d.path());
        put(d.path(), &cleaned_name(0), "new 0..30");
        assert_eq!(recover(d.path()).unwrap(), (1, 0));
        assert_eq!(files(d.path()), before);

        // Committed, nothing finished: recovery finishes.
        put(d.path(), &cleaned_name(0), "new 0..30");
        commit(d.path(), 0, 30).unwrap();
        assert_eq!(recover(d.path()).unwrap(), (0, 1));
        replaced(d.path());

        // Committed and half finished (one old segment already gone).
        let d = log_dir();
        put(d.path(), &cleaned_name(0), "new 0..30");
        commit(d.path(), 0, 30).unwrap();
        segment::remove_files(d.path(), 10).unwrap();
        assert_eq!(recover(d.path()).unwrap(), (0, 1));
        replaced(d.path());

        // The normal path, then a recovery with nothing to do.
        let d = log_dir();
        put(d.path(), &cleaned_name(0), "new 0..30");
        commit(d.path(), 0, 30).unwrap();
        finish(d.path(), 0, 30).unwrap();
        let want = replaced(d.path());
        assert_eq!(recover(d.path()).unwrap(), (0, 0));
        assert_eq!(files(d.path()), want);
    }

    #[test]
    fn swap_names_parse_back_and_nothing_else_does() {
        assert_eq!(parse_swap(&swap_name(7, 42)), Some((7, 42)));
        for bad in [
            "7.42.swap",
            "00000000000000000007.swap",
            &swap_name(5, 5),
            "x.y.swap",
        ] {
            assert_eq!(parse_swap(bad), None, "{bad}");
        }
        assert_eq!(segment::parse_file_name(&swap_name(7, 42)), None);
        assert_eq!(segment::parse_file_name(&cleaned_name(7)), None);
    }
}
