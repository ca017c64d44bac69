//! The compose stack docs/operations.md describes ("Compose quick start"): two gateways on the one PostgreSQL, behind a load
//! balancer (the lb service: HAProxy with docker/haproxy.cfg) that alone publishes the proxy
//! port, each gateway's admin API on its own loopback port. The two files are read as text and
//! checked against each other and against the gateways' environment.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    time::Duration,
};

use ipnet::Ipv4Net;

use super::{
    gateways,
    haproxy::{self, server_option, Section},
    reader::{listen_port, top_level_value, PortMapping, Service},
    repo_file, services,
};

/// Where the official HAProxy image reads its configuration.
const HAPROXY_CFG_IN_CONTAINER: &str = "/usr/local/etc/haproxy/haproxy.cfg";

/// The proxy port docs/operations.md promises on the host.
const PUBLIC_PORT: u16 = 8080;

/// The load balancer: the one service that runs the official HAProxy image.
fn lb(services: &BTreeMap<String, Service>) -> &Service {
    let found: Vec<_> = services
        .values()
        .filter(|s| s.keys.get("image").is_some_and(|i| i.starts_with("haproxy:")))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one service with the haproxy image: {services:?}"
    );
    found[0]
}

fn ports(service: &Service) -> Vec<PortMapping> {
    service
        .list("ports")
        .iter()
        .map(|p| PortMapping::parse(p))
        .collect()
}

/// The configuration the lb service mounts at HAProxy's path, read from the repository.
fn lb_config(lb: &Service) -> Vec<Section> {
    let volumes = lb.list("volumes");
    let mount = volumes
        .iter()
        .map(|v| v.split(':').collect::<Vec<_>>())
        .find(|parts| parts.get(1) == Some(&HAPROXY_CFG_IN_CONTAINER))
        .unwrap_or_else(|| {
            panic!("the lb service mounts nothing at {HAPROXY_CFG_IN_CONTAINER}: {volumes:?}")
        });
    assert_eq!(
        mount.get(2),
        Some(&"ro"),
        "mount the HAProxy configuration read-only: {mount:?}"
    );
    let path = mount[0]
        .strip_prefix("./")
        .unwrap_or_else(|| panic!("the lb service should mount a file of the repository: {mount:?}"));
    haproxy::sections(&repo_file(path))
}

/// The frontend that binds `port`, and the backend it sends everything to.
fn route(cfg: &[Section], port: u16) -> (&Section, &Section) {
    let frontends: Vec<_> = cfg
        .iter()
        .filter(|s| s.kind == "frontend")
        .filter(|s| {
            s.directives(&["bind"])
                .iter()
                .any(|b| b.get(1).is_some_and(|a| a.ends_with(&format!(":{port}"))))
        })
        .collect();
    assert_eq!(
        frontends.len(),
        1,
        "expected one frontend binding :{port} in haproxy.cfg"
    );
    let frontend = frontends[0];
    assert_eq!(
        frontend.directives(&["use_backend"]).len(),
        0,
        "the frontend should send everything to its default_backend"
    );
    let backend = frontend
        .one(&["default_backend"])
        .and_then(|w| w.first())
        .unwrap_or_else(|| panic!("frontend {} has no default_backend", frontend.name));
    (frontend, haproxy::section(cfg, "backend", backend))
}

/// A directive of `proxy`, else of the `defaults` section it inherits from.
fn setting<'a>(cfg: &'a [Section], proxy: &'a Section, prefix: &[&str]) -> Option<&'a [String]> {
    proxy
        .one(prefix)
        .or_else(|| haproxy::section(cfg, "defaults", "").one(prefix))
}

/// One `server` line of the backend, its options completed with the `default-server` ones
/// (the server's own first, so they win).
struct Server {
    name: String,
    address: String,
    options: Vec<String>,
}

fn servers(cfg: &[Section], backend: &Section) -> Vec<Server> {
    let mut defaults: Vec<String> = Vec::new();
    for section in [backend, haproxy::section(cfg, "defaults", "")] {
        for words in section.directives(&["default-server"]) {
            defaults.extend(words[1..].iter().cloned());
        }
    }
    backend
        .directives(&["server"])
        .into_iter()
        .map(|words| {
            assert!(words.len() >= 3, "server line without an address: {words:?}");
            let mut options = words[3..].to_vec();
            options.extend(defaults.iter().cloned());
            Server {
                name: words[1].clone(),
                address: words[2].clone(),
                options,
            }
        })
        .collect()
}

/// A duration the gateway's environment sets, else the binary's default (docs/settings.md,
/// Configuration).
fn env_duration(gateway: &Service, var: &str, default: &str) -> Duration {
    let raw = gateway.env_var(var).unwrap_or(default);
    tollgate::config::parse_duration(raw).unwrap_or_else(|e| panic!("{var}={raw:?}: {e}"))
}

