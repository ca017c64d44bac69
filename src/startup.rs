//! Building and running the application: listeners bound first, then served until shutdown.

use std::{
    net::{SocketAddr, TcpListener},
    sync::{atomic::AtomicBool, Arc},
};

use actix_web::{dev::Server, web, App};

use crate::{
    config::{BackendSpec, Settings},
    demo,
    http::{
        admin::{self, AdminState},
        proxy::{self, ProxyHandler, ProxySettings},
        server::{serve, ServeOptions},
    },
    listeners::{self, Inherited, InheritedError},
    pool::{PoolHandle, PoolSettings, Thresholds},
    registry::{ClientRegistry, LimitSettings, RegistryHandle, RegistrySettings},
    shutdown,
    store::{self, DbExecutor, LoadClients, StoreError},
};

/// Database threads: blocking diesel calls run here, never on an HTTP worker.
const DB_THREADS: usize = 2;

/// Connects to the database (retrying up to the start-up bound), migrates it, loads the
/// clients and starts the `ClientRegistry` with its `DbExecutor`s.
async fn start_registry(settings: &Settings) -> Result<RegistryHandle, StartupError> {
    let (url, checkout, startup) = (
        settings.database_url.clone(),
        settings.db_timeout,
        settings.db_startup_timeout,
    );
    let pool = actix_rt::task::spawn_blocking(move || store::connect_with_retry(&url, checkout, startup))
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    log::info!("database {} ready", settings.database_url.redacted());
    let db = actix::SyncArbiter::start(DB_THREADS, move || DbExecutor::new(pool.clone()));
    let rows = db
        .send(LoadClients)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
    let limits = LimitSettings {
        api_key_header: settings.api_key_header.clone(),
        default_quota: settings.default_quota,
        trusted_proxies: settings.trusted_proxies.clone(),
        forwarded_header: settings.forwarded_header,
        require_api_key: settings.require_api_key,
    };
    let timers = RegistrySettings {
        flush_interval: settings.flush_interval,
        sweep_interval: std::time::Duration::from_secs(1),
    };
    Ok(ClientRegistry::start_with(rows, limits, db, timers))
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
    shutdown_timeout: std::time::Duration,
    drain_delay: std::time::Duration,
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
    let listener = TcpListener::bind(addr).map_err(|source| StartupError::Bind { what, addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { what, addr, source })?;
    Ok((listener, local))
}

impl Application {
    /// Binds the listeners (port 0 picks a free port), starts the backend pool and builds the
    /// servers. Must run inside an actix `System`.
    pub async fn build(mut settings: Settings) -> Result<Application, StartupError> {
        let mut inherited = Inherited::from_env();
        let mut demos = Vec::new();
        if settings.demo {
            if !settings.backends.is_empty() {
                log::warn!("--demo: ignoring TOLLGATE_BACKENDS, proxying to the demo backends only");
            }
            settings.backends.clear();
            for n in 1..=3 {
                let (listener, addr) = bind("demo backend", SocketAddr::from(([127, 0, 0, 1], 0)))?;
                let name = format!("demo-{n}");
                log::info!("demo backend {name} listening on http://{addr}");
                demos.push(
                    demo::serve(listener, name, false)
                        .map_err(|source| StartupError::Serve { what: "demo", source })?,
                );
                settings.backends.push(BackendSpec {
                    base: format!("http://{addr}"),
                    weight: std::num::NonZeroU32::MIN,
                });
            }
        }
        log::info!("configuration: {}", settings.summary());

        let pool = PoolHandle::start(
            &settings.backends,
            PoolSettings {
                strategy: settings.strategy,
                health_path: settings.health_path.clone(),
                interval: settings.health_interval,
                timeout: settings.health_timeout,
                thresholds: Thresholds {
                    healthy: settings.healthy_threshold,
                    unhealthy: settings.unhealthy_threshold,
                    passive_window: settings.passive_eject_window,
                    // A check that timed out within one interval of a proxied answer measured
                    // the checker's queue, not the backend.
                    answer_grace: settings.health_interval,
                },
                panic_threshold: settings.panic_threshold,
            },
        );
        let registry = start_registry(&settings).await?;
        let draining = Arc::new(AtomicBool::new(false));
        // actix-server counts its drain deadline in whole seconds.
        let drain_secs = settings.shutdown_timeout.as_secs_f64().ceil() as u64;

        let (proxy_listener, proxy_addr) = match inherited.take(listeners::PROXY, "proxy")? {
            Some(inherited) => inherited,
            None => bind("proxy, TOLLGATE_LISTEN", settings.listen)?,
        };
        let proxy_settings = ProxySettings {
            retries: settings.retries,
            max_body_size: settings.max_body_size,
            request_buffer: settings.request_buffer,
            upload: settings.upload,
            upstream_body_timeout: settings.upstream_body_timeout,
            strip_header: settings.rate_limit.then(|| settings.api_key_header.clone()),
            upstream_timeout: settings.upstream_timeout,
        };
        let (connect_timeout, upstream_timeout) = (settings.connect_timeout, settings.upstream_timeout);
        let proxy_pool = pool.clone();
        let limiter = settings.rate_limit.then(|| registry.clone());
        if limiter.is_none() {
            log::warn!("rate limiting is off (TOLLGATE_RATE_LIMIT=false): no client is charged");
        }
        let serve_options = ServeOptions {
            workers: settings.workers,
            shutdown_secs: drain_secs,
        };
        let proxy = serve("proxy", proxy_listener, serve_options, move || {
            let handler = ProxyHandler::new(
                proxy::build_client(connect_timeout, upstream_timeout),
                proxy_pool.clone(),
                proxy_settings.clone(),
                limiter.clone(),
            );
            App::new()
                .app_data(web::Data::new(handler))
                .default_service(web::to(proxy::handle))
        })
        .map_err(|source| StartupError::Serve {
            what: "proxy",
            source,
        })?;

        let (admin_listener, admin_addr) = match inherited.take(listeners::ADMIN, "admin")? {
            Some((listener, addr)) => {
                listeners::check_admin(addr, settings.admin_token.is_some())?;
                (listener, addr)
            }
            None => bind("admin, TOLLGATE_ADMIN_LISTEN", settings.admin_listen)?,
        };
        let admin_state = web::Data::new(AdminState {
            pool: pool.clone(),
            draining: draining.clone(),
            token: settings.admin_token.clone(),
            registry: registry.clone(),
        });
        let admin_options = ServeOptions {
            workers: 1,
            shutdown_secs: drain_secs,
        };
        let admin = serve("admin", admin_listener, admin_options, move || {
            App::new()
                .app_data(admin_state.clone())
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
            shutdown_timeout: settings.shutdown_timeout,
            drain_delay: settings.drain_delay,
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

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully (see [`shutdown`]).
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
        shutdown::run(
            proxy,
            servers,
            self.pool,
            self.registry,
            self.draining,
            self.shutdown_timeout,
            self.drain_delay,
        )
        .await
    }
}
