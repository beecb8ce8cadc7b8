//! Running a process under `strace`, and reading its trace back as
//! [`Event`]s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Event;

/// The calls traced: every way the journal changes its files. `writev` is
/// left out, so a process can keep its other output (a history file, say)
/// out of the trace by writing it with `write_vectored`.
const CALLS: &str = "trace=openat,write,pwrite64,fsync,fdatasync,ftruncate,rename,renameat,renameat2,unlink,unlinkat";

/// `cmd` run under `strace`, which writes its trace to `trace`: the same
/// program, arguments, environment and directory. Needs `strace` (the
/// command fails to start without it).
pub fn traced(cmd: Command, trace: &Path) -> Command {
    let mut out = Command::new("strace");
    out.args(["-f", "-qq", "-y", "-xx", "-s", "8388608", "-o"])
        .arg(trace)
        .args(["-e", CALLS])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(v) => out.env(name, v),
            None => out.env_remove(name),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        out.current_dir(dir);
    }
    out
}

/// The events of a trace: operations on files in `dir`, and each whole
/// line written to the file `marks`, in completion order.
pub fn parse(trace: &str, dir: &Path, marks: &Path) -> Vec<Event> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let marks = canonical_file(marks);
    let mut parser = Parser {
        dir,
        marks,
        positions: HashMap::new(),
        appending: HashMap::new(),
        sizes: HashMap::new(),
        marked: Vec::new(),
        out: Vec::new(),
    };
    let mut unfinished: HashMap<&str, String> = HashMap::new();
    for raw in trace.lines() {
        let Some((pid, rest)) = raw.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let line = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid, head.to_owned());
            continue;
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
            format!("{}{}", unfinished.remove(pid).unwrap_or_default(), tail)
        } else {
            rest.to_owned()
        };
        parser.call(&line);
    }
    parser.out
}

