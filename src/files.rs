//! Reading an input file (the config file, the event payload): a regular file only, and at most a bounded size.
//!
//! A FIFO, a device or a directory given as an input file is refused at once (a FIFO would block the read forever,
//! a device could be endless); a regular file is read up to `max` bytes, so the read ends in bounded time.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The largest config file read (1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The largest event payload read (GitHub caps webhook payloads at 25 MB).
pub const MAX_EVENT_BYTES: u64 = 25 << 20;

/// The text of the regular file at `path`, at most `max` bytes. Errors (shown after the path by callers): not found,
/// not a regular file (and what it is), larger than `max`, not UTF-8.
pub fn read_text(path: &Path, max: u64) -> io::Result<String> {
    // The type is checked before opening: opening a FIFO for reading blocks until a writer comes.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", kind(&meta)),
        ));
    }
    let file = File::open(path)?;
    let mut bytes = Vec::with_capacity(meta.len().min(max) as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "something"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.toml");
        std::fs::write(&f, "x = 1\n").unwrap();
        assert_eq!(read_text(&f, 100).unwrap(), "x = 1\n");
        let e = read_text(&f, 3).unwrap_err().to_string();
        assert_eq!(e, "larger than 3 bytes");
        let e = read_text(dir.path(), 100).unwrap_err().to_string();
        assert_eq!(e, "a directory is not a regular file");
        let e = read_text(Path::new("/dev/zero"), 100)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "a device is not a regular file");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = read_text(&fifo, 100).unwrap_err().to_string();
        assert_eq!(e, "a FIFO is not a regular file");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_text(&f, 100).unwrap_err().to_string(),
            "not UTF-8 text"
        );
    }
}
