//! Multicast discovery sockets, set up with socket2 so that several nodes on one host share
//! the group port and every socket is tied to one named interface.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::MulticastConfig;

/// The pair of sockets a node uses for beacons.
pub struct BeaconSockets {
    /// Bound to the group and port, member of the group on the interface.
    pub recv: UdpSocket,
    /// Bound to this node's own address, so peers see where to dial; sends on the interface.
    pub send: UdpSocket,
    pub group: SocketAddr,
}

/// Joins the group on the configured interface. Must run inside the runtime.
pub fn bind(cfg: &MulticastConfig, local: Ipv4Addr) -> io::Result<BeaconSockets> {
    let recv = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    recv.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    recv.set_reuse_port(true)?;
    // On Unix binding to the group address filters out unrelated datagrams to the port;
    // Windows only allows binding a local address.
    let bind_ip = if cfg!(windows) {
        Ipv4Addr::UNSPECIFIED
    } else {
        cfg.group
    };
    recv.bind(&SocketAddrV4::new(bind_ip, cfg.port).into())?;
    recv.join_multicast_v4(&cfg.group, &cfg.interface)?;
    recv.set_nonblocking(true)?;

    let send = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    send.bind(&SocketAddrV4::new(local, 0).into())?;
    send.set_multicast_if_v4(&cfg.interface)?;
    send.set_multicast_ttl_v4(cfg.ttl)?;
    send.set_multicast_loop_v4(true)?;
    send.set_nonblocking(true)?;

    Ok(BeaconSockets {
        recv: UdpSocket::from_std(recv.into())?,
        send: UdpSocket::from_std(send.into())?,
        group: SocketAddrV4::new(cfg.group, cfg.port).into(),
    })
}
