//! Object keys: validated, relative names that cannot leave the store's root prefix.

use std::fmt;

use super::StoreError;

/// Longest key accepted, in bytes (S3 and Azure both allow 1024).
pub const MAX_KEY_BYTES: usize = 1024;

/// Suffix of the temporary keys used by atomic uploads (`<dir>/.<name>.<random>.partial`).
pub(crate) const PARTIAL_SUFFIX: &str = ".partial";

/// A key relative to a store's root prefix: `/`-separated segments, none of them empty, `.` or
/// `..`, no backslashes, control characters, percent escapes (`%2e`), `#` or `?`, at most
/// [`MAX_KEY_BYTES`]. Names of the form `.<name>.<anything>.partial` are reserved for the
/// temporaries of atomic uploads.
///
/// Keys are literal names, never URL-decoded: refusing `%XX` means no layer below (HTTP
/// clients, proxies, the storage service) can decode a key into a different path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks `key` and returns it as an `ObjectKey`; the error names the key and the problem.
    pub fn parse(key: &str) -> Result<Self, StoreError> {
        check(key, false).map_err(|reason| StoreError::InvalidKey { key: key.to_string(), reason })?;
        Ok(ObjectKey(key.to_string()))
    }

    /// Like [`ObjectKey::parse`], but also accepts the reserved temporary names.
    pub(crate) fn parse_internal(key: &str) -> Result<Self, StoreError> {
        check(key, true).map_err(|reason| StoreError::InvalidKey { key: key.to_string(), reason })?;
        Ok(ObjectKey(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Everything before the last segment (`None` at the top level).
    pub fn parent(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(dir, _)| dir)
    }

    /// This key with `suffix` appended to its last segment (`out.mp4` → `out.mp4.manifest.json`).
    pub fn with_suffix(&self, suffix: &str) -> Result<Self, StoreError> {
        ObjectKey::parse(&format!("{}{}", self.0, suffix))
    }

    /// Whether this key names an upload temporary (`.<name>.<random>.partial`).
    pub fn is_partial(&self) -> bool {
        is_partial_name(self.name())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        ObjectKey::parse(s)
    }
}

pub(crate) fn is_partial_name(name: &str) -> bool {
    name.len() > 1 + PARTIAL_SUFFIX.len() && name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX)
}

/// The reason `key` is refused, if it is.
fn check(key: &str, allow_partial: bool) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty key".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("{} bytes, more than the limit of {MAX_KEY_BYTES}", key.len()));
    }
    if key.starts_with('/') {
        return Err("absolute key (starts with /); keys are relative to the store's prefix".into());
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(format!("control character {c:?}"));
    }
    if key.contains('\\') {
        return Err("backslash (\\); segments are separated by /".into());
    }
    if let Some(i) = percent_escape(key) {
        return Err(format!("percent escape {:?}; keys are literal names, not URL-encoded", &key[i..i + 3]));
    }
    if let Some(c) = key.chars().find(|c| matches!(c, '#' | '?')) {
        return Err(format!("character {c:?} (URL fragment/query marker)"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("empty segment (// or a trailing /)".into()),
            "." => return Err("`.` segment".into()),
            ".." => return Err("`..` segment".into()),
            _ => {}
        }
    }
    if !allow_partial && key.rsplit('/').next().is_some_and(is_partial_name) {
        return Err(format!("names of the form .<name>.<random>{PARTIAL_SUFFIX} are reserved for upload temporaries"));
    }
    Ok(())
}

/// Byte index of the first `%XX` (two hex digits) in `s`.
fn percent_escape(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(2))
        .find(|&i| b[i] == b'%' && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> String {
        match ObjectKey::parse(key) {
            Ok(k) => panic!("{k} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_ordinary_keys() {
        for k in ["a", "in/talk.mp4", "out/2024-05-01/clip [1080p] 50%.mp4", ".hidden", "a..b/c.d", "ünïcode/名前.mkv"]
        {
            assert_eq!(ObjectKey::parse(k).unwrap().as_str(), k);
        }
        let k = ObjectKey::parse("x/y/out.mp4").unwrap();
        assert_eq!((k.parent(), k.name()), (Some("x/y"), "out.mp4"));
        assert_eq!(k.with_suffix(".manifest.json").unwrap().as_str(), "x/y/out.mp4.manifest.json");
    }

    #[test]
    fn refuses_hostile_keys_naming_key_and_problem() {
        let cases = [
            ("", "empty key"),
            ("/etc/passwd", "absolute"),
            ("../x", "`..` segment"),
            ("a/../../x", "`..` segment"),
            ("a/./x", "`.` segment"),
            ("..", "`..` segment"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("a\\..\\b", "backslash"),
            ("a\nb", "control character"),
            ("a\u{0}b", "control character"),
            ("%2e%2e/x", "percent escape"),
            ("a/%2E%2e/b", "percent escape"),
            ("a/%2fetc", "percent escape"),
            ("a#b", "'#'"),
            ("a?b=c", "'?'"),
            ("dir/.out.mp4.123.partial", "reserved"),
        ];
        for (key, why) in cases {
            let text = reason(key);
            assert!(text.contains(why), "{key:?}: {text}");
            assert!(text.contains(&format!("{key:?}")), "error should name the key {key:?}: {text}");
        }
        let long = "a/".repeat(512) + "b";
        assert!(reason(&long).contains("more than the limit of 1024"));
        assert!(ObjectKey::parse(&"a".repeat(1024)).is_ok());
    }
}
