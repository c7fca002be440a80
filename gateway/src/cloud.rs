//! The cloud provider's own account of the droplet's addresses. On DigitalOcean the metadata
//! service (`http://169.254.169.254/metadata/v1.json`, reachable only from the droplet) gives
//! the public IPv4, the anchor IPv4 and its gateway, the reserved (floating) IP, and the
//! droplet's IPv6 (or its reserved IPv6) when IPv6 is on. Anywhere
//! else the request fails fast: a connect timeout of 300 ms and 1 s in all, no proxy.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::Deserialize;

pub const DIGITALOCEAN_METADATA: &str = "http://169.254.169.254/metadata/v1.json";

/// What the provider says of this droplet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudAddresses {
    pub provider: &'static str,
    pub source: String,
    pub public_ip: Ipv4Addr,
    pub anchor_ip: Option<Ipv4Addr>,
    pub anchor_gateway: Option<Ipv4Addr>,
    pub floating_ip: Option<Ipv4Addr>,
    /// The droplet's id at the provider (what its API names it by).
    pub droplet_id: Option<u64>,
    /// The droplet's own IPv6 (never a forward address).
    pub own_ipv6: Option<Ipv6Addr>,
    /// The reserved IPv6 assigned to this droplet: static, and dedicated, so forwards
    /// answer on it.
    pub reserved_ipv6: Option<Ipv6Addr>,
}

impl CloudAddresses {
    /// Where roamers may dial over IPv6: the active reserved IPv6 (it moves with the
    /// reserved IPv4 between the droplets of a pair), else the droplet's own.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.reserved_ipv6.or(self.own_ipv6)
    }
}

#[derive(Deserialize)]
struct Metadata {
    droplet_id: Option<u64>,
    interfaces: Interfaces,
    reserved_ip: Option<Reserved>,
    floating_ip: Option<Reserved>,
}

#[derive(Deserialize)]
struct Interfaces {
    #[serde(default)]
    public: Vec<PublicInterface>,
}

#[derive(Deserialize)]
struct PublicInterface {
    ipv4: Option<Ipv4Attributes>,
    anchor_ipv4: Option<Ipv4Attributes>,
    ipv6: Option<Ipv6Attributes>,
}

#[derive(Deserialize)]
struct Ipv6Attributes {
    ip_address: Ipv6Addr,
}

#[derive(Deserialize)]
struct Ipv4Attributes {
    ip_address: Ipv4Addr,
    gateway: Option<Ipv4Addr>,
}

#[derive(Deserialize)]
struct Reserved {
    ipv4: Option<ReservedAddress<Ipv4Addr>>,
    ipv6: Option<ReservedAddress<Ipv6Addr>>,
}

#[derive(Deserialize)]
struct ReservedAddress<A> {
    #[serde(default)]
    active: bool,
    ip_address: Option<A>,
}

/// DigitalOcean's metadata, parsed; `None` for a document without a public IPv4.
pub fn parse_digitalocean(json: &str, source: &str) -> Option<CloudAddresses> {
    let metadata: Metadata = serde_json::from_str(json).ok()?;
    let public = metadata.interfaces.public.first()?;
    let anchor = public.anchor_ipv4.as_ref();
    let reserved = [metadata.reserved_ip, metadata.floating_ip];
    let floating_ip = reserved
        .iter()
        .flatten()
        .filter_map(|r| r.ipv4.as_ref())
        .find(|ip| ip.active)
        .and_then(|ip| ip.ip_address);
    let reserved_ipv6 = reserved
        .iter()
        .flatten()
        .filter_map(|r| r.ipv6.as_ref())
        .find(|ip| ip.active)
        .and_then(|ip| ip.ip_address);
    Some(CloudAddresses {
        provider: "DigitalOcean",
        source: source.to_string(),
        public_ip: public.ipv4.as_ref()?.ip_address,
        anchor_ip: anchor.map(|a| a.ip_address),
        anchor_gateway: anchor.and_then(|a| a.gateway),
        floating_ip,
        droplet_id: metadata.droplet_id,
        own_ipv6: public.ipv6.as_ref().map(|v6| v6.ip_address),
        reserved_ipv6,
    })
}

