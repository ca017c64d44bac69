//! A small line-based reader of docker-compose.yml and of env files, and compose's variable
//! interpolation: enough of YAML for the layout the compose file keeps, failing loudly on what
//! it does not understand rather than guessing.

use std::collections::{BTreeMap, BTreeSet};

/// One service of docker-compose.yml, as far as these tests need it.
#[derive(Debug, Default, PartialEq)]
pub struct Service {
    /// Scalar keys directly under the service (`stop_grace_period: 40s`).
    pub keys: BTreeMap<String, String>,
    /// The lines under each key that has a nested block (`ports:`, `healthcheck:`, …), comments
    /// dropped, each with its indentation relative to the key's: enough to compare two services
    /// and to read lists of scalars.
    pub blocks: BTreeMap<String, Vec<String>>,
    /// Its `environment:` entries, name and raw (not yet interpolated) value, in file order.
    pub env: Vec<(String, String)>,
}

impl Service {
    /// The raw value of an `environment:` entry.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The items of a block list of scalars under `key` (`ports:`, `volumes:`), unquoted; empty
    /// when the service has no such key. A flow list (`[…]`) or nested items are refused.
    pub fn list(&self, key: &str) -> Vec<String> {
        assert!(
            !self.keys.contains_key(key),
            "write `{key}:` as a block list (`- item` lines), not {:?}",
            self.keys[key]
        );
        let Some(lines) = self.blocks.get(key) else {
            return Vec::new();
        };
        let item_indent = lines.iter().map(|l| indent_of(l)).min().unwrap_or(0);
        lines
            .iter()
            .map(|l| {
                assert_eq!(
                    indent_of(l),
                    item_indent,
                    "`{key}:` holds more than a list of scalars: {l:?}"
                );
                let item = l
                    .trim()
                    .strip_prefix("- ")
                    .unwrap_or_else(|| panic!("`{key}:` holds {l:?}, not `- item`"));
                unquote(item).to_string()
            })
            .collect()
    }

    /// The value of the first `name: value` line anywhere in the block under `key`.
    pub fn nested(&self, key: &str, name: &str) -> Option<String> {
        self.blocks.get(key)?.iter().find_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k == name).then(|| unquote(v).to_string())
        })
    }
}

pub fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The services under `services:` of docker-compose.yml: their scalar keys, their nested
/// blocks, and their `environment:` entries in list (`- NAME=value`) or map (`NAME: value`)
/// form. It fails loudly on anything in an environment block it does not understand, and when
/// it finds no variables at all.
pub fn compose_services(yaml: &str) -> BTreeMap<String, Service> {
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let (mut in_services, mut current, mut block) = (false, None::<String>, None::<String>);
    let (mut service_indent, mut key_indent) = (None::<usize>, None::<usize>);
    for (n, line) in yaml.lines().enumerate() {
        let n = n + 1;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        assert!(!line.starts_with('\t'), "docker-compose.yml:{n}: tab indentation");
        let indent = indent_of(line);
        if indent == 0 {
            in_services = text == "services:";
            (current, block) = (None, None);
            continue;
        }
        if !in_services {
            continue;
        }
        let service_indent = *service_indent.get_or_insert(indent);
        if indent == service_indent {
            let name = text
                .strip_suffix(':')
                .unwrap_or_else(|| panic!("docker-compose.yml:{n}: expected `SERVICE:`, got {text:?}"));
            services.entry(name.to_string()).or_default();
            (current, block, key_indent) = (Some(name.to_string()), None, None);
            continue;
        }
        let Some(service) = current.as_ref().and_then(|c| services.get_mut(c)) else {
            panic!("docker-compose.yml:{n}: indented line outside a service: {text:?}");
        };
        let key_indent = *key_indent.get_or_insert(indent);
        assert!(
            indent >= key_indent,
            "docker-compose.yml:{n}: indented less than the keys of its service: {text:?}"
        );
        if indent == key_indent {
            let (key, value) = text
                .split_once(':')
                .unwrap_or_else(|| panic!("docker-compose.yml:{n}: expected `KEY: value`, got {text:?}"));
            block = None;
            if value.trim().is_empty() {
                block = Some(key.trim().to_string());
            } else {
                service
                    .keys
                    .insert(key.trim().to_string(), unquote(value).to_string());
            }
            continue;
        }
        let Some(key) = block.as_ref() else {
            panic!("docker-compose.yml:{n}: nested line under a scalar key: {text:?}");
        };
        let relative = format!("{}{text}", " ".repeat(indent - key_indent));
        service.blocks.entry(key.clone()).or_default().push(relative);
        if key != "environment" {
            continue;
        }
        let (name, value) = match text.strip_prefix("- ") {
            Some(item) => unquote(item)
                .split_once('=')
                .unwrap_or_else(|| panic!("docker-compose.yml:{n}: expected `- NAME=value`, got {text:?}")),
            None => text
                .split_once(':')
                .map(|(k, v)| (k.trim(), unquote(v)))
                .unwrap_or_else(|| panic!("docker-compose.yml:{n}: expected `NAME: value`, got {text:?}")),
        };
        assert!(
            is_var_name(name),
            "docker-compose.yml:{n}: {name:?} is not an environment variable name"
        );
        service.env.push((name.to_string(), value.to_string()));
    }
    let vars: usize = services.values().map(|s| s.env.len()).sum();
    assert!(
        vars > 0,
        "found no environment variables in docker-compose.yml: has its layout changed? {services:?}"
    );
    services
}