/// `path` with its directory canonicalized (the file may not exist yet).
fn canonical_file(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

struct Parser {
    dir: PathBuf,
    marks: PathBuf,
    /// File positions by descriptor (the process's: any thread may use one).
    positions: HashMap<String, usize>,
    appending: HashMap<String, bool>,
    sizes: HashMap<PathBuf, usize>,
    /// The marks file's bytes since its last complete line.
    marked: Vec<u8>,
    out: Vec<Event>,
}

impl Parser {
    fn in_dir(&self, p: &Path) -> bool {
        p.starts_with(&self.dir) && p != self.dir
    }

    /// One completed call (`name(args) = result`).
    fn call(&mut self, line: &str) {
        // strace pads short calls before ` = result`.
        let Some(eq) = line.rfind(" = ") else { return };
        let (call, result) = (line[..eq].trim_end(), &line[eq + 3..]);
        let Some((name, args)) = call.strip_suffix(')').and_then(|c| c.split_once('(')) else {
            return;
        };
        if result.starts_with('-') {
            return;
        }
        let args = split_args(args);
        match name {
            "openat" => self.open(&args, result),
            "write" | "pwrite64" => self.write(name, &args, result),
            "fsync" | "fdatasync" => {
                if let Some((_, path)) = annotated(&args[0])
                    && self.in_dir(&path)
                {
                    self.out.push(Event::Sync(path));
                }
            }
            "ftruncate" => {
                if let Some((_, path)) = annotated(&args[0])
                    && self.in_dir(&path)
                {
                    let len = args[1].trim().parse().expect("ftruncate's length");
                    self.sizes.insert(path.clone(), len);
                    self.out.push(Event::Truncate { path, len });
                }
            }
            "rename" | "renameat" | "renameat2" => {
                let paths: Vec<PathBuf> = args.iter().filter_map(|a| quoted_path(a)).collect();
                if let [from, to] = &paths[..]
                    && self.in_dir(to)
                {
                    if let Some(s) = self.sizes.remove(from) {
                        self.sizes.insert(to.clone(), s);
                    }
                    self.out.push(Event::Rename(from.clone(), to.clone()));
                }
            }
            "unlink" | "unlinkat" => {
                if let Some(path) = args.iter().find_map(|a| quoted_path(a))
                    && self.in_dir(&path)
                {
                    self.sizes.remove(&path);
                    self.out.push(Event::Unlink(path));
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, args: &[String], result: &str) {
        let Some((fd, path)) = annotated(result) else {
            return;
        };
        if !self.in_dir(&path) && path != self.marks {
            return;
        }
        let flags = args.get(2).map_or("", String::as_str);
        self.positions.insert(fd.clone(), 0);
        self.appending.insert(fd, flags.contains("O_APPEND"));
        if !self.in_dir(&path) {
            return;
        }
        if flags.contains("O_CREAT") && !self.sizes.contains_key(&path) {
            self.sizes.insert(path.clone(), 0);
            self.out.push(Event::Create(path.clone()));
        }
        if flags.contains("O_TRUNC") {
            self.sizes.insert(path.clone(), 0);
            self.out.push(Event::Truncate { path, len: 0 });
        }
    }

    fn write(&mut self, name: &str, args: &[String], result: &str) {
        let Some((fd, path)) = annotated(&args[0]) else {
            return;
        };
        // `?`: the process was killed during the call; as far as these
        // states go, it never wrote.
        let Ok(written) = result.trim().parse::<usize>() else {
            return;
        };
        if path == self.marks {
            let data = unescape(&args[1]);
            self.marked
                .extend_from_slice(&data[..written.min(data.len())]);
            while let Some(end) = self.marked.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.marked.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line[..end]).into_owned();
                self.out.push(Event::Mark(text));
            }
            return;
        }
        if !self.in_dir(&path) {
            return;
        }
        let mut data = unescape(&args[1]);
        data.truncate(written);
        let size = self.sizes.entry(path.clone()).or_default();
        let offset = if name == "pwrite64" {
            args[3].trim().parse().expect("pwrite64's offset")
        } else if self.appending.get(&fd).copied().unwrap_or(false) {
            *size
        } else {
            let pos = self.positions.entry(fd).or_default();
            let at = *pos;
            *pos += written;
            at
        };
        *size = (*size).max(offset + written);
        self.out.push(Event::Write { path, offset, data });
    }
}

/// The arguments of a call, split at top-level commas.
fn split_args(args: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut quoted, mut depth) = (false, 0);
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        let arg = out.last_mut().expect("one argument at least");
        match c {
            '\\' if quoted => {
                arg.push(c);
                arg.extend(chars.next());
                continue;
            }
            '"' => quoted = !quoted,
            '<' | '[' | '{' if !quoted => depth += 1,
            '>' | ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        arg.push(c);
    }
    out.into_iter().map(|a| a.trim().to_owned()).collect()
}

/// `3</path>` (the path hex-escaped, as `-xx` prints it) → `("3", "/path")`.
fn annotated(text: &str) -> Option<(String, PathBuf)> {
    let (fd, rest) = text.trim().split_once('<')?;
    let path = rest.strip_suffix('>')?;
    let path = String::from_utf8(unescape(path)).ok()?;
    Some((fd.to_owned(), PathBuf::from(path)))
}

/// A quoted path argument (`"\x2f..."`), if `arg` is one.
fn quoted_path(arg: &str) -> Option<PathBuf> {
    arg.starts_with('"')
        .then(|| String::from_utf8(unescape(arg)).ok().map(PathBuf::from))
        .flatten()
}

/// A `-xx` string argument (`"\x7b\x22..."`, possibly followed by `...`).
fn unescape(arg: &str) -> Vec<u8> {
    let inner = arg.trim().trim_end_matches("...");
    let inner = inner
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(inner);
    let bytes = inner.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4);
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') && i + 3 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 2..i + 4]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("\\x{b:02x}")).collect()
    }

    #[test]
    fn a_trace_becomes_file_events_and_marks() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::fs::canonicalize(dir.path()).unwrap();
        let seg = d.join("seg");
        let marks = d.parent().unwrap().join("acks");
        let (s, m) = (
            hex(&seg.display().to_string()),
            hex(&marks.display().to_string()),
        );
        let trace = format!(
            "10 openat(AT_FDCWD, \"{s}\", O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, 0666) = 5<{s}>\n\
             10 openat(AT_FDCWD, \"{m}\", O_WRONLY|O_CREAT|O_APPEND, 0666) = 6<{m}>\n\
             11 write(5<{s}>, \"{}\", 4 <unfinished ...>\n\
             10 write(6<{m}>, \"{}\", 4) = 4\n\
             11 <... write resumed>) = 4\n\
             11 fdatasync(5<{s}>) = 0\n\
             10 write(6<{m}>, \"{}\", 4) = 4\n\
             11 write(5<{s}>, \"{}\", 4) = -1 ENOSPC (No space left on device)\n",
            hex("one\n"),
            hex("ack "),
            hex("1\nac"),
            hex("two\n"),
        );
        let events = parse(&trace, dir.path(), &marks);
        assert_eq!(
            events,
            [
                Event::Create(seg.clone()),
                Event::Write {
                    path: seg.clone(),
                    offset: 0,
                    data: b"one\n".to_vec()
                },
                Event::Sync(seg),
                Event::Mark("ack 1".into()),
            ]
        );
    }
}