#[test]
fn two_gateways_share_one_database_and_differ_only_in_ports() {
    let services = services();
    let gateways = gateways(&services);
    let names: Vec<_> = gateways.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        gateways.len(),
        2,
        "docs/operations.md promises two gateway replicas: {names:?}"
    );
    assert!(services.contains_key("postgres"), "no postgres service");
    for (name, gateway) in &gateways {
        let url = gateway.env_var("DATABASE_URL");
        assert!(
            url.is_some_and(|u| u.starts_with("postgres://") && u.contains("@postgres:5432/")),
            "{name}: DATABASE_URL is not the postgres service's: {url:?}"
        );
    }
    let without_ports = |s: &Service| {
        let mut blocks = s.blocks.clone();
        blocks.remove("ports");
        (s.keys.clone(), s.env.clone(), blocks)
    };
    let (first, first_service) = gateways[0];
    for (name, gateway) in &gateways[1..] {
        assert!(
            without_ports(first_service) == without_ports(gateway),
            "{name} differs from {first} in more than its ports:\n{first_service:#?}\n{gateway:#?}"
        );
    }
}

#[test]
fn only_the_load_balancer_publishes_the_proxy_and_admin_apis_stay_on_loopback() {
    let services = services();
    let lb = lb(&services);
    assert!(
        ports(lb)
            .iter()
            .any(|p| p.host == PUBLIC_PORT && p.host_ip.is_none()),
        "the lb service does not publish {PUBLIC_PORT} on every host address: {:?}",
        lb.list("ports")
    );
    for (name, service) in services.iter().filter(|(_, s)| !std::ptr::eq(*s, lb)) {
        for port in ports(service) {
            assert!(
                port.host_ip.as_deref() == Some("127.0.0.1") && port.host != PUBLIC_PORT,
                "{name} publishes {port:?}: only the lb service may publish beyond the host's loopback"
            );
        }
    }
    let mut admin_ports = BTreeSet::new();
    for (name, gateway) in gateways(&services) {
        let admin = listen_port(
            gateway
                .env_var("TOLLGATE_ADMIN_LISTEN")
                .unwrap_or("127.0.0.1:8081"),
        );
        let published = ports(gateway);
        assert!(
            matches!(published.as_slice(), [p] if p.container == admin),
            "{name} should publish its admin API (container port {admin}) and nothing else: {published:?}"
        );
        assert!(
            admin_ports.insert(published[0].host),
            "{name} publishes its admin API on host port {}, as another gateway does",
            published[0].host
        );
    }
}

#[test]
fn haproxy_sends_to_every_gateway_and_checks_its_readyz() {
    let services = services();
    let lb = lb(&services);
    let cfg = lb_config(lb);
    let public = ports(lb)
        .into_iter()
        .find(|p| p.host == PUBLIC_PORT)
        .unwrap_or_else(|| panic!("the lb service does not publish {PUBLIC_PORT}"));
    let (frontend, backend) = route(&cfg, public.container);
    for proxy in [frontend, backend] {
        assert_eq!(
            setting(&cfg, proxy, &["mode"]),
            Some(&["http".to_string()][..]),
            "{} {}: mode http",
            proxy.kind,
            proxy.name
        );
    }

    // The health check's request: `option httpchk [METH] URI`, or `http-check send … uri URI`.
    let httpchk = setting(&cfg, backend, &["option", "httpchk"])
        .unwrap_or_else(|| panic!("backend {}: no `option httpchk`", backend.name));
    let uri = match httpchk {
        [] => backend
            .one(&["http-check", "send"])
            .and_then(|words| server_option(words, "uri"))
            .unwrap_or_else(|| panic!("backend {}: no `http-check send … uri`", backend.name)),
        [uri] | [_, uri, ..] => uri.as_str(),
    };
    assert_eq!(
        uri, "/readyz",
        "the health check should ask each gateway's /readyz"
    );

    let gateways: BTreeMap<&String, &Service> = gateways(&services).into_iter().collect();
    let servers = servers(&cfg, backend);
    let server_names: BTreeSet<&String> = servers.iter().map(|s| &s.name).collect();
    assert_eq!(
        server_names,
        gateways.keys().copied().collect(),
        "backend {}: one server per gateway service, named so",
        backend.name
    );
    for server in &servers {
        let gateway = gateways[&server.name];
        let proxy_port = listen_port(gateway.env_var("TOLLGATE_LISTEN").unwrap_or("0.0.0.0:8080"));
        let admin_listen = gateway
            .env_var("TOLLGATE_ADMIN_LISTEN")
            .unwrap_or("127.0.0.1:8081");
        assert_eq!(
            server.address,
            format!("{}:{proxy_port}", server.name),
            "server {}",
            server.name
        );
        assert!(
            server.options.iter().any(|o| o == "check"),
            "server {} is not health-checked: {:?}",
            server.name,
            server.options
        );
        // /readyz is on the admin listener, which must take connections from other containers.
        let check_port = server_option(&server.options, "port").map_or(proxy_port, |p| p.parse().unwrap());
        assert_eq!(
            check_port,
            listen_port(admin_listen),
            "server {}: the check should go to the admin listener ({admin_listen}), where /readyz is",
            server.name
        );
        let host = admin_listen.rsplit_once(':').map_or("", |(h, _)| h);
        assert!(
            !host.starts_with("127.") && host != "localhost" && host != "[::1]",
            "{}: TOLLGATE_ADMIN_LISTEN={admin_listen} is unreachable from the lb container",
            server.name
        );
    }
}

