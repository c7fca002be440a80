//! This machine's routes, and which of them a tunnel subnet (or the tunnel's IPv6 prefix)
//! would collide with.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// One route from the main table: IPv4 (`Route`), or IPv6 (`Route<Ipv6Net>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<N = Ipv4Net> {
    pub interface: String,
    pub destination: N,
}

/// Routes (other than through `own_interface`, and other than default routes) that overlap
/// the tunnel subnet.
pub fn colliding_routes<'a, N: Copy + Into<IpNet>>(
    routes: &'a [Route<N>],
    subnet: N,
    own_interface: &str,
) -> Vec<&'a Route<N>> {
    let subnet: IpNet = subnet.into();
    routes
        .iter()
        .filter(|r| r.interface != own_interface)
        .filter(|r| {
            let destination: IpNet = r.destination.into();
            destination.prefix_len() > 0
                && (destination.contains(&subnet.network())
                    || subnet.contains(&destination.network()))
        })
        .collect()
}

/// Parses `/proc/net/ipv6_route`: destination and prefix length in hex, the interface last.
pub fn parse_proc_net_ipv6_route(text: &str) -> Vec<Route<Ipv6Net>> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let destination = Ipv6Addr::from(u128::from_str_radix(cols.first()?, 16).ok()?);
            let prefix = u8::from_str_radix(cols.get(1)?, 16).ok()?;
            Some(Route {
                interface: (*cols.get(9)?).to_string(),
                destination: Ipv6Net::new(destination, prefix).ok()?,
            })
        })
        .collect()
}

/// This machine's routes of both families.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    pub v4: Vec<Route>,
    pub v6: Vec<Route<Ipv6Net>>,
}

impl Routes {
    pub fn system() -> Self {
        Routes {
            v4: system_routes(),
            v6: system_routes6(),
        }
    }
}

/// This machine's IPv6 routes; unreadable (no IPv6) is none.
pub fn system_routes6() -> Vec<Route<Ipv6Net>> {
    std::fs::read_to_string("/proc/net/ipv6_route")
        .map(|t| parse_proc_net_ipv6_route(&t))
        .unwrap_or_default()
}

/// Parses `/proc/net/route`: hex little-endian destination and mask columns.
pub fn parse_proc_net_route(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let interface = (*cols.first()?).to_string();
            let hex = |s: &str| {
                u32::from_str_radix(s, 16)
                    .ok()
                    .map(|v| Ipv4Addr::from(v.swap_bytes()))
            };
            let destination = hex(cols.get(1)?)?;
            let mask = hex(cols.get(7)?)?;
            let prefix = u32::from(mask).leading_ones() as u8;
            Some(Route {
                interface,
                destination: Ipv4Net::new(destination, prefix).ok()?,
            })
        })
        .collect()
}

/// Reads this machine's IPv4 routes (main table). An unreadable table is treated as empty:
/// the callers only use it for detection and warnings, which then ask for flags.
pub fn system_routes() -> Vec<Route> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_proc_net_route(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(interface: &str, destination: &str) -> Route {
        Route {
            interface: interface.into(),
            destination: destination.parse().expect("net"),
        }
    }

    #[test]
    fn proc_net_route_parses() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t017100CB\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t007100CB\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    wlan0\t0020A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let routes = parse_proc_net_route(text);
        assert_eq!(
            routes,
            vec![
                route("eth0", "0.0.0.0/0"),
                route("eth0", "203.0.113.0/24"),
                route("wlan0", "192.168.32.0/24")
            ]
        );
        let hits = colliding_routes(&routes, "192.168.32.0/24".parse().expect("net"), "roamgw0");
        assert_eq!(hits, vec![&routes[2]]);
        assert!(
            colliding_routes(&routes, "192.168.32.0/24".parse().expect("net"), "wlan0").is_empty()
        );
        assert_eq!(
            colliding_routes(&routes, "192.168.0.0/16".parse().expect("net"), "x").len(),
            1
        );
    }

    #[test]
    fn proc_net_ipv6_route_parses() {
        let text = "fd123456789a00000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001  wlan0\n\
                    00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003  wlan0\n\
                    fd123456789a00000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001  roamgw0\n";
        let routes = parse_proc_net_ipv6_route(text);
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0].destination.to_string(), "fd12:3456:789a::/64");
        assert_eq!(routes[1].destination.to_string(), "::/0");
        let prefix: Ipv6Net = "fd12:3456:789a::/64".parse().expect("net");
        let hits = colliding_routes(&routes, prefix, "roamgw0");
        assert_eq!(hits, vec![&routes[0]], "not the default, not our own");
        let elsewhere: Ipv6Net = "fd99::/64".parse().expect("net");
        assert!(colliding_routes(&routes, elsewhere, "roamgw0").is_empty());
    }
}
