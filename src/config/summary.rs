//! The one-line summary of the effective configuration logged at start, secrets redacted.

use super::Settings;

impl Settings {
    /// One-line summary of the effective configuration, secrets redacted.
    pub fn summary(&self) -> String {
        let backends = match &self.backends {
            Some(list) => {
                let named: Vec<String> = list.iter().map(|b| format!("{}={}", b.base, b.weight)).collect();
                format!("[{}]", named.join(","))
            }
            None => "(stored)".to_string(),
        };
        let (server, pool, proxy, limits, store) =
            (&self.server, &self.pool, &self.proxy, &self.limits, &self.store);
        format!(
            "listen={} admin_listen={} admin_token={} backends={} lb_strategy={} health_path={} \
             health_interval={:?} health_timeout={:?} healthy_threshold={} unhealthy_threshold={} \
             passive_eject_window={:?} panic_threshold={}% \
             connect_timeout={:?} upstream_timeout={:?} retries={} upstream_idle={} upstream_idle_timeout={:?} max_body_size={} \
             shutdown_timeout={:?} keepalive_timeout={:?} workers={} database_url={} demo={} rate_limit={} api_key_header={} \
             default_capacity={} default_rate={} trusted_proxies=[{}] require_api_key={} flush_interval={:?} \
             db_timeout={:?} db_startup_timeout={:?} request_buffer={} client_body_timeout={:?} \
             client_body_min_rate={} client_body_grace={:?} upstream_body_timeout={:?} \
             upstream_max_head={} upstream_max_headers={} \
             limit_scope={:?} lease_tick={:?} log_format={:?} metrics={} metrics_public={} \
             metrics_client_limit={}",
            server.listen,
            self.admin.listen,
            if self.admin.token.is_some() {
                "(set)"
            } else {
                "(unset)"
            },
            backends,
            pool.strategy,
            pool.health_path,
            pool.interval,
            pool.timeout,
            pool.thresholds.healthy,
            pool.thresholds.unhealthy,
            pool.thresholds.passive_window,
            pool.panic_threshold,
            server.connect_timeout,
            proxy.upstream_timeout,
            proxy.retries,
            proxy.upstream_idle,
            proxy.upstream_idle_timeout,
            proxy.max_body_size,
            server.shutdown_timeout,
            server.keepalive_timeout,
            server.workers,
            store.url.redacted(),
            self.demo,
            self.rate_limit,
            limits.api_key_header,
            limits.default_quota.capacity(),
            limits.default_quota.rate_per_sec(),
            limits
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            limits.require_api_key,
            self.registry.flush_interval,
            store.checkout_timeout,
            store.startup_timeout,
            proxy.request_buffer,
            proxy.upload.idle,
            proxy.upload.min_rate,
            proxy.upload.grace,
            proxy.upstream_body_timeout,
            proxy.upstream_head.max_bytes,
            proxy.upstream_head.max_lines,
            limits.scope,
            self.registry.lease_tick,
            self.log_format,
            self.metrics.enabled,
            self.metrics.public,
            self.metrics.client_limit,
        )
    }
}
