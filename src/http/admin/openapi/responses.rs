//! The error answers of the admin API as reusable OpenAPI responses: each is the one JSON
//! error body ([`ErrorBody`](crate::error_body::ErrorBody)) under a status, with what makes the
//! gateway give it. Operations list the ones they can give (`response = Unauthorized`).

use utoipa::{
    openapi::{header::HeaderBuilder, response::ResponseBuilder, Content, Ref, RefOr, Response, Schema},
    ToResponse,
};

/// The error body's schema, by reference.
fn error_body() -> Content {
    Content::new(Some(Ref::from_schema_name("ErrorBody")))
}

/// A JSON error response with `description`.
fn error(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", error_body())
}

/// Declares a unit type whose [`ToResponse`] is the error body with a description.
macro_rules! error_response {
    ($(#[$doc:meta])* $name:ident, $description:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), error($description).build().into())
            }
        }
    };
}

error_response!(
    /// `400 malformed_json` / `bad_request`.
    BadRequest,
    "`malformed_json`: the body is not JSON; `bad_request`: the query or body could not be read"
);
error_response!(
    /// `404 not_found`.
    NotFound,
    "`not_found`: no such client or backend (a backend being deleted counts as gone)"
);
error_response!(
    /// `409 conflict`.
    Conflict,
    "`conflict`: an id, API key, address or backend URL is taken; `message` says which"
);
error_response!(
    /// `413 body_too_large`.
    PayloadTooLarge,
    "`body_too_large`: the body is over 256 KiB (16 MiB for `POST /clients/batch`)"
);
error_response!(
    /// `415 unsupported_media_type`.
    UnsupportedMediaType,
    "`unsupported_media_type`: the body is not declared as `Content-Type: application/json`"
);
error_response!(
    /// `422 validation_failed`.
    ValidationFailed,
    "`validation_failed`: a field is missing, unknown, repeated, `null` where a value is \
     needed, of the wrong type or out of range; `message` starts with its JSON path"
);
error_response!(
    /// `503 database_unavailable` / `unavailable`.
    Unavailable,
    "`database_unavailable`: the database did not take the write within TOLLGATE_DB_TIMEOUT, \
     nothing changed, try again; `unavailable`: the backend pool did not answer (shutting down)"
);
error_response!(
    /// `405 method_not_allowed`: the answer to a method no operation of the path lists.
    MethodNotAllowed,
    "`method_not_allowed`: the path exists but not with this method; `Allow` lists the methods"
);

/// `401 unauthorized`, with the challenge.
pub struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        let challenge = HeaderBuilder::new()
            .schema(Schema::from(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .build(),
            ))
            .description(Some("`Bearer realm=\"tollgate-admin\"`"))
            .build();
        let response = error("`unauthorized`: the bearer token is missing or wrong")
            .header("WWW-Authenticate", challenge)
            .build();
        ("Unauthorized", response.into())
    }
}
