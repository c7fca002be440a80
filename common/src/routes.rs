//! This machine's IPv4 routes, and which of them a tunnel subnet would collide with.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// One IPv4 route from the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub interface: String,
    pub destination: Ipv4Net,
}

/// Routes (other than through `own_interface`) that overlap the tunnel subnet.
pub fn colliding_routes<'a>(
    routes: &'a [Route],
    subnet: Ipv4Net,
    own_interface: &str,
) -> Vec<&'a Route> {
    routes
        .iter()
        .filter(|r| r.interface != own_interface && r.destination.prefix_len() > 0)
        .filter(|r| {
            r.destination.contains(&subnet.network()) || subnet.contains(&r.destination.network())
        })
        .collect()
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
}
