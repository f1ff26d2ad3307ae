//! The error type of config loading, and key paths for messages.

use std::fmt;

/// A 1-based line and column in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number, starting at 1.
    pub column: usize,
}

/// One problem found in a config file: where, at which key, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given to [`super::load`] / [`super::parse`].
    pub file: String,
    /// Where in the file; `None` only when the file could not be read at all.
    pub location: Option<Location>,
    /// Key path such as `portals[1].interval`; empty when the file could not be read.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file)?;
        if let Some(at) = self.location {
            write!(f, "{}:{}:", at.line, at.column)?;
        }
        if !self.path.is_empty() {
            write!(f, " {}:", self.path)?;
        }
        write!(f, " {}", self.message)
    }
}

/// Why a config file was rejected: one or more [`Diagnostic`]s.
///
/// Displays as one line per problem: `file:line:col: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in file order where known.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub(crate) fn single(d: Diagnostic) -> Self {
        ConfigError {
            diagnostics: vec![d],
        }
    }
}

/// Turns a `serde_norway` error into a diagnostic with our path and the
/// error's own position, or where `locate` finds the path when the error has none.
pub(crate) fn from_serde(
    source: &str,
    e: &serde_path_to_error::Error<serde_norway::Error>,
    locate: impl FnOnce(&KeyPath) -> Location,
) -> Diagnostic {
    let mut path = KeyPath::from_serde(e.path());
    let inner = e.inner();
    let mut message = inner.to_string();
    let location = inner.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    });
    // serde_norway's Display is "<its path>: <message> at line L column C";
    // we print position and path ourselves.
    if let Some(l) = location {
        let suffix = format!(" at line {} column {}", l.line, l.column);
        if let Some(m) = message.strip_suffix(&suffix) {
            message = m.to_owned();
        }
    }
    for n in (1..=path.0.len()).rev() {
        let prefix = format!("{}: ", KeyPath(path.0[..n].to_vec()));
        if let Some(m) = message.strip_prefix(&prefix) {
            message = m.to_owned();
            break;
        }
    }
    // Name the offending key in the path, not only in the message.
    let named_key = |message: &str, prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        let (key, after) = rest.split_once('`')?;
        Some((key.to_owned(), after.trim_start_matches(", ").to_owned()))
    };
    if let Some((key, expected)) = named_key(&message, "unknown field `") {
        if path.0.last() != Some(&Seg::Key(key.clone())) {
            path = path.key(&key);
        }
        message = format!("unknown key {key:?}; {expected}");
    } else if let Some((key, _)) = named_key(&message, "duplicate field `") {
        path = path.key(&key);
        message = format!("key {key:?} is given more than once");
    }
    let location = location.unwrap_or_else(|| locate(&path));
    Diagnostic {
        file: source.to_owned(),
        location: Some(location),
        path: path.to_string(),
        message,
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path into the YAML document, e.g. `portals[1].interval`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path extended by a mapping key.
    pub(crate) fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_owned()));
        KeyPath(v)
    }

    /// This path extended by a sequence index.
    pub(crate) fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }

    pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        KeyPath(
            path.iter()
                .map(|s| match s {
                    Segment::Seq { index } => Seg::Index(*index),
                    Segment::Map { key } => Seg::Key(key.clone()),
                    Segment::Enum { variant } => Seg::Key(variant.clone()),
                    Segment::Unknown => Seg::Key("?".to_owned()),
                })
                .collect(),
        )
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}
