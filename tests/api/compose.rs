//! The container files against the binary: every variable docker-compose.yml sets is one the
//! binary reads, every variable it interpolates is in .env.example, the Dockerfile's runtime
//! stage runs the binary as a non-root user, and each gateway's compose environment passes the
//! gateway's own validation. `lb` checks the two gateways against the load balancer in front of
//! them (docker/haproxy.cfg). No docker is needed: the files are read as text, the real binary
//! is run.
//!
//! - `reader`: docker-compose.yml and env files read as text, compose's interpolation;
//! - `haproxy`: docker/haproxy.cfg read as text;
//! - `lb`: the replicas, the ports and the load balancer's configuration against each other.

mod haproxy;
mod lb;
mod reader;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::TempDir;
use reader::{compose_services, env_file, interpolate, interpolated_names, Service};

/// Variables of .env.example that only docker-compose.yml uses (the postgres container and the
/// gateway's DATABASE_URL); the binary itself never reads them.
const COMPOSE_ONLY: &[&str] = &["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"];

/// Variables the `demo-backend` subcommand reads.
const DEMO_VARS: &[&str] = &["DEMO_LISTEN", "DEMO_NAME"];

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn services() -> BTreeMap<String, Service> {
    compose_services(&repo_file("docker-compose.yml"))
}

/// The gateway replicas: the services that run the tollgate image (`<<: *tollgate-image`)
/// without a `command:` (the demo backends run `demo-backend`). At least one; how many is
/// `lb::two_gateways_share_one_database_and_differ_only_in_ports`'s business.
fn gateways(services: &BTreeMap<String, Service>) -> Vec<(&String, &Service)> {
    let found: Vec<_> = services
        .iter()
        .filter(|(_, s)| {
            s.keys.get("<<").map(String::as_str) == Some("*tollgate-image") && !s.keys.contains_key("command")
        })
        .collect();
    assert!(
        !found.is_empty(),
        "no gateway service in docker-compose.yml: {services:?}"
    );
    found
}