/// The value of the first `name: value` line (a list item's `- ` aside) in the top-level block
/// `section` of docker-compose.yml (`networks:`, `volumes:`).
pub fn top_level_value(yaml: &str, section: &str, name: &str) -> Option<String> {
    let mut inside = false;
    for line in yaml.lines() {
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if indent_of(line) == 0 {
            inside = text == format!("{section}:");
            continue;
        }
        let text = text.strip_prefix("- ").unwrap_or(text);
        if let Some((k, v)) = text.split_once(':') {
            if inside && k == name {
                return Some(unquote(v).to_string());
            }
        }
    }
    None
}

pub fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `NAME=value` lines of an env file, in order.
pub fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            let (name, value) = l
                .split_once('=')
                .unwrap_or_else(|| panic!(".env.example:{n}: expected NAME=value, got {l:?}"));
            assert!(is_var_name(name), ".env.example:{n}: bad name {name:?}");
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// Names compose interpolates in `text` (`${NAME}`, `${NAME:-default}`, `${NAME:?message}`,
/// …), comment lines aside; `$$` is a literal dollar. A bare `$NAME` is refused so that none
/// slips through.
pub fn interpolated_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = text.as_str();
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
            continue;
        }
        let braced = after.strip_prefix('{').unwrap_or_else(|| {
            panic!("docker-compose.yml: use ${{NAME}} (or $$ for a dollar) at {after:.30?}")
        });
        let end = braced
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(braced.len());
        assert!(end > 0, "docker-compose.yml: empty ${{}} at {after:.30?}");
        names.insert(braced[..end].to_string());
        rest = &braced[end..];
    }
    names
}

/// Compose's interpolation of one value, with `vars` as the .env file.
pub fn interpolate(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let braced = after
            .strip_prefix('{')
            .unwrap_or_else(|| panic!("bare $ in {value:?}: use ${{NAME}} or $$"));
        let (body, tail) = braced
            .split_once('}')
            .unwrap_or_else(|| panic!("unclosed ${{ in {value:?}"));
        rest = tail;
        let name_end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let (name, op) = body.split_at(name_end);
        let set = vars.get(name).map(String::as_str);
        let got = match (op.get(..2), op.get(..1)) {
            (Some(":-"), _) => set.filter(|v| !v.is_empty()).unwrap_or(&op[2..]),
            (Some(":?"), _) => set
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| panic!("{name} is required ({}) but empty in .env.example", &op[2..])),
            (_, Some("-")) => set.unwrap_or(&op[1..]),
            (_, Some("?")) => set.unwrap_or_else(|| panic!("{name} is required but not in .env.example")),
            _ if op.is_empty() => set.unwrap_or(""),
            _ => panic!("unsupported interpolation ${{{body}}}"),
        };
        out.push_str(got);
    }
    out.push_str(rest);
    out
}

/// One entry of a service's `ports:` in the short form, `[IP:]HOST:CONTAINER`.
#[derive(Debug, PartialEq)]
pub struct PortMapping {
    /// The host address it is published on; `None` is every address.
    pub host_ip: Option<String>,
    pub host: u16,
    pub container: u16,
}

impl PortMapping {
    /// Parses one `ports:` item; ranges, protocols and container-only ports are refused.
    pub fn parse(item: &str) -> PortMapping {
        let port = |p: &str| {
            p.parse::<u16>()
                .unwrap_or_else(|_| panic!("ports: {item:?}: {p:?} is not a port"))
        };
        match item.split(':').collect::<Vec<_>>().as_slice() {
            [host, container] => PortMapping {
                host_ip: None,
                host: port(host),
                container: port(container),
            },
            [ip, host, container] => PortMapping {
                host_ip: Some(ip.to_string()),
                host: port(host),
                container: port(container),
            },
            _ => panic!("ports: expected [IP:]HOST:CONTAINER, got {item:?}"),
        }
    }
}

/// The port of a `HOST:PORT` listen address.
pub fn listen_port(addr: &str) -> u16 {
    let (_, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{addr:?} is not HOST:PORT"));
    port.parse()
        .unwrap_or_else(|_| panic!("{addr:?}: {port:?} is not a port"))
}

#[test]
fn the_reader_reads_blocks_lists_and_nested_values() {
    let services = compose_services(
        "services:\n  a:\n    image: x\n    ports:\n      # why\n      - \"127.0.0.1:1:2\"\n      - 3:4\n    \
         environment:\n      A: \"1\"\n    networks:\n      default:\n        ipv4_address: 10.0.0.1\n\
         networks:\n  default:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/24\n",
    );
    let a = &services["a"];
    assert_eq!(a.keys["image"], "x");
    assert_eq!(a.list("ports"), ["127.0.0.1:1:2", "3:4"]);
    assert_eq!(a.list("volumes"), Vec::<String>::new());
    assert_eq!(a.env_var("A"), Some("1"));
    assert_eq!(a.nested("networks", "ipv4_address").as_deref(), Some("10.0.0.1"));
    assert_eq!(
        PortMapping::parse("127.0.0.1:1:2"),
        PortMapping {
            host_ip: Some("127.0.0.1".into()),
            host: 1,
            container: 2
        }
    );
    let yaml = "services:\n  a:\n    environment:\n      A: b\nnetworks:\n  default:\n    ipam:\n      \
                config:\n        - subnet: 10.0.0.0/24\n";
    assert_eq!(
        top_level_value(yaml, "networks", "subnet").as_deref(),
        Some("10.0.0.0/24")
    );
}
