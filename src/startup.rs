//! Building and running the application: listeners bound first, then served until shutdown.

use std::{
    net::{SocketAddr, TcpListener},
    sync::{atomic::AtomicBool, Arc},
};

use actix::{Actor, Addr};
use actix_web::{
    dev::{fn_service, Server},
    web, App,
};

use crate::{
    backend_list::{self, BackendFeed},
    cluster::{self, AppliedVersion, ClusterMember, Liveness},
    config::Settings,
    demo,
    http::{
        admin::{self, AdminState, MetricsState},
        proxy::{self, ProxyHandler},
        server::{serve, ServeOptions},
    },
    listeners::{self, Inherited, InheritedError},
    metrics::TrafficSet,
    pool::{BackendDef, BackendSpec, PoolHandle},
    registry::{CatchUp, ClientLoader, ClientRegistry, RegistryHandle},
    shutdown,
    status::{self, StatusHandle},
    store::{
        self, DatabaseUrl, DbExecutor, DbPool, GetClientPage, GetLatestVersion, SqliteFile, StoreError,
        StoreHealth,
    },
};

/// How long shutdown waits for this instance's row to be removed.
const LEAVE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the store gives the rest of the gateway at start.
struct OpenStore {
    db: Addr<DbExecutor>,
    health: StoreHealth,
    /// The clients, as loaded.
    loader: ClientLoader,
    /// The newest change version before the clients were loaded.
    version: i64,
    /// The pool itself, for the heartbeat thread.
    pool: DbPool,
    /// The backend list, as stored after the list named at start replaced it.
    backends: Vec<BackendDef>,
}

/// Clients read per query at start.
const LOAD_PAGE: i64 = 10_000;

