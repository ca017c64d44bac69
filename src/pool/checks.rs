//! Active health checks: one in flight per backend at most, every `interval`, and at once for
//! a backend added at run time (its first check decides whether it takes traffic).

use std::time::{Instant, SystemTime};

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};
use awc::error::{ConnectError, SendRequestError};

use super::{actor::BackendPool, health::Event, health::Health, messages::CheckResult};
use crate::logfmt::Escaped;

impl BackendPool {
    /// Checks every listed backend not already being checked (draining ones are not).
    pub(super) fn check_all(&mut self, ctx: &mut Context<Self>) {
        for i in 0..self.members.len() {
            self.check(i, ctx);
        }
    }

    /// Starts a check of member `i` unless one is in flight or it is draining.
    pub(super) fn check(&mut self, i: usize, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else { return };
        let member = &mut self.members[i];
        if member.checking || member.draining {
            return;
        }
        member.checking = true;
        let id = member.backend.id.clone();
        let url = format!("{}{}", member.backend.base, self.settings.health_path);
        let request = client.get(url).timeout(self.settings.timeout).force_close();
        let started = Instant::now();
        let check = async move {
            match request.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let ok = status.is_success() || status.is_redirection();
                    let event = if ok {
                        Event::CheckPassed
                    } else {
                        Event::CheckFailed
                    };
                    let error = (!ok).then(|| format!("status {}", status.as_u16()));
                    (event, Some(status.as_u16()), error)
                }
                Err(e) => {
                    let timed_out = matches!(
                        e,
                        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout)
                    );
                    let event = if timed_out {
                        Event::CheckTimedOut
                    } else {
                        Event::CheckFailed
                    };
                    (event, None, Some(e.to_string()))
                }
            }
        };
        ctx.spawn(check.into_actor(self).map(move |(event, status, error), act, _| {
            let result = CheckResult {
                ok: event == Event::CheckPassed,
                status,
                error,
                at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            act.checked(&id, event, result);
        }));
    }

    /// A check of backend `id` finished (it may have left the list meanwhile).
    fn checked(&mut self, id: &str, event: Event, result: CheckResult) {
        let Some(i) = self.position(id) else { return };
        let reason = result.error.clone().unwrap_or_default();
        let member = &mut self.members[i];
        member.checking = false;
        member.last = Some(result);
        if member.pending {
            member.pending = false;
            let base = &member.backend.base;
            if event == Event::CheckPassed {
                log::info!("backend {base} passed its first check: it takes traffic");
            } else {
                member.health = Health::ejected();
                log::warn!(
                    "backend {base} failed its first check ({}): no traffic until it passes {} in a row",
                    Escaped(&reason),
                    self.settings.thresholds.healthy
                );
            }
            self.publish();
        } else {
            self.record(i, event, &reason);
        }
        self.first_round_done(id);
    }
}