/// Where to ask: `ROAMGW_METADATA_URL` overrides (`off`: do not ask; the unprivileged tests
/// set it, so they never send anything to a real metadata service of the machine they run on).
fn metadata_url() -> Option<String> {
    match std::env::var("ROAMGW_METADATA_URL") {
        Ok(off) if off == "off" => None,
        Ok(url) => Some(url),
        Err(_) => Some(DIGITALOCEAN_METADATA.to_string()),
    }
}

/// Asks DigitalOcean's metadata service; `None` off DigitalOcean (within about a second).
pub fn digitalocean() -> Option<CloudAddresses> {
    let url = metadata_url()?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_connect(Some(Duration::from_millis(300)))
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    let mut response = agent.get(&url).call().ok()?;
    let body = response.body_mut().read_to_string().ok()?;
    parse_digitalocean(&body, &url)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of DigitalOcean's documented `/metadata/v1.json`, cut to what we read.
    const SAMPLE: &str = r#"{
      "droplet_id": 2756294, "hostname": "sample-droplet",
      "interfaces": {
        "private": [{"ipv4": {"ip_address": "10.132.255.113", "netmask": "255.255.0.0", "gateway": "10.132.0.1"}, "type": "private"}],
        "public": [{
          "ipv4": {"ip_address": "104.131.20.105", "netmask": "255.255.192.0", "gateway": "104.131.0.1"},
          "anchor_ipv4": {"ip_address": "10.17.0.5", "netmask": "255.255.0.0", "gateway": "10.17.0.1"},
          "ipv6": {"ip_address": "2604:A880:0800:0010:0000:0000:017D:2001", "cidr": 64, "gateway": "2604:A880:0800:0010:0000:0000:0000:0001"},
          "mac": "04:01:2a:0f:2a:01", "type": "public"
        }]
      },
      "floating_ip": {"ipv4": {"active": true, "ip_address": "45.55.96.17"}},
      "reserved_ip": {"ipv4": {"active": true, "ip_address": "45.55.96.17"}},
      "dns": {"nameservers": ["8.8.8.8"]}
    }"#;

    #[test]
    fn digitalocean_metadata_gives_all_four_addresses() {
        let found = parse_digitalocean(SAMPLE, "test").expect("parses");
        assert_eq!(found.public_ip, Ipv4Addr::new(104, 131, 20, 105));
        assert_eq!(found.anchor_ip, Some(Ipv4Addr::new(10, 17, 0, 5)));
        assert_eq!(found.anchor_gateway, Some(Ipv4Addr::new(10, 17, 0, 1)));
        assert_eq!(found.floating_ip, Some(Ipv4Addr::new(45, 55, 96, 17)));
        assert_eq!(found.droplet_id, Some(2756294));
        assert_eq!(
            found.ipv6(),
            Some("2604:a880:800:10::17d:2001".parse().expect("v6"))
        );
        assert_eq!(found.reserved_ipv6, None);
        // A reserved IPv6 that is active wins over the droplet's own.
        let reserved = SAMPLE.replace(
            r#""reserved_ip": {"ipv4""#,
            r#""reserved_ip": {"ipv6": {"active": true, "ip_address": "2001:db8::50"}, "ipv4""#,
        );
        let found = parse_digitalocean(&reserved, "test").expect("parses");
        assert_eq!(found.ipv6(), Some("2001:db8::50".parse().expect("v6")));
        assert_eq!(found.reserved_ipv6, found.ipv6());
        assert_eq!(
            found.own_ipv6,
            Some("2604:a880:800:10::17d:2001".parse().expect("v6"))
        );
    }

    #[test]
    fn an_inactive_reserved_ip_or_a_strange_document_is_no_answer() {
        let inactive = SAMPLE.replace("\"active\": true", "\"active\": false");
        assert_eq!(
            parse_digitalocean(&inactive, "test")
                .expect("parses")
                .floating_ip,
            None
        );
        assert_eq!(parse_digitalocean("<html>not here</html>", "test"), None);
        assert_eq!(
            parse_digitalocean(r#"{"interfaces": {"public": []}}"#, "test"),
            None
        );
    }
}
