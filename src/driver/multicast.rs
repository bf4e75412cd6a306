//! Multicast discovery sockets, set up with socket2 so that several nodes on one host share
//! the group port and every socket is tied to one named interface. IPv4 groups name their
//! interface by an address; IPv6 groups (link-local `ff02::…`) by its index.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::{MulticastConfig, MulticastInterface};

/// The pair of sockets a node uses for beacons.
pub struct BeaconSockets {
    /// Bound to the group and port, member of the group on the interface.
    pub recv: UdpSocket,
    /// Bound to this node's own address, so peers see where to dial; sends on the interface.
    pub send: UdpSocket,
    pub group: SocketAddr,
    /// The address `send` is bound to, which beacons name (the receivers check that a
    /// beacon comes from the address it names).
    pub source: IpAddr,
}

/// Joins the group on the configured interface; `local` is the address the node listens
/// on. Must run inside the runtime.
pub fn bind(cfg: &MulticastConfig, local: IpAddr) -> io::Result<BeaconSockets> {
    match (cfg.group, &cfg.interface) {
        (IpAddr::V4(group), MulticastInterface::V4(interface)) => {
            bind_v4(cfg, group, *interface, local)
        }
        (IpAddr::V6(group), MulticastInterface::V6 { index, .. }) => {
            bind_v6(cfg, group, *index, local)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the multicast group and interface are of different IP versions",
        )),
    }
}

fn shared_port_socket(domain: Domain) -> io::Result<Socket> {
    let recv = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    recv.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    recv.set_reuse_port(true)?;
    Ok(recv)
}

fn bind_v4(
    cfg: &MulticastConfig,
    group: Ipv4Addr,
    interface: Ipv4Addr,
    local: IpAddr,
) -> io::Result<BeaconSockets> {
    // Beacons name the address they are sent from: the node's own, or where it listens on
    // every address (dual-stack `::`, or `0.0.0.0`), the interface's.
    let source = match local {
        IpAddr::V4(v4) if !v4.is_unspecified() => v4,
        IpAddr::V6(v6) if v6.is_unspecified() => interface,
        IpAddr::V4(_) => interface,
        IpAddr::V6(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an IPv4 group needs an IPv4 network.address.local (or \"::\"); \
                 for an IPv6 one set network.multicast_address to an IPv6 group",
            ))
        }
    };
    let recv = shared_port_socket(Domain::IPV4)?;
    // On Unix binding to the group address filters out unrelated datagrams to the port;
    // Windows only allows binding a local address.
    let bind_ip = if cfg!(windows) {
        Ipv4Addr::UNSPECIFIED
    } else {
        group
    };
    recv.bind(&SocketAddrV4::new(bind_ip, cfg.port).into())?;
    recv.join_multicast_v4(&group, &interface)?;
    recv.set_nonblocking(true)?;

    let send = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    send.bind(&SocketAddrV4::new(source, 0).into())?;
    send.set_multicast_if_v4(&interface)?;
    send.set_multicast_ttl_v4(cfg.ttl)?;
    send.set_multicast_loop_v4(true)?;
    send.set_nonblocking(true)?;

    Ok(BeaconSockets {
        recv: UdpSocket::from_std(recv.into())?,
        send: UdpSocket::from_std(send.into())?,
        group: SocketAddrV4::new(group, cfg.port).into(),
        source: source.into(),
    })
}

fn bind_v6(
    cfg: &MulticastConfig,
    group: Ipv6Addr,
    index: u32,
    local: IpAddr,
) -> io::Result<BeaconSockets> {
    // A beacon names the address it comes from; with no one address to listen on, the
    // kernel would pick the source, a link-local one for a link-local group, which peers
    // cannot be told to dial (it needs a zone).
    let source = match local {
        IpAddr::V6(v6) if !v6.is_unspecified() && !is_unicast_link_local(v6) => v6,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "multicast discovery over IPv6 needs network.address.local to be one of this \
                 host's IPv6 addresses (not \"::\", not link-local fe80::/10)",
            ))
        }
    };
    let recv = shared_port_socket(Domain::IPV6)?;
    recv.set_only_v6(true)?;
    // As for IPv4, bound to the group (with its scope: a link-local group needs one).
    let bind_to = if cfg!(windows) {
        SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, cfg.port, 0, 0)
    } else {
        SocketAddrV6::new(group, cfg.port, 0, index)
    };
    recv.bind(&bind_to.into())?;
    recv.join_multicast_v6(&group, index)?;
    recv.set_nonblocking(true)?;

    let send = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    send.set_only_v6(true)?;
    send.bind(&SocketAddrV6::new(source, 0, 0, 0).into())?;
    send.set_multicast_if_v6(index)?;
    send.set_multicast_hops_v6(cfg.ttl)?;
    send.set_multicast_loop_v6(true)?;
    send.set_nonblocking(true)?;

    Ok(BeaconSockets {
        recv: UdpSocket::from_std(recv.into())?,
        send: UdpSocket::from_std(send.into())?,
        group: SocketAddrV6::new(group, cfg.port, 0, index).into(),
        source: source.into(),
    })
}

/// fe80::/10 (`Ipv6Addr::is_unicast_link_local` is not stable on our MSRV).
pub fn is_unicast_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The index of the interface named `name` (`eth0`), or `name` itself if it is a number.
pub fn interface_index(name: &str) -> io::Result<u32> {
    if let Ok(index) = name.parse::<u32>() {
        return Ok(index);
    }
    #[cfg(unix)]
    {
        let c = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(index)
    }
    #[cfg(not(unix))]
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "interfaces are named by index on this platform",
    ))
}
