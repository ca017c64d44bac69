//! Log output through `log` and env_logger: env_logger's text lines (the default), or one JSON
//! object per line (`TOLLGATE_LOG_FORMAT=json`) for log shippers.

use std::{io::Write, time::SystemTime};

use serde_json::{Map, Value};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// env_logger's `[timestamp LEVEL target] message`.
    #[default]
    Text,
    /// `{"timestamp", "level", "target", "message", …}`, plus a record's key-values (the
    /// access log's fields) as keys of their own.
    Json,
}

impl LogFormat {
    /// Parses `TOLLGATE_LOG_FORMAT`.
    pub fn parse(raw: &str) -> Result<LogFormat, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

/// Installs the logger: `filter` in env_logger syntax, lines in `format`.
pub fn init(filter: &str, format: LogFormat) {
    let mut builder = env_logger::Builder::new();
    // actix-http logs every malformed request at ERROR: a client could flood the log. The
    // gateway answers those itself and logs them at DEBUG; `RUST_LOG` can still turn this
    // module back on (a later directive for the same module wins).
    builder
        .filter_module("actix_http::h1::dispatcher", log::LevelFilter::Off)
        .parse_filters(filter);
    match format {
        LogFormat::Text => {
            builder.format_timestamp_millis();
        }
        LogFormat::Json => {
            builder.format(|buf, record| writeln!(buf, "{}", json_line(record, SystemTime::now())));
        }
    }
    builder.init();
}

/// One record as a JSON object.
pub fn json_line(record: &log::Record<'_>, at: SystemTime) -> Value {
    let mut line = Map::new();
    line.insert(
        "timestamp".into(),
        humantime::format_rfc3339_millis(at).to_string().into(),
    );
    line.insert("level".into(), record.level().as_str().into());
    line.insert("target".into(), record.target().into());
    line.insert("message".into(), record.args().to_string().into());
    // Key-values never overwrite the four above.
    let mut fields = Fields(Map::new());
    let _ = record.key_values().visit(&mut fields);
    for (k, v) in fields.0 {
        line.entry(k).or_insert(v);
    }
    Value::Object(line)
}

/// Collects a record's key-values as JSON values (numbers stay numbers).
struct Fields(Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let v = if let Some(n) = value.to_u64() {
            Value::from(n)
        } else if let Some(n) = value.to_i64() {
            Value::from(n)
        } else if let Some(b) = value.to_bool() {
            Value::from(b)
        } else {
            Value::from(value.to_string())
        };
        self.0.insert(key.as_str().to_string(), v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_anything_else_is_refused() {
        for (raw, want) in [
            ("text", Ok(LogFormat::Text)),
            ("JSON", Ok(LogFormat::Json)),
            (" json ", Ok(LogFormat::Json)),
            ("yaml", Err(())),
            ("", Err(())),
        ] {
            assert_eq!(LogFormat::parse(raw).map_err(|_| ()), want, "{raw:?}");
        }
    }

    #[test]
    fn a_record_is_one_object_with_its_fields_as_keys() {
        let kvs: &[(&str, log::kv::Value<'_>)] = &[
            ("status", log::kv::Value::from(429u16)),
            ("path", log::kv::Value::from("/a\"b\nc")),
            ("level", log::kv::Value::from("forged")),
        ];
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("tollgate::access")
            .args(format_args!("GET /a"))
            .key_values(&kvs)
            .build();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let line = json_line(&record, at);
        assert_eq!(line["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(line["level"], "INFO", "a field cannot overwrite the level");
        assert_eq!(line["target"], "tollgate::access");
        assert_eq!(line["message"], "GET /a");
        assert_eq!(line["status"], 429);
        assert_eq!(line["path"], "/a\"b\nc");
        // One line: newlines inside values are escaped by JSON.
        assert!(!line.to_string().contains('\n'));
    }
}
