//! Listeners handed over by a service manager (systemd socket activation: `LISTEN_FDS`, and
//! `LISTEN_PID` when set): fd 3 is the proxy listener, fd 4 the admin listener. A listener
//! that was not handed over is bound from the settings as usual. Taking bound sockets lets
//! systemd (or a test harness) own the ports, so a restart loses no connection and nobody
//! can take the port in between.

use std::net::{SocketAddr, TcpListener};

use listenfd::ListenFd;

/// Position of the proxy listener among the inherited ones (fd 3).
pub const PROXY: usize = 0;
/// Position of the admin listener among the inherited ones (fd 4).
pub const ADMIN: usize = 1;

/// An inherited listener the gateway cannot use.
#[derive(Debug, thiserror::Error)]
pub enum InheritedError {
    /// The file descriptor is not a TCP socket.
    #[error("inherited listener fd {fd} ({what}) is not a usable TCP listener: {source}")]
    NotTcp {
        /// Which listener.
        what: &'static str,
        /// The file descriptor.
        fd: usize,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The same rule as for `TOLLGATE_ADMIN_LISTEN`: an open admin API needs a token.
    #[error(
        "the inherited admin listener (fd 4) is on {0}, not on loopback, and TOLLGATE_ADMIN_TOKEN is \
         not set: set a token or hand over a loopback socket"
    )]
    OpenAdmin(SocketAddr),
}

/// The listeners the process was started with (none when `LISTEN_FDS` is absent).
pub struct Inherited(ListenFd);

impl Inherited {
    /// Reads `LISTEN_FDS` and `LISTEN_PID` (ignored when `LISTEN_PID` names another process).
    /// Call it before threads are started: it removes both variables from the environment.
    pub fn from_env() -> Inherited {
        Inherited(ListenFd::from_env())
    }

    /// Takes listener `index` if it was handed over, with the address it is bound to.
    pub fn take(
        &mut self,
        index: usize,
        what: &'static str,
    ) -> Result<Option<(TcpListener, SocketAddr)>, InheritedError> {
        let err = |source| InheritedError::NotTcp {
            what,
            fd: index + 3,
            source,
        };
        let Some(listener) = self.0.take_tcp_listener(index).map_err(err)? else {
            return Ok(None);
        };
        let addr = listener.local_addr().map_err(err)?;
        log::info!(
            "{what}: listening on the inherited socket {addr} (fd {})",
            index + 3
        );
        Ok(Some((listener, addr)))
    }
}

/// Refuses an inherited admin listener off loopback without a token, as the settings refuse
/// such a `TOLLGATE_ADMIN_LISTEN`.
pub fn check_admin(addr: SocketAddr, has_token: bool) -> Result<(), InheritedError> {
    if has_token || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(InheritedError::OpenAdmin(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_admin_socket_needs_a_token() {
        let cases = [
            ("127.0.0.1:1", false, true),
            ("[::1]:1", false, true),
            ("0.0.0.0:1", false, false),
            ("10.0.0.1:1", false, false),
            ("0.0.0.0:1", true, true),
        ];
        for (addr, token, ok) in cases {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(check_admin(addr, token).is_ok(), ok, "{addr} token={token}");
        }
    }
}
