//! `AdminError`: every failure of the admin API, mapped to HTTP in one place.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};

use crate::{error_body, registry::RegistryError, request_id::request_id};

/// A failed admin request.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body is not declared as JSON.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// A field is missing, unknown, of the wrong type or out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as a JSON path (`capacity`, `ips[2]`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The id, API key or an address is taken.
    #[error("{field}: {message}")]
    Conflict {
        /// Which field.
        field: String,
        /// By whom.
        message: String,
    },
    /// No such client.
    #[error("no client {0}")]
    NotFound(String),
    /// No such backend (or it is draining after a delete).
    #[error("no backend {0}")]
    BackendNotFound(String),
    /// The backend pool did not answer (shutting down).
    #[error("backend pool unavailable: {0}")]
    PoolUnavailable(String),
    /// The database did not take the write; nothing changed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl AdminError {
    /// A validation error on `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> AdminError {
        AdminError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Maps a registry refusal for client `id`.
    pub fn from_registry(e: RegistryError, id: &str) -> AdminError {
        match e {
            RegistryError::NotFound => AdminError::NotFound(id.to_string()),
            RegistryError::Conflict { field, message } => AdminError::Conflict {
                field: field.into(),
                message,
            },
            RegistryError::Invalid { field, message } => AdminError::Invalid {
                field: field.into(),
                message,
            },
            RegistryError::Unavailable(m) => AdminError::Unavailable(m),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            AdminError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AdminError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            AdminError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            AdminError::NotFound(_) | AdminError::BackendNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::PoolUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AdminError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, error) = self.parts();
        let rid = request_id(&Default::default());
        // 5xx stays opaque to the caller; the cause goes to the log.
        let message = if let AdminError::PoolUnavailable(_) = self {
            log::error!("[{rid}] admin request failed: {self}");
            "Backend pool unavailable".to_string()
        } else if status.is_server_error() {
            log::warn!("[{rid}] admin request failed: {self}");
            "Database unavailable, nothing was changed; try again".to_string()
        } else {
            self.to_string()
        };
        error_body::respond(status, error, &message, &rid)
    }
}
