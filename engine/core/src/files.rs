//! The set of rules files the checker reads: a virtual file system, loaded from disk or built in memory.
//!
//! Everything the checker sees goes through a [`FileSet`], so that a stored version can be
//! re-checked from its stored files, the API can validate text that was never saved, and a
//! reference can never escape the workflows folder.

use std::collections::BTreeMap;
use std::path::{Component, Path};

/// Files of a workflows folder, keyed by their path relative to it with `/` separators.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileSet {
    files: BTreeMap<String, String>,
    /// Files that exist but could not be read as text, with why.
    unreadable: BTreeMap<String, crate::i18n::Message>,
}

/// Files larger than this are refused, so that a mistaken copy of a database into the folder
/// cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

impl FileSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every file below `root`. Symbolic links are not followed: a link is recorded as
    /// unreadable, so a rules file can never pull in text from outside the folder.
    pub fn load_dir(root: &Path) -> std::io::Result<FileSet> {
        let mut set = FileSet::new();
        let meta = std::fs::metadata(root)?;
        if !meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        set.walk(root, root)?;
        Ok(set)
    }

    fn walk(&mut self, root: &Path, dir: &Path) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".tmp") {
                continue; // editor droppings and hidden files
            }
            let rel = relative_key(root, &path);
            let ft = entry.file_type()?;
            if ft.is_symlink() {
                self.unreadable.insert(rel, crate::msg!("file-symlink"));
            } else if ft.is_dir() {
                self.walk(root, &path)?;
            } else if ft.is_file() {
                let len = entry.metadata()?.len();
                if len > MAX_FILE_BYTES {
                    self.unreadable.insert(rel, crate::msg!("file-too-large", size = len, max = MAX_FILE_BYTES));
                    continue;
                }
                match std::fs::read(&path) {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(text) => {
                            self.files.insert(rel, text);
                        }
                        Err(_) => {
                            self.unreadable.insert(rel, crate::msg!("file-not-utf8"));
                        }
                    },
                    // A file removed between listing and reading (an editor's rename) is simply absent.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        self.unreadable.insert(rel, crate::i18n::Message::verbatim(e.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn insert(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.files.insert(path.into(), text.into());
    }

    pub fn get(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    pub fn unreadable(&self) -> impl Iterator<Item = (&str, &crate::i18n::Message)> {
        self.unreadable.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn why_unreadable(&self, path: &str) -> Option<&crate::i18n::Message> {
        self.unreadable.get(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn from_map(files: BTreeMap<String, String>) -> Self {
        FileSet { files, unreadable: BTreeMap::new() }
    }
}

fn relative_key(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Why a reference from a rules file to another file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("`{0}` is an absolute path; references are relative to the file's folder")]
    Absolute(String),
    #[error("`{0}` leads outside the workflows folder")]
    Escapes(String),
    #[error("`{0}` is empty")]
    Empty(String),
}

impl PathError {
    pub fn message(&self) -> crate::i18n::Message {
        match self {
            PathError::Absolute(p) => crate::msg!("path-absolute", path = p),
            PathError::Escapes(p) => crate::msg!("path-escapes", path = p),
            PathError::Empty(p) => crate::msg!("path-empty", path = p),
        }
    }
}

/// Resolves `reference`, written in a file inside folder `dir` (relative key), to a key of the
/// file set. Refuses absolute paths and any path that climbs above the workflows folder.
pub fn resolve_reference(dir: &str, reference: &str) -> Result<String, PathError> {
    if reference.trim().is_empty() {
        return Err(PathError::Empty(reference.into()));
    }
    let p = Path::new(reference);
    if p.is_absolute() || reference.starts_with('/') || reference.starts_with('\\') || reference.contains(':') {
        return Err(PathError::Absolute(reference.into()));
    }
    let mut parts: Vec<String> = if dir.is_empty() { Vec::new() } else { dir.split('/').map(str::to_owned).collect() };
    for comp in p.components() {
        match comp {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes(reference.into()));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Absolute(reference.into()));
            }
        }
    }
    Ok(parts.join("/"))
}

/// The folder part of a relative key (`a/b/c.toml` -> `a/b`).
pub fn parent_dir(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_stay_inside_the_folder() {
        assert_eq!(resolve_reference("a/b", "lists/x.toml").unwrap(), "a/b/lists/x.toml");
        assert_eq!(resolve_reference("a/b", "../shared/x.toml").unwrap(), "a/shared/x.toml");
        assert_eq!(resolve_reference("a", "../../etc/passwd"), Err(PathError::Escapes("../../etc/passwd".into())));
        assert_eq!(resolve_reference("a", "/etc/passwd"), Err(PathError::Absolute("/etc/passwd".into())));
        assert!(resolve_reference("", "..").is_err());
    }
}
