//! The conditions a route puts on a request's host and path, parsed once from the operator's
//! text ("parse, don't validate"): matching compares bytes and allocates nothing.

use std::fmt;

/// A host condition: `api.example.com` (exact) or `*.example.com` (any name ending in
/// `.example.com`, never `example.com` itself). Compared without case and without the port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// This name only (stored in lower case).
    Exact(String),
    /// Any name ending in `.` + this suffix (stored in lower case, without the `*.`).
    Wildcard(String),
}

/// A path condition: a segment-aware prefix (`/api` matches `/api` and `/api/x`, never
/// `/apix`) or, written with a leading `=`, one exact path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathPattern {
    /// Paths equal to this one, or under it (a `/` follows it).
    Prefix(String),
    /// This path only.
    Exact(String),
}

/// Why a host or path condition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Not a host name (or a `*.` wildcard of one).
    #[error("{0:?} is not a host name or a *.name wildcard (letters, digits, '-' and '.'; no port)")]
    Host(String),
    /// Not an absolute path.
    #[error("{0:?} is not a path: it must start with '/' (or '=/' for an exact path) and hold no '?', '#' or spaces")]
    Path(String),
}

impl HostPattern {
    /// Parses `api.example.com` or `*.example.com`.
    pub fn parse(raw: &str) -> Result<HostPattern, PatternError> {
        let lower = raw.trim().to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(PatternError::Host(raw.to_string()));
        }
        Ok(if wildcard {
            HostPattern::Wildcard(name.to_string())
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    /// Whether `host` (already lower case, without port) is matched.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl PathPattern {
    /// Parses `/api` (prefix) or `=/login` (exact).
    pub fn parse(raw: &str) -> Result<PathPattern, PatternError> {
        let (exact, path) = match raw.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let ok = path.starts_with('/')
            && path.len() <= 2048
            && !path
                .bytes()
                .any(|b| b == b'?' || b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control());
        if !ok {
            return Err(PatternError::Path(raw.to_string()));
        }
        Ok(if exact {
            PathPattern::Exact(path.to_string())
        } else {
            PathPattern::Prefix(path.to_string())
        })
    }

    /// Whether `path` is matched.
    pub fn matches(&self, path: &str) -> bool {
        path_matches(self.as_str(), self.is_exact(), path)
    }

    /// The pattern's path, without the `=` of an exact one.
    pub fn as_str(&self) -> &str {
        match self {
            PathPattern::Exact(p) | PathPattern::Prefix(p) => p,
        }
    }

    /// Whether the pattern is one exact path.
    pub fn is_exact(&self) -> bool {
        matches!(self, PathPattern::Exact(_))
    }

    /// Length of the pattern's path: the longer, the more specific.
    pub fn len(&self) -> usize {
        match self {
            PathPattern::Exact(p) | PathPattern::Prefix(p) => p.len(),
        }
    }

    /// Whether the pattern is the empty prefix (never: every path starts with `/`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `path` with this prefix taken off (`/users/1` under `/users` → `/1`; `/users` → `/`),
    /// for a route that strips its prefix. An exact pattern strips the whole path.
    pub fn strip<'a>(&self, path: &'a str) -> &'a str {
        let p = match self {
            PathPattern::Exact(p) | PathPattern::Prefix(p) => p.trim_end_matches('/'),
        };
        match path.get(p.len()..) {
            Some(rest) if rest.starts_with('/') => rest,
            _ => "/",
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Prefix(p) => f.write_str(p),
            PathPattern::Exact(p) => write!(f, "={p}"),
        }
    }
}

/// Whether `path` is matched by the pattern path `pattern`: equal to it when `exact`, else
/// equal to it or under it (segment-aware).
pub fn path_matches(pattern: &str, exact: bool, path: &str) -> bool {
    if exact {
        return path == pattern;
    }
    path.starts_with(pattern)
        && (path.len() == pattern.len() || pattern.ends_with('/') || path.as_bytes()[pattern.len()] == b'/')
}

/// The host a request names, as routes compare it: lower case, without the port, without a
/// trailing dot. `None` for an IPv6 literal's brackets left unclosed and other garbage.
pub fn normalize_host(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let raw = raw.trim();
    let name = if let Some(v6) = raw.strip_prefix('[') {
        // An IPv6 literal: no route names one; keep it whole so that it matches nothing.
        return v6.contains(']').then_some(std::borrow::Cow::Borrowed(raw));
    } else {
        raw.rsplit_once(':').map_or(raw, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                raw
            }
        })
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_exactly_or_by_wildcard_suffix() {
        // (pattern, host, matches)
        let cases = [
            ("api.example.com", "api.example.com", true),
            ("API.Example.com", "api.example.com", true),
            ("api.example.com", "www.example.com", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "aexample.com", false),
            ("*.example.com", "a.example.com.evil", false),
        ];
        for (pattern, host, want) in cases {
            let p = HostPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn paths_match_by_segment_or_exactly() {
        // (pattern, path, matches)
        let cases = [
            ("/api", "/api", true),
            ("/api", "/api/", true),
            ("/api", "/api/x", true),
            ("/api", "/apix", false),
            ("/api", "/ap", false),
            ("/api/", "/api/x", true),
            ("/api/", "/api", false),
            ("/", "/anything", true),
            ("=/login", "/login", true),
            ("=/login", "/login/", false),
            ("=/login", "/login/x", false),
        ];
        for (pattern, path, want) in cases {
            let p = PathPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(path), want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn prefixes_are_stripped_to_the_rest_of_the_path() {
        let cases = [
            ("/users", "/users/1", "/1"),
            ("/users", "/users", "/"),
            ("/users/", "/users/1", "/1"),
            ("/", "/a/b", "/a/b"),
            ("=/login", "/login", "/"),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(
                PathPattern::parse(pattern).unwrap().strip(path),
                want,
                "{pattern} {path}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_their_text() {
        for bad in [
            "",
            "*.",
            "exa mple.com",
            "a..b",
            "-a.com",
            "api.example.com:8080",
            "*",
        ] {
            assert_eq!(
                HostPattern::parse(bad),
                Err(PatternError::Host(bad.to_string())),
                "{bad}"
            );
        }
        for bad in ["", "api", "=api", "/a?b", "/a b", "/a#b"] {
            assert_eq!(
                PathPattern::parse(bad),
                Err(PatternError::Path(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn request_hosts_are_compared_without_case_port_or_trailing_dot() {
        let cases = [
            ("api.example.com", Some("api.example.com")),
            ("API.example.com:8080", Some("api.example.com")),
            ("api.example.com.", Some("api.example.com")),
            ("[::1]:8080", Some("[::1]:8080")),
            ("[::1", None),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw).as_deref(), want, "{raw}");
        }
    }
}