#[test]
fn haproxy_takes_a_draining_gateway_out_before_its_listener_closes() {
    let services = services();
    let lb = lb(&services);
    let cfg = lb_config(lb);
    let (_, backend) = route(&cfg, PUBLIC_PORT);
    let gateways: BTreeMap<&String, &Service> = gateways(&services).into_iter().collect();
    for server in servers(&cfg, backend) {
        // HAProxy's defaults: inter 2s, fastinter = inter, fall 3.
        let inter = server_option(&server.options, "inter").map_or(Duration::from_secs(2), haproxy::time);
        let fastinter = server_option(&server.options, "fastinter").map_or(inter, haproxy::time);
        let fall: u32 = server_option(&server.options, "fall").map_or(3, |f| f.parse().unwrap());
        // The first failed check comes at most `inter` after /readyz turns 503, the others
        // `fastinter` apart.
        let out_within = inter + fastinter * (fall - 1);
        let delay = env_duration(gateways[&server.name], "TOLLGATE_DRAIN_DELAY", "0s");
        assert!(
            out_within < delay,
            "server {}: HAProxy may send to it for {out_within:?} after /readyz fails, but its \
             listener closes after TOLLGATE_DRAIN_DELAY {delay:?}",
            server.name
        );
    }
}

#[test]
fn haproxy_outwaits_the_gateways_own_deadlines() {
    let services = services();
    let lb = lb(&services);
    let cfg = lb_config(lb);
    let (_, backend) = route(&cfg, PUBLIC_PORT);
    let timeout = setting(&cfg, backend, &["timeout", "server"])
        .and_then(|w| w.first())
        .map(|t| haproxy::time(t))
        .unwrap_or_else(|| panic!("no `timeout server` for backend {}", backend.name));
    for (name, gateway) in gateways(&services) {
        // A slow backend should get the gateway's own 504 JSON, not HAProxy's.
        for var in ["TOLLGATE_UPSTREAM_TIMEOUT", "TOLLGATE_UPSTREAM_BODY_TIMEOUT"] {
            let own = env_duration(gateway, var, "30s");
            assert!(
                timeout > own,
                "timeout server {timeout:?} is not longer than {name}'s {var} {own:?}"
            );
        }
    }
}

#[test]
fn gateways_trust_the_forwarding_header_of_the_load_balancer_alone() {
    let compose = repo_file("docker-compose.yml");
    let services = services();
    let lb = lb(&services);
    let address: Ipv4Addr = lb
        .nested("networks", "ipv4_address")
        .expect("the lb service needs a fixed ipv4_address: the gateways trust it")
        .parse()
        .unwrap();
    let network = |name: &str| -> Ipv4Net {
        top_level_value(&compose, "networks", name)
            .unwrap_or_else(|| panic!("the compose network declares no {name}"))
            .parse()
            .unwrap()
    };
    let (subnet, dynamic) = (network("subnet"), network("ip_range"));
    assert!(
        subnet.contains(&address) && !dynamic.contains(&address),
        "the lb service's address {address} should be in {subnet} and outside {dynamic}, where \
         docker gives other containers theirs"
    );

    let cfg = lb_config(lb);
    let (frontend, backend) = route(&cfg, PUBLIC_PORT);
    let option = |name: &str| {
        [backend, frontend]
            .into_iter()
            .find_map(|p| setting(&cfg, p, &["option", name]))
    };
    for (name, gateway) in gateways(&services) {
        let trusted: Vec<Ipv4Net> = gateway
            .env_var("TOLLGATE_TRUSTED_PROXIES")
            .unwrap_or_else(|| panic!("{name}: every client would be the load balancer"))
            .split(',')
            .map(|c| c.trim().parse().unwrap())
            .collect();
        assert_eq!(
            trusted,
            [Ipv4Net::new(address, 32).unwrap()],
            "{name} should trust the lb service's address and nothing else"
        );
        let header = gateway
            .env_var("TOLLGATE_FORWARDED_HEADER")
            .unwrap_or("x-forwarded-for")
            .to_ascii_lowercase();
        let written = match header.as_str() {
            "x-forwarded-for" => option("forwardfor"),
            "forwarded" => option("forwarded"),
            other => panic!("{name}: TOLLGATE_FORWARDED_HEADER={other}"),
        };
        let written =
            written.unwrap_or_else(|| panic!("{name} reads {header}, which HAProxy does not write"));
        assert!(
            !written.iter().any(|w| w == "header" || w == "if-none"),
            "HAProxy should append to {header} under that name, always: {written:?}"
        );
    }
}
