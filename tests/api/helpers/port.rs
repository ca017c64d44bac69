//! Ports that stay reserved: no bind, release and re-bind race with other tests.
//!
//! A socket that is bound but not listening refuses connections (the kernel answers RST, so
//! a connect gets "connection refused") while no other socket can take its port. It is bound
//! with `SO_REUSEPORT`, so a test backend (same user, also `SO_REUSEPORT`) can listen on the
//! same port while the reservation lives, and the port is refused again, not free, once that
//! backend is killed.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

/// A loopback port where nothing accepts, reserved while this value lives.
pub struct RefusingPort {
    /// Held only to keep the port.
    _socket: Socket,
    addr: SocketAddr,
}

impl RefusingPort {
    /// Reserves a free loopback port (IPv4).
    pub fn new() -> RefusingPort {
        Self::on("127.0.0.1:0".parse().unwrap())
    }

    /// Reserves `addr` (port 0 picks one).
    pub fn on(addr: SocketAddr) -> RefusingPort {
        let socket = reuse_port_socket(addr);
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        RefusingPort {
            _socket: socket,
            addr,
        }
    }

    /// The reserved port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The reserved address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` URL of the port, for `TOLLGATE_BACKENDS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A listener on the same port (`SO_REUSEPORT`); connections go to it while it lives.
    pub fn listener(&self) -> TcpListener {
        let socket = reuse_port_socket(self.addr);
        socket.listen(1024).unwrap();
        socket.into()
    }
}

impl Default for RefusingPort {
    fn default() -> RefusingPort {
        RefusingPort::new()
    }
}

fn reuse_port_socket(addr: SocketAddr) -> Socket {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket
}
