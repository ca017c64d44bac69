//! The bodies of `POST /clients`, `PUT` and `PATCH /clients/{client_id}` (and of each item of
//! `POST /clients/batch`), and their validation into what the registry takes.

use serde::{Deserialize, Deserializer};
use utoipa::openapi::{schema::Type, ObjectBuilder, RefOr, Schema};

use super::error::AdminError;
use crate::{
    ratelimit::{Quota, QuotaError},
    registry::{parse_nets, ClientInput, ClientPatch},
};

/// Body of `POST /clients` (`client_id` required) and `PUT /clients/{client_id}` (`client_id`,
/// if given, the one in the path).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientRequest {
    /// Id: 1 to 64 characters of `A-Z a-z 0-9 . _ - ~`.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9._~-]{1,64}$")]
    pub(super) client_id: Option<String>,
    /// Bucket capacity (burst).
    #[schema(minimum = 1, maximum = 1_000_000)]
    capacity: u64,
    /// Refill rate, tokens per second, to the thousandth.
    #[schema(minimum = 0.001, maximum = 1_000_000)]
    rate_per_sec: f64,
    /// API key (shown in this answer only): 16 to 256 visible ASCII characters.
    #[schema(nullable = false, pattern = "^[!-~]{16,256}$")]
    api_key: Option<String>,
    /// Addresses and CIDR blocks (`10.0.0.7`, `2001:db8::/32`), each once.
    #[schema(value_type = Option<Vec<IpOrNet>>, nullable = false, max_items = 100)]
    ips: Option<Vec<String>>,
    /// Display name: at most 200 characters, no control characters.
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    name: Option<String>,
    /// Whether requests are accepted (default `true`).
    #[schema(nullable = false)]
    enabled: Option<bool>,
    /// `false`: shadow mode, never refused (default `true`).
    #[schema(nullable = false)]
    enforce: Option<bool>,
}

/// The schema of an `ips` entry: one address or CIDR block (`10.0.0.7`, `10.0.0.0/8`,
/// `2001:db8::/32`). The pattern is the characters it may hold; blanks and commas around it
/// are tolerated, as in TOLLGATE_TRUSTED_PROXIES, whose parser reads it.
pub(super) struct IpOrNet;

impl utoipa::PartialSchema for IpOrNet {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[\s,]*[0-9A-Fa-f:.]+(/[0-9]+)?[\s,]*$"))
            .examples(["10.0.0.0/8"])
            .into()
    }
}

impl utoipa::ToSchema for IpOrNet {}

/// The schema of a `POST /clients` body and of a `POST /clients/batch` item: that of
/// [`ClientRequest`], which the handlers parse, with `client_id` required.
pub(super) struct NewClientRequest;

impl utoipa::PartialSchema for NewClientRequest {
    fn schema() -> RefOr<Schema> {
        let mut schema = <ClientRequest as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required.insert(0, "client_id".into());
        }
        schema
    }
}

impl utoipa::ToSchema for NewClientRequest {}

/// Body of `PATCH /clients/{client_id}`: the fields to change (`"name": null` clears the name).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatchRequest {
    /// Bucket capacity (burst).
    #[schema(nullable = false, minimum = 1, maximum = 1_000_000)]
    capacity: Option<u64>,
    /// Refill rate, tokens per second, to the thousandth.
    #[schema(nullable = false, minimum = 0.001, maximum = 1_000_000)]
    rate_per_sec: Option<f64>,
    /// A new API key: 16 to 256 visible ASCII characters.
    #[schema(nullable = false, pattern = "^[!-~]{16,256}$")]
    api_key: Option<String>,
    /// Addresses and CIDR blocks, replacing the list.
    #[schema(value_type = Option<Vec<IpOrNet>>, nullable = false, max_items = 100)]
    ips: Option<Vec<String>>,
    /// Display name, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 200, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    name: Option<Option<String>>,
    /// Whether requests are accepted.
    #[schema(nullable = false)]
    enabled: Option<bool>,
    /// `false`: shadow mode.
    #[schema(nullable = false)]
    enforce: Option<bool>,
}

/// `Some(None)` for an explicit `null`, so that PATCH can clear a field.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Whether `id` has the form of a client id: 1 to 64 characters of `A-Z a-z 0-9 . _ - ~`.
pub(super) fn is_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~'))
}

fn valid_id(id: &str) -> Result<(), AdminError> {
    if is_client_id(id) {
        Ok(())
    } else {
        Err(AdminError::invalid(
            "client_id",
            "1 to 64 characters of A-Z a-z 0-9 . _ - ~",
        ))
    }
}

fn valid_name(name: Option<String>) -> Result<Option<String>, AdminError> {
    match name {
        Some(n) if n.chars().count() > 200 || n.chars().any(char::is_control) => Err(AdminError::invalid(
            "name",
            "at most 200 characters, no control characters",
        )),
        other => Ok(other),
    }
}

fn valid_key(key: Option<String>) -> Result<Option<String>, AdminError> {
    match key {
        Some(k) if !(16..=256).contains(&k.len()) || !k.bytes().all(|b| b.is_ascii_graphic()) => Err(
            AdminError::invalid("api_key", "16 to 256 visible ASCII characters, no spaces"),
        ),
        other => Ok(other),
    }
}

fn valid_ips(ips: Option<Vec<String>>) -> Result<Option<Vec<ipnet::IpNet>>, AdminError> {
    let Some(ips) = ips else { return Ok(None) };
    if ips.len() > 100 {
        return Err(AdminError::invalid("ips", "at most 100 entries"));
    }
    let mut nets = Vec::with_capacity(ips.len());
    for (i, s) in ips.iter().enumerate() {
        let mut parsed = parse_nets(s).map_err(|m| AdminError::invalid(&format!("ips[{i}]"), m))?;
        match (parsed.pop(), parsed.is_empty()) {
            (Some(net), true) if !nets.contains(&net) => nets.push(net),
            _ => {
                return Err(AdminError::invalid(
                    &format!("ips[{i}]"),
                    "one address or CIDR block, listed once",
                ))
            }
        }
    }
    Ok(Some(nets))
}

fn valid_quota(capacity: u64, rate: f64) -> Result<Quota, AdminError> {
    Quota::new(capacity, rate).map_err(|e| match e {
        QuotaError::Capacity => AdminError::invalid("capacity", e.to_string()),
        QuotaError::Rate => AdminError::invalid("rate_per_sec", e.to_string()),
    })
}

pub(super) fn input(client_id: String, r: ClientRequest) -> Result<ClientInput, AdminError> {
    valid_id(&client_id)?;
    Ok(ClientInput {
        client_id,
        quota: valid_quota(r.capacity, r.rate_per_sec)?,
        name: valid_name(r.name)?,
        api_key: valid_key(r.api_key)?,
        ips: valid_ips(r.ips)?.unwrap_or_default(),
        enabled: r.enabled.unwrap_or(true),
        enforce: r.enforce.unwrap_or(true),
    })
}

/// The change a `PATCH` body asks for, validated.
pub(super) fn patch(r: ClientPatchRequest) -> Result<ClientPatch, AdminError> {
    Ok(ClientPatch {
        capacity: r.capacity,
        rate_per_sec: r.rate_per_sec,
        api_key: valid_key(r.api_key)?,
        ips: valid_ips(r.ips)?,
        name: match r.name {
            Some(n) => Some(valid_name(n)?),
            None => None,
        },
        enabled: r.enabled,
        enforce: r.enforce,
    })
}
