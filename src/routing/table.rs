//! The route table: which route a request takes, decided the same way every time.
//!
//! Order: a route naming the request's host exactly beats one matching it
//! by a wildcard (the longer wildcard first), which beats one naming no host; then the longest
//! path (an exact path before a prefix of the same length); then the route with more
//! conditions (host, path, methods, each header); then the higher `priority`; then the id, so
//! that no two routes ever tie. A table is built whole and never changed: a new one replaces it.
//!
//! Lookup is a hash of the host (and of each of its parent names for wildcards) and a scan of
//! the few routes of that host, in order: its cost does not grow with the number of hosts.

use std::{cmp::Reverse, collections::HashMap};

use actix_web::http::{header::HeaderMap, header::HeaderName, Method};

use super::pattern::{normalize_host, path_matches, HostPattern, PathPattern};

/// A route as the table sees it: its match conditions and what it leads to (`T`).
#[derive(Debug, Clone)]
pub struct RouteRule<T> {
    /// The operator's id (unique).
    pub id: String,
    /// Hosts it answers (none: any host).
    pub hosts: Vec<HostPattern>,
    /// Paths it answers (none: any path).
    pub paths: Vec<PathPattern>,
    /// Methods it answers (none: any method).
    pub methods: Vec<Method>,
    /// Headers that must be present with exactly this value.
    pub headers: Vec<(HeaderName, String)>,
    /// The last word between routes that match alike: the higher wins.
    pub priority: i32,
    /// What the route leads to.
    pub target: T,
}

/// Two routes with the same conditions: the second would never be chosen by them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {second:?} has the same match as route {first:?} (host {host}, path {path})")]
pub struct SameMatch {
    /// The route already in the table.
    pub first: String,
    /// The route that repeats its match.
    pub second: String,
    /// The host both name (`*` for any).
    pub host: String,
    /// The path both name (`*` for any).
    pub path: String,
}

/// What makes two (host, path) pairs of routes the same match: host, path, sorted methods,
/// sorted headers.
type MatchKey<'a> = (
    Option<&'a HostPattern>,
    Option<&'a PathPattern>,
    (Vec<&'a str>, Vec<(&'a str, &'a str)>),
);

/// The route chosen for a request, and the path condition that matched (for `strip_prefix`).
#[derive(Debug)]
pub struct Chosen<'a, T> {
    /// The route.
    pub route: &'a RouteRule<T>,
    /// The path condition that matched (`None`: the route names no path).
    pub path: Option<&'a PathPattern>,
}

/// One (host, path) pair of a route, ranked within its host's list.
#[derive(Debug, Clone)]
struct Entry {
    route: u32,
    /// Index into the route's `paths`, if it names any.
    path: Option<u16>,
    /// Sort key, greatest first: path length, exact before prefix, conditions, priority.
    rank: (usize, bool, usize, i32),
    /// Where the path condition is in the list's `paths` (start, length).
    at: (u32, u32),
    /// The path condition is exact.
    exact: bool,
    /// The route has no method or header condition: a matching path is enough.
    plain: bool,
}

/// The routes of one host (or of any host), in the order they are tried, with their path
/// conditions end to end in one string: a lookup reads the list and that string, and reaches
/// the route itself only once it matches (a table of 10,000 routes does not fit in a cache).
#[derive(Debug, Default)]
struct List {
    entries: Vec<Entry>,
    paths: String,
}

/// Routes by host class, each list in the order they are tried.
#[derive(Debug)]
pub struct RouteTable<T> {
    routes: Vec<RouteRule<T>>,
    // aHash: a host is hashed once per request (and once per parent name for wildcards),
    // and SipHash's cost is what a lookup among many hosts adds over one among few.
    exact: HashMap<String, List, ahash::RandomState>,
    wildcard: HashMap<String, List, ahash::RandomState>,
    any: List,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            routes: Vec::new(),
            exact: HashMap::default(),
            wildcard: HashMap::default(),
            any: List::default(),
        }
    }
}

impl<T> RouteRule<T> {
    /// How many conditions the route sets.
    fn conditions(&self) -> usize {
        usize::from(!self.hosts.is_empty())
            + usize::from(!self.paths.is_empty())
            + usize::from(!self.methods.is_empty())
            + self.headers.len()
    }

    /// The method and header conditions (host and path are the table's business).
    fn admits(&self, method: &Method, headers: &HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self
                .headers
                .iter()
                .all(|(name, want)| headers.get(name).is_some_and(|v| v.as_bytes() == want.as_bytes()))
    }

    /// The conditions other than host and path, in a form two routes can be compared by.
    fn rest_key(&self) -> (Vec<&str>, Vec<(&str, &str)>) {
        let mut methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        methods.sort_unstable();
        methods.dedup();
        let mut headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        headers.sort_unstable();
        (methods, headers)
    }
}