/// Connects to the database (retrying up to the start-up bound), migrates it, starts the
/// `DbExecutor`, replaces the stored backend list by the one named at start (if any) and
/// loads the clients and the backends.
async fn open_store(settings: &Settings) -> Result<OpenStore, StartupError> {
    let store = settings.store.clone();
    let pool = actix_rt::task::spawn_blocking(move || {
        store::connect_with_retry(&store.url, store.checkout_timeout, store.startup_timeout)
    })
    .await
    .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    log::info!("database {} ready", settings.store.url.redacted());
    // The file's identity as migrated and opened: its loss is noticed from here on.
    let file = match &settings.store.url {
        store::DatabaseUrl::Sqlite(path) => SqliteFile::opened(path).map(Arc::new),
        store::DatabaseUrl::Postgres(_) => None,
    };
    let health = StoreHealth::new(file.clone());
    let db = DbExecutor::new(pool.clone(), settings.store.checkout_timeout, file).start();
    // Before the version: the replacement's own changes are then not applied twice here.
    if let Some(named) = &settings.backends {
        replace_backends(&db, named, &settings.store).await?;
    }
    // The version first: a change committed while the rows load is applied again by the
    // first catch-up, never missed.
    let version = db
        .send(GetLatestVersion)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    let mut loader = ClientLoader::new(settings.limits.scope);
    let mut after = None;
    loop {
        let page = db
            .send(GetClientPage {
                after: after.take(),
                limit: LOAD_PAGE,
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        let Some(last) = page.last().map(|r| r.client_id.clone()) else {
            break;
        };
        loader.add(page);
        after = Some(last);
    }
    // After the version too: a backend change committed meanwhile is applied again, harmlessly.
    let backends = backend_list::load(&db).await?;
    Ok(OpenStore {
        db,
        health,
        loader,
        version,
        pool,
        backends,
    })
}

/// Replaces the stored backend list with `named`, trying again (with backoff, within the
/// start-up timeout) while the database is busy: instances starting together on one SQLite
/// file wait for each other's start-up writes.
async fn replace_backends(
    db: &Addr<DbExecutor>,
    named: &[BackendSpec],
    store: &store::StoreSettings,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match backend_list::replace(db, named, store.checkout_timeout).await {
            Err(e @ (StoreError::Unavailable(_) | StoreError::TimedOut(_) | StoreError::Query(_)))
                if started.elapsed() + pause < store.startup_timeout =>
            {
                log::warn!("cannot replace the stored backend list yet ({e}); trying again in {pause:?}");
                actix_rt::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A listener handed over by the service manager is unusable.
    #[error("{0}")]
    Inherited(#[from] InheritedError),
    /// The database could not be reached or migrated.
    #[error("{0}")]
    Database(#[from] crate::store::StoreError),
    /// The heartbeat thread could not be started.
    #[error("cannot start the instance heartbeat: {0}")]
    Heartbeat(std::io::Error),
    /// SIGTERM and SIGINT could not be taken over.
    #[error("cannot handle SIGTERM and SIGINT: {0}")]
    Signals(std::io::Error),
    /// A server could not be set up on its listener.
    #[error("cannot start the {what} server: {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The running gateway: listeners bound, actors started, servers ready to run.
pub struct Application {
    proxy: Server,
    admin: Server,
    demos: Vec<Server>,
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    pool: PoolHandle,
    registry: RegistryHandle,
    draining: Arc<AtomicBool>,
    cluster: ClusterMember,
    /// The PostgreSQL change listener's thread, stopped and joined at the end.
    listener: Option<store::ListenerHandle>,
    shutdown_timeout: std::time::Duration,
    drain_delay: std::time::Duration,
    signals: shutdown::Signals,
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
    let listener = TcpListener::bind(addr).map_err(|source| StartupError::Bind { what, addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { what, addr, source })?;
    Ok((listener, local))
}

impl Application {
    /// Binds the listeners (port 0 picks a free port) or takes those handed over by the
    /// service manager, opens the database, then starts the backend pool and the client
    /// registry and builds the servers. Must run inside an actix `System`.
    pub async fn build(mut settings: Settings) -> Result<Application, StartupError> {
        let signals = shutdown::Signals::register().map_err(StartupError::Signals)?;
        let mut inherited = Inherited::from_env();
        let mut demos = Vec::new();
        // The demo backends live in memory only: a demo run against a database that other
        // instances use must not replace (and so drain) their stored backend list.
        let mut demo_defs = Vec::new();
        if settings.demo {
            if settings.backends.take().is_some() {
                log::warn!("--demo: ignoring TOLLGATE_BACKENDS, proxying to the demo backends only");
            }
            for n in 1..=3 {
                let (listener, addr) = bind("demo backend", SocketAddr::from(([127, 0, 0, 1], 0)))?;
                let name = format!("demo-{n}");
                log::info!("demo backend {name} listening on http://{addr}");
                demos.push(
                    demo::serve(listener, name, false)
                        .map_err(|source| StartupError::Serve { what: "demo", source })?,
                );
                demo_defs.push(BackendDef {
                    id: format!("demo-{n}"),
                    spec: BackendSpec {
                        base: format!("http://{addr}"),
                        weight: std::num::NonZeroU32::MIN,
                    },
                    enabled: true,
                });
            }
        }
        // Both listeners are bound (or inherited) first: a taken port fails the start at once,
        // not after the database start-up wait, and before any actor starts (an actor started
        // but never run panics when the runtime is dropped after a start error).
        let (proxy_listener, proxy_addr) = match inherited.take(listeners::PROXY, "proxy")? {
            Some(inherited) => inherited,
            None => bind("proxy, TOLLGATE_LISTEN", settings.server.listen)?,
        };
        let (admin_listener, admin_addr) = match inherited.take(listeners::ADMIN, "admin")? {
            Some((listener, addr)) => {
                listeners::check_admin(addr, settings.admin.token.is_some())?;
                (listener, addr)
            }
            None => bind("admin, TOLLGATE_ADMIN_LISTEN", settings.admin.listen)?,
        };
        log::info!("configuration: {}", settings.summary());

        let OpenStore {
            db,
            health: store_health,
            loader,
            version,
            pool: db_pool,
            backends: stored,
        } = open_store(&settings).await?;
        let backends = if settings.demo {
            if !stored.is_empty() {
                log::warn!(
                    "--demo: the {} stored backend(s) are left alone and not used by this process",
                    stored.len()
                );
            }
            demo_defs
        } else {
            stored
        };
        if backends.is_empty() {
            log::warn!(
                "no backend is configured: the proxy answers 503 until one is added \
                 (POST /backends on the admin API, or TOLLGATE_BACKENDS)"
            );
        } else {
            log::info!("routing to {} backend(s)", backends.len());
        }

        // Kept by the registry at the change version it has applied; the heartbeat publishes it.
        let applied = AppliedVersion::default();
        // Set before the first heartbeat, which publishes it: the version loaded at start.
        applied.set(u64::try_from(version).unwrap_or(0));
        let me = cluster::this_instance(proxy_addr, admin_addr);
        let published = applied.clone();
        let member = actix_rt::task::spawn_blocking(move || {
            ClusterMember::join(db_pool, me, published, Liveness::default())
        })
        .await
        .map_err(|e| StartupError::Heartbeat(std::io::Error::other(e.to_string())))?
        .map_err(StartupError::Heartbeat)?;

        let pool = PoolHandle::start(&backends, version, settings.pool.clone());
        let registry = ClientRegistry::start_with(
            loader,
            version,
            settings.limits.clone(),
            db.clone(),
            settings.registry,
            applied,
            BackendFeed::new(pool.addr().clone().recipient()),
            Some(member.handle()),
        );
        let mut listener = None;
        if let DatabaseUrl::Postgres(url) = &settings.store.url {
            let (wake, alive) = (registry.addr().clone(), registry.addr().clone());
            listener = Some(
                store::spawn_listener(
                    secrecy::ExposeSecret::expose_secret(url).to_string(),
                    settings.store.checkout_timeout,
                    store::Wakers {
                        changes: move || wake.do_send(CatchUp),
                        members: member.waker(),
                    },
                    move || alive.connected(),
                )
                .map_err(|source| StartupError::Serve {
                    what: "change listener",
                    source,
                })?,
            );
        }
        let server = &settings.server;
        let draining = Arc::new(AtomicBool::new(false));
        // actix-server counts its drain deadline in whole seconds.
        let drain_secs = server.shutdown_timeout.as_secs_f64().ceil() as u64;

        let proxy_settings = settings.proxy.clone();
        let connect_timeout = server.connect_timeout;
        let head_limits = settings.proxy.upstream_head;
        let upstream_idle = settings.proxy.upstream_idle;
        let upstream_idle_timeout = settings.proxy.upstream_idle_timeout;
        let proxy_pool = pool.clone();
        let traffic = Arc::new(TrafficSet::default());
        let worker_traffic = settings.metrics.enabled.then(|| traffic.clone());
        let limiter = settings.rate_limit.then(|| registry.clone());
        if limiter.is_none() {
            log::warn!("rate limiting is off (TOLLGATE_RATE_LIMIT=false): no client is charged");
        }
        let serve_options = ServeOptions {
            workers: server.workers,
            shutdown_secs: drain_secs,
            keep_alive: server.keepalive_timeout,
            max_body: Some(settings.proxy.max_body_size),
        };
        let proxy = serve("proxy", proxy_listener, serve_options, move || {
            let handler = ProxyHandler::new(
                proxy::build_client(connect_timeout, upstream_idle, upstream_idle_timeout, head_limits),
                proxy_pool.clone(),
                proxy_settings.clone(),
                limiter.clone(),
                // Each worker records into counters of its own; a scrape adds them up.
                worker_traffic.as_ref().map(|t| t.add_worker()),
            );
            #[cfg(not(feature = "proxy-actor"))]
            let app = App::new()
                .app_data(web::Data::new(handler))
                .default_service(fn_service(proxy::handle));
            #[cfg(feature = "proxy-actor")]
            let app = App::new()
                .app_data(web::Data::new(proxy::actor::ProxyActor::start_here(handler)))
                .default_service(fn_service(proxy::actor::handle));
            app
        })
        .map_err(|source| StartupError::Serve {
            what: "proxy",
            source,
        })?;

        let status = web::Data::new(StatusHandle::start(status::Sources {
            pool: pool.clone(),
            registry: settings.rate_limit.then(|| registry.clone()),
            traffic: settings.metrics.enabled.then(|| traffic.clone()),
            instance_id: member.handle().instance_id().to_string(),
        }));
        let admin_state = web::Data::new(AdminState {
            pool: pool.clone(),
            draining: draining.clone(),
            token: settings.admin.token.clone(),
            registry: registry.clone(),
            db,
            cluster: member.handle(),
            db_timeout: settings.store.checkout_timeout,
            store: store_health,
            metrics: MetricsState::new(settings.metrics, settings.rate_limit, traffic),
        });
        let admin_options = ServeOptions {
            workers: 1,
            shutdown_secs: drain_secs,
            keep_alive: server.keepalive_timeout,
            max_body: None,
        };
        let admin = serve("admin", admin_listener, admin_options, move || {
            App::new()
                .app_data(admin_state.clone())
                .app_data(status.clone())
                .configure(admin::configure)
        })
        .map_err(|source| StartupError::Serve {
            what: "admin",
            source,
        })?;

        log::info!("proxy listening on http://{proxy_addr}, admin API on http://{admin_addr}");
        Ok(Application {
            proxy,
            admin,
            demos,
            proxy_addr,
            admin_addr,
            pool,
            registry,
            draining,
            cluster: member,
            listener,
            shutdown_timeout: server.shutdown_timeout,
            drain_delay: server.drain_delay,
            signals,
        })
    }

    /// Port of the proxy listener.
    pub fn port(&self) -> u16 {
        self.proxy_addr.port()
    }

    /// Port of the admin listener.
    pub fn admin_port(&self) -> u16 {
        self.admin_addr.port()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully (see [`shutdown`]) and
    /// removes this instance from the `instances` table.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let servers = shutdown::Servers {
            proxy: self.proxy.handle(),
            admin: self.admin.handle(),
            demos: self.demos.iter().map(Server::handle).collect(),
        };
        let proxy = actix_rt::spawn(self.proxy);
        actix_rt::spawn(self.admin);
        for demo in self.demos {
            actix_rt::spawn(demo);
        }
        let result = shutdown::run(
            self.signals,
            proxy,
            servers,
            self.pool,
            self.registry,
            self.draining,
            self.shutdown_timeout,
            self.drain_delay,
        )
        .await;
        self.cluster.leave(LEAVE_DEADLINE).await;
        if let Some(listener) = self.listener {
            let _ = actix_rt::task::spawn_blocking(move || listener.stop()).await;
        }
        result
    }
}
