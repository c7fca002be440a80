//! Validated names and endpoints that appear in configs, file names and interface names.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("roamer name '{0}' is invalid: use 1-32 characters a-z, 0-9, '-' or '_', starting with a letter or digit (e.g. laptop)")]
    Roamer(String),
    #[error("interface name '{0}' is invalid: use 1-15 characters a-z, A-Z, 0-9, '_', '-', '.', '=' or '+' (e.g. roamgw0)")]
    Interface(String),
    #[error("endpoint '{0}' is invalid: use HOST[:PORT] with HOST an IPv4 address, [an IPv6 address] or a DNS name (e.g. droplet.example.com:51820)")]
    Endpoint(String),
    #[error("endpoint '{0}' has a zone id: a link-local address reaches only one link, never a droplet from a roaming laptop; give the droplet's global IPv6 address or a DNS name")]
    EndpointZone(String),
    #[error("endpoint '{0}' is a link-local, loopback, multicast or unspecified address, which a roaming laptop cannot reach; give the droplet's public address or a DNS name")]
    EndpointUnreachable(String),
    #[error("endpoint port in '{0}' is invalid: use 1-65535 (e.g. droplet.example.com:51820)")]
    EndpointPort(String),
}

macro_rules! string_newtype {
    ($name:ident, $check:expr, $err:path) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let check: fn(&str) -> bool = $check;
                if check(s) {
                    Ok(Self(s.to_string()))
                } else {
                    Err($err(s.to_string()))
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<str>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

// Roamer names become file names (keys/NAME.key) and nft comments: keep them boring.
string_newtype!(
    RoamerName,
    |s| {
        (1..=32).contains(&s.len())
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    },
    NameError::Roamer
);

// The kernel's IFNAMSIZ is 16 including the NUL; wg-quick accepts this character set.
string_newtype!(
    InterfaceName,
    |s| {
        (1..=15).contains(&s.len())
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
    },
    NameError::Interface
);

/// What roamers dial: a host (IP or DNS name) and a UDP port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `HOST[:PORT]`, using `default_port` when no port is given.
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Self, NameError> {
        let bad = || NameError::Endpoint(s.to_string());
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            if host.contains('%') {
                return Err(NameError::EndpointZone(s.to_string()));
            }
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => return Err(bad()),
                None => (s, None),
            }
        };
        if !is_host(host) {
            return Err(bad());
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(NameError::EndpointPort(s.to_string())),
                Ok(p) => p,
            },
        };
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// For the endpoint roamers dial: an address must be one a laptop on any network can
    /// reach (a DNS name is checked when it resolves).
    pub fn check_dialable(&self) -> Result<(), NameError> {
        let unreachable = match self.ip() {
            None => false,
            Some(IpAddr::V4(a)) => a.is_loopback() || a.is_unspecified() || a.is_multicast(),
            Some(IpAddr::V6(a)) => {
                a.is_loopback()
                    || a.is_unspecified()
                    || a.is_multicast()
                    || a.is_unicast_link_local()
                    || a.to_ipv4_mapped().is_some()
            }
        };
        if unreachable {
            return Err(NameError::EndpointUnreachable(self.to_string()));
        }
        Ok(())
    }
}

fn is_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    // A dotted quad that did not parse as an address is a typo, not a DNS name.
    if host
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.trim_end_matches('.').split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Endpoint {
    type Err = NameError;
    /// Strict form used in files: the port is required.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let endpoint = Self::parse_with_default_port(s, 0)?;
        if endpoint.port == 0 {
            return Err(NameError::EndpointPort(s.to_string()));
        }
        Ok(endpoint)
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roamer_names() {
        for ok in ["laptop", "a", "work-laptop_2", "0day"] {
            assert!(ok.parse::<RoamerName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Laptop",
            "-x",
            "_x",
            "a/b",
            "../x",
            "a b",
            &"x".repeat(33),
        ] {
            assert!(bad.parse::<RoamerName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn interface_names() {
        for ok in ["roamgw0", "wgnet0", "wg.a=b+c-d_e", "abcdefghijklmno"] {
            assert!(ok.parse::<InterfaceName>().is_ok(), "{ok}");
        }
        for bad in ["", "abcdefghijklmnop", "wg 0", "wg/0", "..", "wg:0"] {
            assert!(bad.parse::<InterfaceName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        let table = [
            ("203.0.113.10", "203.0.113.10:51820"),
            ("203.0.113.10:4500", "203.0.113.10:4500"),
            ("droplet.example.com", "droplet.example.com:51820"),
            ("gw.example.com.:1", "gw.example.com.:1"),
            ("[2001:db8::1]", "[2001:db8::1]:51820"),
            ("[2001:db8::1]:9", "[2001:db8::1]:9"),
        ];
        for (input, shown) in table {
            let e = Endpoint::parse_with_default_port(input, 51820).expect(input);
            assert_eq!(e.to_string(), shown);
            assert_eq!(shown.parse::<Endpoint>().expect(shown), e);
        }
        for bad in [
            "",
            "host:0",
            "host:99999",
            "host:x",
            "2001:db8::1",
            "[zz]:1",
            "a..b",
            "-a.com",
            "203.0.113.300",
            "under_score.com",
        ] {
            assert!(
                Endpoint::parse_with_default_port(bad, 51820).is_err(),
                "{bad}"
            );
        }
        // Where roamers dial: any address a laptop can reach.
        for good in [
            "[2001:db8::1]",
            "203.0.113.10",
            "gw.example.com",
            "[fd00::1]",
        ] {
            let e = Endpoint::parse_with_default_port(good, 51820).expect(good);
            assert_eq!(e.check_dialable(), Ok(()), "{good}");
        }
        for bad in [
            "[fe80::1]",
            "[::1]",
            "[::]",
            "[ff02::1]",
            "[::ffff:192.0.2.1]",
            "127.0.0.1",
        ] {
            let e = Endpoint::parse_with_default_port(bad, 51820).expect(bad);
            assert!(
                matches!(e.check_dialable(), Err(NameError::EndpointUnreachable(_))),
                "{bad}"
            );
        }
        assert_eq!(
            Endpoint::parse_with_default_port("[fe80::1%eth0]:51820", 51820),
            Err(NameError::EndpointZone("[fe80::1%eth0]:51820".into()))
        );
        assert!(
            "host.example".parse::<Endpoint>().is_err(),
            "port required in files"
        );
    }
}
