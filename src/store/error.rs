//! `StoreError`: storage failures as callers need to tell them apart, with unique violations
//! named by the field the admin API knows them by, never by a constraint name.

use super::ClientRow;

/// A storage failure, as callers need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had, or the connection broke: try again later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The operation did not finish within the database timeout; nothing was committed
    /// (short of a commit whose acknowledgement the network lost).
    #[error("the database did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// A unique column already holds this value.
    #[error("conflict: {field}: {message}")]
    Conflict {
        /// The field as the admin API names it (`client_id`, `api_key`).
        field: &'static str,
        /// What is taken, in the gateway's words.
        message: String,
    },
    /// The SQLite file was deleted or replaced while the gateway runs: a write would be lost.
    #[error("the database file {0} was deleted or replaced")]
    FileLost(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Query(String),
}

impl StoreError {
    /// Names the value of `row` that a conflict is about, when the field shows it (an id
    /// does; a key never does).
    pub fn about(self, row: &ClientRow) -> StoreError {
        match self {
            StoreError::Conflict {
                field: "client_id", ..
            } => StoreError::Conflict {
                field: "client_id",
                message: format!("\"{}\" is taken", row.client_id),
            },
            other => other,
        }
    }
}

/// The admin field behind a unique violation, from the constraint name (PostgreSQL:
/// `clients_pkey`, `clients_api_key_hash_key`, `clients_api_key_hash_head`) or the message
/// (SQLite: `UNIQUE constraint failed: clients.api_key_hash`, or `... index
/// 'clients_api_key_hash_head'`).
fn unique_field(constraint: Option<&str>, message: &str) -> &'static str {
    let said = constraint.unwrap_or(message);
    if said.contains("backends_url") || said.contains("backends.url") {
        "url"
    } else if said.contains("backends") {
        "id"
    } else if said.contains("api_key_hash") {
        "api_key"
    } else {
        "client_id"
    }
}

fn conflict(field: &'static str) -> StoreError {
    let message = match field {
        "api_key" => "is taken by another client",
        "url" => "is listed already (as another backend)",
        _ => "is taken",
    };
    StoreError::Conflict {
        field,
        message: message.to_string(),
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                conflict(unique_field(info.constraint_name(), info.message()))
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                StoreError::Unavailable(info.message().to_string())
            }
            // libpq reports a dropped server connection as an unknown error.
            Error::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("connection") || info.message().contains("server closed") =>
            {
                StoreError::Unavailable(info.message().to_string())
            }
            // `statement_timeout` or `lock_timeout` (SQLSTATE 57014, 55P03) cut the statement.
            Error::DatabaseError(_, info)
                if info.message().contains("statement timeout")
                    || info.message().contains("lock timeout") =>
            {
                StoreError::Unavailable(info.message().to_string())
            }
            other => StoreError::Query(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violations_are_named_by_their_field() {
        for (constraint, message, field) in [
            (
                Some("clients_pkey"),
                "duplicate key value violates unique constraint",
                "client_id",
            ),
            (Some("clients_api_key_hash_key"), "duplicate key value", "api_key"),
            (None, "UNIQUE constraint failed: clients.client_id", "client_id"),
            (None, "UNIQUE constraint failed: clients.api_key_hash", "api_key"),
            (
                Some("clients_api_key_hash_head"),
                "duplicate key value",
                "api_key",
            ),
            (
                None,
                "UNIQUE constraint failed: index 'clients_api_key_hash_head'",
                "api_key",
            ),
            (Some("backends_url_key"), "duplicate key value", "url"),
            (None, "UNIQUE constraint failed: backends.url", "url"),
        ] {
            assert_eq!(
                unique_field(constraint, message),
                field,
                "{constraint:?} {message}"
            );
        }
    }

    #[test]
    fn a_conflict_never_shows_the_constraint() {
        let shown = conflict(unique_field(Some("clients_pkey"), "")).to_string();
        assert_eq!(shown, "conflict: client_id: is taken");
    }
}
