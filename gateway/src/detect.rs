//! Finding the droplet's public and anchor addresses, and routes a tunnel subnet would collide
//! with. The decisions are pure functions over what the system reports, so they are tested
//! without touching the machine.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
pub use roamgw_common::routes::{colliding_routes, system_routes, Route};
use roamgw_common::state::is_private_or_shared;

/// One IPv4 address on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    pub interface: String,
    pub net: Ipv4Net,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error(
        "no default route, so no public interface to look at: pass --public-ip and --anchor-ip"
    )]
    NoDefaultRoute,
    #[error(
        "no public IPv4 address on {interface} (the default-route interface): pass --public-ip"
    )]
    NoPublicAddress { interface: String },
    #[error("{interface} has several public IPv4 addresses ({found}): pass --public-ip")]
    AmbiguousPublic { interface: String, found: String },
    #[error("{ip} is not an address of this machine: check --public-ip, and pass --anchor-ip")]
    PublicIpNotLocal { ip: Ipv4Addr },
    #[error(
        "no anchor address on {interface}: the provider's floating-IP anchor is a private address \
         beside the public one (DigitalOcean: 10.x); pass --anchor-ip"
    )]
    NoAnchor { interface: String },
    #[error("{interface} has several private addresses ({found}): pass --anchor-ip with the one the floating IP maps to")]
    AmbiguousAnchor { interface: String, found: String },
    #[error("cannot read the interfaces: {0}")]
    System(String),
}

fn is_usable(ip: Ipv4Addr) -> bool {
    !(ip.is_loopback() || ip.is_link_local() || ip.is_unspecified() || ip.is_multicast())
}

fn list(addrs: &[Ipv4Addr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `roamgw init` found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub interface: String,
    pub public_ip: Ipv4Addr,
    pub anchor_ip: Ipv4Addr,
}

/// The public interface is the one holding `public_ip` if given, else the default route's. On it
/// the public address is the one non-private address, and the anchor the one private address.
pub fn detect_addresses(
    addrs: &[InterfaceAddr],
    routes: &[Route],
    public_ip: Option<Ipv4Addr>,
) -> Result<Detected, DetectError> {
    let interface = match public_ip {
        Some(ip) => addrs
            .iter()
            .find(|a| a.net.addr() == ip)
            .map(|a| a.interface.clone())
            .ok_or(DetectError::PublicIpNotLocal { ip })?,
        None => routes
            .iter()
            .find(|r| r.destination.prefix_len() == 0)
            .map(|r| r.interface.clone())
            .ok_or(DetectError::NoDefaultRoute)?,
    };
    let on_interface: Vec<Ipv4Addr> = addrs
        .iter()
        .filter(|a| a.interface == interface && is_usable(a.net.addr()))
        .map(|a| a.net.addr())
        .collect();
    let public_ip = match public_ip {
        Some(ip) => ip,
        None => {
            let public: Vec<Ipv4Addr> = on_interface
                .iter()
                .copied()
                .filter(|ip| !is_private_or_shared(*ip))
                .collect();
            match public.as_slice() {
                [one] => *one,
                [] => return Err(DetectError::NoPublicAddress { interface }),
                _ => {
                    return Err(DetectError::AmbiguousPublic {
                        interface,
                        found: list(&public),
                    })
                }
            }
        }
    };
    let private: Vec<Ipv4Addr> = on_interface
        .iter()
        .copied()
        .filter(|ip| *ip != public_ip && is_private_or_shared(*ip))
        .collect();
    match private.as_slice() {
        [one] => Ok(Detected {
            interface,
            public_ip,
            anchor_ip: *one,
        }),
        [] => Err(DetectError::NoAnchor { interface }),
        _ => Err(DetectError::AmbiguousAnchor {
            interface,
            found: list(&private),
        }),
    }
}

/// Reads this machine's IPv4 interface addresses.
pub fn system_addrs() -> Result<Vec<InterfaceAddr>, DetectError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| DetectError::System(e.to_string()))?;
    Ok(addrs
        .filter_map(|a| {
            let ip = a.address.as_ref()?.as_sockaddr_in()?.ip();
            let mask = a.netmask.as_ref()?.as_sockaddr_in()?.ip();
            Some(InterfaceAddr {
                interface: a.interface_name,
                net: Ipv4Net::new(ip, u32::from(mask).leading_ones() as u8).ok()?,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(interface: &str, net: &str) -> InterfaceAddr {
        InterfaceAddr {
            interface: interface.into(),
            net: net.parse().expect("net"),
        }
    }

    fn route(interface: &str, destination: &str) -> Route {
        Route {
            interface: interface.into(),
            destination: destination.parse().expect("net"),
        }
    }

    fn droplet() -> (Vec<InterfaceAddr>, Vec<Route>) {
        (
            vec![
                addr("lo", "127.0.0.1/8"),
                addr("eth0", "203.0.113.10/24"),
                addr("eth0", "10.16.0.5/16"),
                addr("eth1", "10.110.0.2/20"),
            ],
            vec![
                route("eth0", "0.0.0.0/0"),
                route("eth0", "203.0.113.0/24"),
                route("eth1", "10.110.0.0/20"),
            ],
        )
    }

    #[test]
    fn finds_public_and_anchor_on_the_default_interface() {
        let (addrs, routes) = droplet();
        let found = detect_addresses(&addrs, &routes, None).expect("detect");
        assert_eq!(
            found,
            Detected {
                interface: "eth0".into(),
                public_ip: "203.0.113.10".parse().expect("ip"),
                anchor_ip: "10.16.0.5".parse().expect("ip"),
            }
        );
        let given = detect_addresses(&addrs, &[], Some("203.0.113.10".parse().expect("ip")))
            .expect("detect");
        assert_eq!(given, found);
    }

    #[test]
    fn detection_failures_ask_for_the_flag() {
        let (mut addrs, routes) = droplet();
        addrs.push(addr("eth0", "10.16.0.6/16"));
        let e = detect_addresses(&addrs, &routes, None).expect_err("ambiguous");
        assert!(e.to_string().contains("--anchor-ip"), "{e}");

        let (addrs, _) = droplet();
        let e = detect_addresses(&addrs, &[], None).expect_err("no route");
        assert_eq!(e, DetectError::NoDefaultRoute);

        let e = detect_addresses(&addrs, &[], Some("192.0.2.99".parse().expect("ip")))
            .expect_err("not local");
        assert!(e.to_string().contains("--public-ip"), "{e}");

        let only_public = vec![addr("eth0", "203.0.113.10/24")];
        let e = detect_addresses(&only_public, &[route("eth0", "0.0.0.0/0")], None)
            .expect_err("no anchor");
        assert!(matches!(e, DetectError::NoAnchor { .. }), "{e}");
    }
}
