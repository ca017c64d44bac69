//! The path a request may reach on a backend: dot segments resolved before the backend's
//! prefix is put in front (RFC 3986 §5.2.4), so no request leaves the prefix.
//!
//! A backend `http://h/v2` must never see `/v2/../admin`: the segments `.` and `..` (also
//! written `%2e`, which many servers decode) are resolved here, the way nginx normalises a path
//! before `proxy_pass` with a URI. A segment that would turn into a dot segment only once the
//! backend decodes an encoded slash or backslash (`..%2fadmin`, `%2e%2e%5cadmin`), strips a
//! path parameter (`..;/admin`, which Tomcat, Jetty and Spring resolve), or decodes twice
//! (`%252e%252e`), and one that carries a NUL byte, cannot be resolved safely here and is
//! refused. Everything else, the query included, passes as sent.

use std::borrow::Cow;

/// Why a request target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// A segment hides a dot segment behind an encoded or raw slash or backslash, a path
    /// parameter, a second encoding, or carries a NUL byte.
    #[error("path segment {0:?} hides a dot segment or a NUL byte")]
    HiddenDotSegment(String),
}

/// What a path segment is once `%2e` is read as a dot.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Dot,
    DotDot,
    Plain,
}

fn kind(seg: &str) -> Segment {
    // Longest dot segment spelled with escapes: "%2e%2e".
    if seg.len() > 6 || seg.is_empty() {
        return Segment::Plain;
    }
    let lower = seg.to_ascii_lowercase();
    match lower.replace("%2e", ".").as_str() {
        "." => Segment::Dot,
        ".." => Segment::DotDot,
        _ => Segment::Plain,
    }
}

fn percent_decode(seg: &str) -> Vec<u8> {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Refuses a plain segment that becomes a dot segment once a backend decodes it, splits it at
/// slashes or backslashes, or drops its `;` parameters; or that is encoded twice over a dot,
/// slash or backslash; or that carries a NUL byte.
fn check_hidden(seg: &str) -> Result<(), TargetError> {
    if !seg.contains(['%', '\\', ';']) {
        return Ok(());
    }
    let decoded = percent_decode(seg);
    let lower = decoded.to_ascii_lowercase();
    let twice = [&b"%2e"[..], b"%2f", b"%5c"]
        .iter()
        .any(|esc| lower.windows(3).any(|w| w == *esc));
    let hides = twice
        || decoded.contains(&0)
        || decoded.split(|c| *c == b'/' || *c == b'\\').any(|piece| {
            let name = piece.split(|c| *c == b';').next().unwrap_or(piece);
            name == b"." || name == b".."
        });
    if hides {
        return Err(TargetError::HiddenDotSegment(seg.to_string()));
    }
    Ok(())
}

/// The request target (origin form, path and query) with dot segments resolved. Borrowed when
/// nothing changes, which is every ordinary path.
pub fn resolve(target: &str) -> Result<Cow<'_, str>, TargetError> {
    let (path, query) = match target.find('?') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    if !path.contains(['.', '%', '\\']) {
        return Ok(Cow::Borrowed(target));
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut changed = false;
    for (i, seg) in segments.iter().enumerate() {
        match kind(seg) {
            Segment::Dot => changed = true,
            Segment::DotDot => {
                changed = true;
                out.pop();
            }
            Segment::Plain => {
                check_hidden(seg)?;
                out.push(seg);
                continue;
            }
        }
        // A dot segment at the end leaves a directory: keep its trailing slash.
        if i == last {
            out.push("");
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(target));
    }
    Ok(Cow::Owned(format!("/{}{query}", out.join("/"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_resolved_and_hidden_ones_refused() {
        let ok = |a: &str, b: &str| (a.to_string(), Ok(b.to_string()));
        let refused = |a: &str| (a.to_string(), Err(()));
        let cases = [
            ok("/", "/"),
            ok("/hello?x=1", "/hello?x=1"),
            ok("/a/b.json", "/a/b.json"),
            ok("/../admin", "/admin"),
            ok("/a/../../admin", "/admin"),
            ok("/%2e%2e/admin", "/admin"),
            ok("/%2E%2e/admin", "/admin"),
            ok("/.%2e/admin", "/admin"),
            ok("/a/./b/../c?q=/../x", "/a/c?q=/../x"),
            ok("/a/..", "/"),
            ok("/a/b/.", "/a/b/"),
            ok("/a/b/..", "/a/"),
            ok("//double//slash", "//double//slash"),
            ok("/file%2etxt", "/file%2etxt"),
            ok("/...", "/..."),
            ok("/group%2Fproject", "/group%2Fproject"),
            ok("/100%", "/100%"),
            refused("/..%2fadmin"),
            refused("/..%2Fadmin"),
            refused("/%2e%2e%2fadmin"),
            refused("/x%2f..%2fadmin"),
            refused("/..%5cadmin"),
            refused("/..\\admin"),
            refused("/..;/admin"),
            refused("/.;x/admin"),
            refused("/%2e%2e;x/admin"),
            refused("/%252e%252e/admin"),
            refused("/..%252fadmin"),
            refused("/a%00b"),
            ok("/file.txt;v=1", "/file.txt;v=1"),
            ok("/a;b/c", "/a;b/c"),
        ];
        for (input, want) in cases {
            let got = resolve(&input).map(|c| c.into_owned()).map_err(|_| ());
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn unchanged_targets_are_borrowed() {
        assert!(matches!(resolve("/api/v1/users?id=3"), Ok(Cow::Borrowed(_))));
        assert!(matches!(resolve("/a.b/c.d"), Ok(Cow::Borrowed(_))));
    }
}
