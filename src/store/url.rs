//! Where the database is: PostgreSQL or a SQLite file, and the URL with its password
//! redacted for logs and messages.
//!
//! A PostgreSQL URL may carry a password, so it is kept as a [`SecretString`]: `Debug` of
//! the settings prints `[REDACTED]`, and only the connection manager reads it.

use secrecy::{ExposeSecret, SecretString};

/// Which database the gateway keeps its state in.
#[derive(Debug, Clone)]
pub enum DatabaseUrl {
    /// A PostgreSQL connection URL, password included.
    Postgres(SecretString),
    /// Path of a SQLite file.
    Sqlite(String),
}

impl DatabaseUrl {
    /// The URL with any password replaced, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
            DatabaseUrl::Postgres(url) => redact_password(url.expose_secret()),
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
        assert_eq!(
            redact_password("postgres://u:p/w@x@h/db?sslpassword=k&sslmode=require"),
            "postgres://u:***@h/db?sslpassword=***&sslmode=require"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn debug_never_shows_the_url() {
        let url = DatabaseUrl::Postgres("postgres://u:hunter2@h/db".to_string().into());
        let shown = format!("{url:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("postgres://"),
            "{shown}"
        );
        assert_eq!(url.redacted(), "postgres://u:***@h/db");
    }
}
