//! Strict JSON request bodies of the admin API: declared as JSON, each key once, no `null`
//! where a value is expected, no unknown field; every refusal names the field.

use actix_web::{http::header, HttpRequest};
use serde::{
    de::{DeserializeOwned, MapAccess, SeqAccess, Visitor},
    Deserialize, Deserializer,
};

use super::error::AdminError;

/// Fields whose `null` means something (`"name": null` clears the name); a `null` for any
/// other field is refused rather than read as "absent".
const NULLABLE: &[&str] = &["name"];

/// 415 unless the body is declared as JSON.
pub(super) fn require_json(req: &HttpRequest) -> Result<(), AdminError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(AdminError::UnsupportedMediaType)
    }
}

/// Parses a JSON body: 415 unless declared JSON, 400 unless JSON, 422 naming the field
/// for a missing, unknown, mistyped, repeated or wrongly `null` one.
pub(super) fn parse_json<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, AdminError> {
    require_json(req)?;
    let value = serde_json::from_slice::<StrictJson>(body)
        .map_err(|e| match duplicate_in_message(&e.to_string()) {
            Some(key) if e.is_data() => AdminError::invalid(&key, "given more than once"),
            _ => AdminError::MalformedJson(e.to_string()),
        })?
        .0;
    let Some(object) = value.as_object() else {
        return Err(AdminError::invalid("body", "expected a JSON object"));
    };
    if let Some((key, _)) = object
        .iter()
        .find(|(k, v)| v.is_null() && !NULLABLE.contains(&k.as_str()))
    {
        return Err(AdminError::invalid(key, "must not be null"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names an unknown or missing field in its message; the path is the parent then.
        let field = field_in_message(&inner).unwrap_or(path);
        AdminError::Invalid {
            field,
            message: inner,
        }
    })
}

/// A JSON value whose objects hold each key once: serde_json would keep the last of two
/// silently, and an operator who wrote a field twice meant one of them.
struct StrictJson(serde_json::Value);

const DUPLICATE: &str = "duplicate key `";

fn duplicate_in_message(message: &str) -> Option<String> {
    Some(message.strip_prefix(DUPLICATE)?.split('`').next()?.to_string())
}

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StrictJson, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

/// 2^53: every whole f64 below it in magnitude is exact.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // A whole number written with a fraction or an exponent (`30.0`, `1e3`, as Python's
        // json module writes a float) is the integer it denotes, as JSON Schema's `integer`
        // says: the whole-number fields take it, and `30.5` is still refused. Beyond 2^53 an
        // f64 is not exact; such a value stays a float, and the integer fields refuse it.
        if v.fract() == 0.0 && v.abs() < MAX_EXACT {
            // Cannot truncate: whole and below 2^53 in magnitude.
            return Ok(serde_json::Value::from(v as i64));
        }
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(items.into())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE}{key}`")));
            }
            let StrictJson(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(object.into())
    }
}

fn field_in_message(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    Some(rest.split('`').next()?.to_string())
}
