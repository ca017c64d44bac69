//! Where the database is: PostgreSQL or a SQLite file, and the URL with its password
//! redacted for logs and messages.

/// Which database the gateway keeps its state in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A PostgreSQL connection URL.
    Postgres(String),
    /// Path of a SQLite file.
    Sqlite(String),
}

impl DatabaseUrl {
    /// The URL with any password replaced, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
            DatabaseUrl::Postgres(url) => redact_password(url),
        }
    }
}

/// Replaces the password of a `scheme://user:password@host` URL, and the value of any
/// `password`-like query parameter, with `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    // The last '@' ends the user info, even when the password holds a '/' or '@'.
    let mut out = match main.rfind('@') {
        Some(at) if main[..at].contains(':') => {
            let user = main[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &main[at..])
        }
        _ => format!("{scheme}://{main}"),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
    }
}