#[test]
fn compose_sets_only_variables_the_binary_reads() {
    let services = services();
    let accepted: BTreeSet<String> = tollgate::config::env_vars().into_iter().collect();
    assert!(accepted.contains("TOLLGATE_BACKENDS"), "{accepted:?}");

    let gateways = gateways(&services);
    for (service, gateway) in &gateways {
        assert!(!gateway.env.is_empty(), "{service} sets no environment");
        for (name, _) in &gateway.env {
            assert!(
                accepted.contains(name),
                "{service} sets {name}, which the binary does not read; it reads {accepted:?}"
            );
        }
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
        for (gateway_name, gateway) in &gateways {
            let listed = gateway.env_var("TOLLGATE_BACKENDS");
            assert!(
                listed.is_some_and(|v| v.split(',').any(|b| b == url)),
                "TOLLGATE_BACKENDS of {gateway_name} does not list {url}: {listed:?}"
            );
        }
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
    let services = services();
    for (service, gateway) in gateways(&services) {
        let grace = gateway
            .keys
            .get("stop_grace_period")
            .unwrap_or_else(|| panic!("{service} needs a stop_grace_period"));
        // The defaults of the binary where the service sets nothing.
        let delay = gateway.env_var("TOLLGATE_DRAIN_DELAY").unwrap_or("0s");
        let drain = gateway.env_var("TOLLGATE_SHUTDOWN_TIMEOUT").unwrap_or("30s");
        let [grace, delay, drain] = [grace.as_str(), delay, drain]
            .map(|d| tollgate::config::parse_duration(d).unwrap_or_else(|e| panic!("{service}: {d:?}: {e}")));
        assert!(
            grace > delay + drain,
            "{service}: stop_grace_period {grace:?} must be longer than TOLLGATE_DRAIN_DELAY {delay:?} \
             plus TOLLGATE_SHUTDOWN_TIMEOUT {drain:?}"
        );
    }
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

/// Each gateway's environment as compose would pass it with .env.example as .env, made
/// runnable here: the database unreachable, the listeners on free ports (hosts kept, so a
/// public admin listener still needs its token).
fn runnable_gateway_envs() -> Vec<(String, BTreeMap<String, String>)> {
    let services = services();
    gateways(&services)
        .into_iter()
        .map(|(name, gateway)| (name.clone(), runnable_gateway_env(name, gateway)))
        .collect()
}

fn runnable_gateway_env(service: &str, gateway: &Service) -> BTreeMap<String, String> {
    let example: BTreeMap<String, String> = env_file(&repo_file(".env.example")).into_iter().collect();
    let mut env: BTreeMap<String, String> = gateway
        .env
        .iter()
        .map(|(name, raw)| (name.clone(), interpolate(raw, &example)))
        .collect();
    let url = env
        .get("DATABASE_URL")
        .unwrap_or_else(|| panic!("{service} sets no DATABASE_URL"));
    assert!(
        url.starts_with("postgres://") && url.contains("@postgres:5432/"),
        "{url}"
    );
    env.insert("DATABASE_URL".into(), "postgres://postgres@127.0.0.1:1/x".into());
    for var in ["TOLLGATE_LISTEN", "TOLLGATE_ADMIN_LISTEN"] {
        let addr = env.get(var).unwrap_or_else(|| panic!("{service} sets no {var}"));
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
    for (service, env) in runnable_gateway_envs() {
        let (code, stderr) = run_gateway(&env);
        // 2 would be "invalid configuration"; past validation the unreachable database ends it.
        assert_eq!(
            code,
            Some(1),
            "{service}: expected exit 1 (database unreachable), got {code:?}:\n{stderr}"
        );
        assert!(stderr.contains("database"), "{service}: {stderr}");
        assert!(!stderr.contains("invalid configuration"), "{service}: {stderr}");
    }
}

#[test]
fn compose_admin_listener_is_public_so_the_token_is_required() {
    // The control for the test above: the same environment without the token is refused, so
    // that test does reach validation and the token there is needed.
    for (service, mut env) in runnable_gateway_envs() {
        env.remove("TOLLGATE_ADMIN_TOKEN")
            .unwrap_or_else(|| panic!("{service} sets no TOLLGATE_ADMIN_TOKEN"));
        let (code, stderr) = run_gateway(&env);
        assert_eq!(code, Some(2), "{service}: {stderr}");
        assert!(
            stderr.contains("invalid configuration") && stderr.contains("TOLLGATE_ADMIN_TOKEN"),
            "{service}: {stderr}"
        );
    }
}

/// Cargo refuses a manifest whose declared targets are missing, so the Dockerfile's
/// dependency layer must create a dummy at every `path` Cargo.toml names; the test target
/// `allocs` was once added without one, which broke the image build.
#[test]
fn dockerfile_dummy_build_has_every_declared_target() {
    let manifest = repo_file("Cargo.toml");
    let dockerfile = repo_file("docker/Dockerfile");
    let paths: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .collect();
    assert!(paths.len() >= 4, "targets found: {paths:?}");
    // The dummy step: everything up to the first dependency build.
    let dummy = dockerfile
        .split("cargo build")
        .next()
        .expect("a cargo build in the Dockerfile");
    for path in paths {
        assert!(
            dummy.contains(&format!("> {path}")),
            "docker/Dockerfile: the dummy build does not create {path} (declared in Cargo.toml)"
        );
    }
}

/// The vendored actix-http is a dependency: the Dockerfile must copy every `[patch]` path
/// before its first build, or the image build cannot resolve the manifest.
#[test]
fn dockerfile_copies_every_patched_dependency_before_building() {
    let manifest = repo_file("Cargo.toml");
    let dockerfile = repo_file("docker/Dockerfile");
    let patch_section = manifest
        .split("[patch.crates-io]")
        .nth(1)
        .expect("Cargo.toml has a [patch.crates-io] section");
    let paths: Vec<&str> = patch_section
        .lines()
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once("path = \"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(!paths.is_empty(), "no [patch] paths in Cargo.toml");
    let before_build = dockerfile
        .split("cargo build")
        .next()
        .expect("a cargo build in the Dockerfile");
    for path in paths {
        let top = path.split('/').next().unwrap_or(path);
        assert!(
            before_build.contains(&format!("COPY {top} ./{top}"))
                || before_build.contains(&format!("COPY {path} ./{path}")),
            "docker/Dockerfile: {path} ([patch] in Cargo.toml) is not copied before the first cargo build"
        );
        assert!(repo_file(&format!("{path}/Cargo.toml")).contains("name = \"actix-http\""));
    }
}
