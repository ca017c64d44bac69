//! The container files against the binary: every variable docker-compose.yml sets is one the
//! binary reads, every variable it interpolates is in .env.example, the Dockerfile's runtime
//! stage runs the binary as a non-root user, and the compose environment passes the gateway's
//! own validation. No docker is needed: the files are read as text, the real binary is run.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::TempDir;

/// Variables of .env.example that only docker-compose.yml uses (the postgres container and the
/// gateway's DATABASE_URL); the binary itself never reads them.
const COMPOSE_ONLY: &[&str] = &["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"];

/// Variables the `demo-backend` subcommand reads.
const DEMO_VARS: &[&str] = &["DEMO_LISTEN", "DEMO_NAME"];

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One service of docker-compose.yml, as far as these tests need it.
#[derive(Debug, Default)]
struct Service {
    /// Scalar keys directly under the service (`stop_grace_period: 40s`).
    keys: BTreeMap<String, String>,
    /// Its `environment:` entries, name and raw (not yet interpolated) value, in file order.
    env: Vec<(String, String)>,
}

fn unquote(s: &str) -> &str {
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

/// A small line-based reader of docker-compose.yml: the services under `services:`, their
/// scalar keys, and their `environment:` entries in list (`- NAME=value`) or map
/// (`NAME: value`) form. It fails loudly on anything in an environment block it does not
/// understand, and when it finds no variables at all.
fn compose_services(yaml: &str) -> BTreeMap<String, Service> {
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let (mut in_services, mut current, mut in_env) = (false, None::<String>, false);
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
            (current, in_env) = (None, false);
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
            (current, in_env, key_indent) = (Some(name.to_string()), false, None);
            continue;
        }
        let Some(service) = current.as_ref().and_then(|c| services.get_mut(c)) else {
            panic!("docker-compose.yml:{n}: indented line outside a service: {text:?}");
        };
        let key_indent = *key_indent.get_or_insert(indent);
        if indent == key_indent {
            in_env = text == "environment:";
            if !in_env {
                if let Some((key, value)) = text.split_once(':') {
                    if !value.trim().is_empty() {
                        service
                            .keys
                            .insert(key.trim().to_string(), unquote(value).to_string());
                    }
                }
            }
            continue;
        }
        if !in_env || indent < key_indent {
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

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `NAME=value` lines of an env file, in order.
fn env_file(text: &str) -> Vec<(String, String)> {
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
fn interpolated_names(text: &str) -> BTreeSet<String> {
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
fn interpolate(value: &str, vars: &BTreeMap<String, String>) -> String {
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

fn tollgate_service(services: &BTreeMap<String, Service>) -> &Service {
    services
        .get("tollgate")
        .unwrap_or_else(|| panic!("no `tollgate` service in docker-compose.yml: {services:?}"))
}

#[test]
fn compose_sets_only_variables_the_binary_reads() {
    let services = compose_services(&repo_file("docker-compose.yml"));
    let accepted: BTreeSet<String> = tollgate::config::env_vars().into_iter().collect();
    assert!(accepted.contains("TOLLGATE_BACKENDS"), "{accepted:?}");

    let gateway = tollgate_service(&services);
    assert!(
        !gateway.env.is_empty(),
        "the tollgate service sets no environment"
    );
    for (name, _) in &gateway.env {
        assert!(
            accepted.contains(name),
            "tollgate service sets {name}, which the binary does not read; it reads {accepted:?}"
        );
    }

    let backends: Vec<(&String, &Service)> = services
        .iter()
        .filter(|(n, _)| n.starts_with("backend"))
        .collect();
    assert_eq!(backends.len(), 3, "expected three demo backends: {services:?}");
    for (service, backend) in backends {
        for (name, _) in &backend.env {
            assert!(
                DEMO_VARS.contains(&name.as_str()),
                "{service} sets {name}; demo-backend reads only {DEMO_VARS:?}"
            );
        }
        let url = format!("http://{service}:9000");
        let listed = gateway
            .env
            .iter()
            .find(|(n, _)| n == "TOLLGATE_BACKENDS")
            .map(|(_, v)| v);
        assert!(
            listed.is_some_and(|v| v.split(',').any(|b| b == url)),
            "TOLLGATE_BACKENDS of the tollgate service does not list {url}: {listed:?}"
        );
    }
}

#[test]
fn env_example_matches_the_compose_interpolation() {
    let compose = repo_file("docker-compose.yml");
    let example = env_file(&repo_file(".env.example"));
    let accepted: BTreeSet<String> = tollgate::config::env_vars().into_iter().collect();
    let interpolated = interpolated_names(&compose);
    assert!(interpolated.contains("TOLLGATE_ADMIN_TOKEN"), "{interpolated:?}");

    let mut seen = BTreeSet::new();
    for (name, _) in &example {
        assert!(seen.insert(name.clone()), ".env.example sets {name} twice");
        assert!(
            accepted.contains(name) || COMPOSE_ONLY.contains(&name.as_str()),
            ".env.example sets {name}: neither the binary nor docker-compose.yml knows it"
        );
        // The container never sees .env itself: a variable compose does not pass on is dead.
        assert!(
            interpolated.contains(name),
            ".env.example sets {name}, but docker-compose.yml never uses it"
        );
    }
    for name in &interpolated {
        assert!(
            seen.contains(name),
            "docker-compose.yml interpolates ${{{name}}}, which .env.example does not list"
        );
    }

    let token = &example
        .iter()
        .find(|(n, _)| n == "TOLLGATE_ADMIN_TOKEN")
        .unwrap()
        .1;
    assert!(
        token.len() >= 16 && token.chars().all(|c| c.is_ascii_graphic()),
        "the admin token placeholder must itself be a valid token: {token:?}"
    );
}

#[test]
fn stop_grace_period_outlasts_the_drain() {
    let services = compose_services(&repo_file("docker-compose.yml"));
    let gateway = tollgate_service(&services);
    let grace = gateway
        .keys
        .get("stop_grace_period")
        .expect("the tollgate service needs a stop_grace_period");
    let drain = gateway
        .env
        .iter()
        .find(|(n, _)| n == "TOLLGATE_SHUTDOWN_TIMEOUT")
        .map_or("30s", |(_, v)| v.as_str());
    let (grace, drain) = (
        tollgate::config::parse_duration(grace).unwrap(),
        tollgate::config::parse_duration(drain).unwrap(),
    );
    assert!(
        grace > drain,
        "stop_grace_period {grace:?} must be longer than TOLLGATE_SHUTDOWN_TIMEOUT {drain:?}"
    );
}

#[test]
fn dockerfile_runtime_stage_runs_tollgate_as_non_root() {
    let dockerfile = repo_file("docker/Dockerfile");
    // Instructions with their continuation lines joined, comments dropped.
    let mut instructions: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let text = line.trim();
        if text.starts_with('#') || text.is_empty() && pending.is_empty() {
            continue;
        }
        match text.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(text);
                instructions.push(std::mem::take(&mut pending));
            }
        }
    }
    let keyword = |i: &String| i.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    let last_from = instructions
        .iter()
        .rposition(|i| keyword(i) == "FROM")
        .expect("no FROM in docker/Dockerfile");
    let runtime = &instructions[last_from..];

    let user = runtime
        .iter()
        .rfind(|i| keyword(i) == "USER")
        .expect("the runtime stage of docker/Dockerfile has no USER: it would run as root");
    let user = user.split_whitespace().nth(1).unwrap_or("");
    let name = user.split(':').next().unwrap_or("");
    assert!(
        !name.is_empty() && name != "root" && name != "0",
        "the runtime stage runs as {user:?}"
    );

    let entrypoint = runtime
        .iter()
        .rfind(|i| keyword(i) == "ENTRYPOINT")
        .expect("the runtime stage of docker/Dockerfile has no ENTRYPOINT");
    let exec_form = entrypoint["ENTRYPOINT".len()..].trim();
    let argv: Vec<String> = serde_json::from_str(exec_form)
        .unwrap_or_else(|e| panic!("ENTRYPOINT must be in exec form (a JSON array): {exec_form}: {e}"));
    let binary = argv.first().expect("empty ENTRYPOINT");
    assert!(binary.ends_with("/tollgate"), "ENTRYPOINT runs {binary}");
    assert!(
        runtime.iter().any(|i| keyword(i) == "COPY"
            && i.contains("--from=")
            && i.trim_end().ends_with(binary.as_str())),
        "the runtime stage does not copy the binary to {binary}"
    );
}

/// The tollgate service's environment as compose would pass it with .env.example as .env,
/// made runnable here: the database unreachable, the listeners on free ports (hosts kept, so
/// a public admin listener still needs its token).
fn runnable_gateway_env() -> BTreeMap<String, String> {
    let services = compose_services(&repo_file("docker-compose.yml"));
    let example: BTreeMap<String, String> = env_file(&repo_file(".env.example")).into_iter().collect();
    let mut env: BTreeMap<String, String> = tollgate_service(&services)
        .env
        .iter()
        .map(|(name, raw)| (name.clone(), interpolate(raw, &example)))
        .collect();
    let url = env
        .get("DATABASE_URL")
        .expect("the tollgate service sets no DATABASE_URL");
    assert!(
        url.starts_with("postgres://") && url.contains("@postgres:5432/"),
        "{url}"
    );
    env.insert("DATABASE_URL".into(), "postgres://postgres@127.0.0.1:1/x".into());
    for var in ["TOLLGATE_LISTEN", "TOLLGATE_ADMIN_LISTEN"] {
        let addr = env
            .get(var)
            .unwrap_or_else(|| panic!("the tollgate service sets no {var}"));
        let (host, _port) = addr.rsplit_once(':').unwrap();
        env.insert(var.into(), format!("{host}:0"));
    }
    env.insert("TOLLGATE_DB_STARTUP_TIMEOUT".into(), "1s".into());
    env
}

/// Runs the binary with exactly `env` (plus PATH) in an empty directory (no .env there) and
/// returns its exit code and stderr.
fn run_gateway(env: &BTreeMap<String, String>) -> (Option<i32>, String) {
    let dir = TempDir::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the gateway did not exit within 30s:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn compose_environment_passes_the_gateways_validation() {
    let env = runnable_gateway_env();
    let (code, stderr) = run_gateway(&env);
    // 2 would be "invalid configuration"; past validation the unreachable database ends it.
    assert_eq!(
        code,
        Some(1),
        "expected exit 1 (database unreachable), got {code:?}:\n{stderr}"
    );
    assert!(stderr.contains("database"), "{stderr}");
    assert!(!stderr.contains("invalid configuration"), "{stderr}");
}

#[test]
fn compose_admin_listener_is_public_so_the_token_is_required() {
    // The control for the test above: the same environment without the token is refused, so
    // that test does reach validation and the token there is needed.
    let mut env = runnable_gateway_env();
    env.remove("TOLLGATE_ADMIN_TOKEN")
        .expect("the tollgate service sets no TOLLGATE_ADMIN_TOKEN");
    let (code, stderr) = run_gateway(&env);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid configuration") && stderr.contains("TOLLGATE_ADMIN_TOKEN"),
        "{stderr}"
    );
}