impl<T> RouteTable<T> {
    /// Builds the table, refusing two routes with the same match.
    pub fn build(mut routes: Vec<RouteRule<T>>) -> Result<RouteTable<T>, SameMatch> {
        // The id is the last tie-break: sorting by it first makes every list's order total.
        routes.sort_by(|a, b| a.id.cmp(&b.id));
        let mut table = RouteTable::default();
        let mut seen: HashMap<MatchKey<'_>, usize> = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            let hosts: Vec<Option<&HostPattern>> = if r.hosts.is_empty() {
                vec![None]
            } else {
                r.hosts.iter().map(Some).collect()
            };
            let paths: Vec<Option<(u16, &PathPattern)>> = if r.paths.is_empty() {
                vec![None]
            } else {
                r.paths
                    .iter()
                    .enumerate()
                    .map(|(j, p)| Some((j as u16, p)))
                    .collect()
            };
            for host in &hosts {
                for path in &paths {
                    let key = (*host, path.map(|(_, p)| p), r.rest_key());
                    if let Some(&first) = seen.get(&key) {
                        if first != i {
                            return Err(SameMatch {
                                first: routes[first].id.clone(),
                                second: r.id.clone(),
                                host: host.map_or_else(|| "*".to_string(), ToString::to_string),
                                path: path.map_or_else(|| "*".to_string(), |(_, p)| p.to_string()),
                            });
                        }
                    }
                    seen.insert(key, i);
                    let entry = Entry {
                        route: i as u32,
                        path: path.map(|(j, _)| j),
                        rank: (
                            path.map_or(0, |(_, p)| p.len()),
                            matches!(path, Some((_, PathPattern::Exact(_)))),
                            r.conditions(),
                            r.priority,
                        ),
                        at: (0, 0),
                        exact: false,
                        plain: r.methods.is_empty() && r.headers.is_empty(),
                    };
                    let list = match host {
                        Some(HostPattern::Exact(name)) => table.exact.entry(name.clone()).or_default(),
                        Some(HostPattern::Wildcard(suffix)) => {
                            table.wildcard.entry(suffix.clone()).or_default()
                        }
                        None => &mut table.any,
                    };
                    list.entries.push(entry);
                }
            }
        }
        drop(seen);
        let order = |e: &Entry| (Reverse(e.rank), e.route);
        let lists = table
            .exact
            .values_mut()
            .chain(table.wildcard.values_mut())
            .chain(std::iter::once(&mut table.any));
        for list in lists {
            list.entries.sort_by_key(order);
            for e in &mut list.entries {
                if let Some(j) = e.path {
                    let p = &routes[e.route as usize].paths[j as usize];
                    e.at = (list.paths.len() as u32, p.as_str().len() as u32);
                    e.exact = p.is_exact();
                    list.paths.push_str(p.as_str());
                }
            }
        }
        table.routes = routes;
        Ok(table)
    }

    /// The routes, by id.
    pub fn routes(&self) -> &[RouteRule<T>] {
        &self.routes
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route for a request to `host` (the `Host` header or the target's authority; `None`
    /// when the request names none), `path`, `method` and `headers`.
    pub fn choose(
        &self,
        host: Option<&str>,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Chosen<'_, T>> {
        let host = host.and_then(normalize_host);
        if let Some(host) = host.as_deref() {
            if let Some(found) = self
                .exact
                .get(host)
                .and_then(|l| self.first(l, path, method, headers))
            {
                return Some(found);
            }
            if !self.wildcard.is_empty() {
                // Parent names, the longest (most specific) first: a.b.example.com tries
                // b.example.com, then example.com, then com.
                let mut rest = host;
                while let Some((_, parent)) = rest.split_once('.') {
                    if let Some(found) = self
                        .wildcard
                        .get(parent)
                        .and_then(|l| self.first(l, path, method, headers))
                    {
                        return Some(found);
                    }
                    rest = parent;
                }
            }
        }
        self.first(&self.any, path, method, headers)
    }

    fn first(&self, list: &List, path: &str, method: &Method, headers: &HeaderMap) -> Option<Chosen<'_, T>> {
        list.entries.iter().find_map(|e| {
            if e.path.is_some() {
                let (at, len) = (e.at.0 as usize, e.at.1 as usize);
                if !list
                    .paths
                    .get(at..at + len)
                    .is_some_and(|p| path_matches(p, e.exact, path))
                {
                    return None;
                }
            }
            let route = &self.routes[e.route as usize];
            if !e.plain && !route.admits(method, headers) {
                return None;
            }
            Some(Chosen {
                route,
                path: e.path.map(|j| &route.paths[j as usize]),
            })
        })
    }
}
