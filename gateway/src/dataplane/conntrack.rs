//! Ending open flows of a forward: NAT bindings live in conntrack, so removing a forward's
//! elements leaves its established connections running until their entries are deleted.
//! Uses the `conntrack` tool (conntrack-tools); its `-D` takes one port, so a range is listed
//! once and deleted per port that has flows.

use std::collections::BTreeSet;
use std::net::IpAddr;

use roamgw_common::{PortSpec, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("cannot run conntrack ({0}): install conntrack (conntrack-tools) so removed forwards also end their open connections")]
    Missing(std::io::Error),
    #[error("conntrack {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

fn conntrack(args: &[String]) -> Result<String, ConntrackError> {
    let ran = roamgw_common::tool::run("conntrack", args, None).map_err(ConntrackError::Missing)?;
    // Exit status 1 with "0 flow entries" means nothing matched: not an error.
    if !ran.success && !ran.stderr.contains("0 flow entries") {
        return Err(ConntrackError::Failed {
            args: args.join(" "),
            stderr: ran.stderr,
        });
    }
    Ok(ran.stdout)
}

/// The original-direction destination ports in `conntrack -L` output lines.
pub fn original_dports(listing: &str) -> BTreeSet<u16> {
    listing
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix("dport="))
                .and_then(|p| p.parse().ok())
        })
        .collect()
}

/// `-f ipv6` for an IPv6 address: conntrack lists and deletes IPv4 entries unless told.
fn family(address: IpAddr) -> [String; 2] {
    let name = if address.is_ipv6() { "ipv6" } else { "ipv4" };
    ["-f".into(), name.into()]
}

/// Deletes the conntrack entries of flows to `anchor` (the anchor, or the forward IPv6) on
/// the forward's public ports.
pub fn flush_forward(anchor: IpAddr, spec: &PortSpec) -> Result<(), ConntrackError> {
    for protocol in spec.protocols.iter() {
        let ports: Vec<u16> = if spec.public.is_single() {
            vec![spec.public.first()]
        } else {
            let mut args = vec!["-L".into()];
            args.extend(family(anchor));
            args.extend([
                "-p".into(),
                protocol.as_str().into(),
                "--orig-dst".into(),
                anchor.to_string(),
            ]);
            let listing = conntrack(&args)?;
            original_dports(&listing)
                .into_iter()
                .filter(|p| spec.public.contains(*p))
                .collect()
        };
        for port in ports {
            delete(anchor, protocol, port)?;
        }
    }
    Ok(())
}

/// Deletes the conntrack entries of every flow to `address`.
pub fn flush_address(address: IpAddr) -> Result<(), ConntrackError> {
    let mut args = vec!["-D".into()];
    args.extend(family(address));
    args.extend(["--orig-dst".into(), address.to_string()]);
    conntrack(&args).map(|_| ())
}

fn delete(anchor: IpAddr, protocol: Protocol, port: u16) -> Result<(), ConntrackError> {
    let mut args = vec!["-D".into()];
    args.extend(family(anchor));
    args.extend([
        "-p".into(),
        protocol.as_str().into(),
        "--orig-dst".into(),
        anchor.to_string(),
        "--orig-port-dst".into(),
        port.to_string(),
    ]);
    conntrack(&args).map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_original_destination_ports() {
        let listing = "tcp      6 431999 ESTABLISHED src=192.0.2.2 dst=10.16.0.5 sport=40000 dport=22 src=192.168.32.2 dst=192.168.32.1 sport=22 dport=40000 [ASSURED] mark=0 use=1\n\
                       udp      17 29 src=192.0.2.2 dst=10.16.0.5 sport=5000 dport=60050 [UNREPLIED] src=10.16.0.5 dst=192.0.2.2 sport=60050 dport=5000 mark=0 use=1\n";
        assert_eq!(
            super::original_dports(listing)
                .into_iter()
                .collect::<Vec<_>>(),
            vec![22, 60050]
        );
    }
}
