//! Port specs: what `roamgw add-port` takes.
//!
//! ```text
//! SPEC     = PUBLIC [ ":" LOCAL ] [ "/" PROTOCOL ]
//! PUBLIC   = PORT [ "-" PORT ]          ports on the floating IP
//! LOCAL    = PORT [ "-" PORT ]          ports on the roamer; a range must have the same length
//! PROTOCOL = "tcp" | "udp" | "tcp+udp"  default tcp; "udp+tcp" and "both" mean tcp+udp
//! PORT     = 1..65535
//! ```
//!
//! Examples: `22`, `22/tcp`, `53/udp`, `53/tcp+udp`, `51000-51100/udp`, `2222:22`,
//! `8000-8010:9000-9010/tcp`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which transport protocols a forward covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocols {
    Tcp,
    Udp,
    Both,
}

impl Protocols {
    pub fn contains(self, protocol: Protocol) -> bool {
        matches!(
            (self, protocol),
            (Protocols::Both, _)
                | (Protocols::Tcp, Protocol::Tcp)
                | (Protocols::Udp, Protocol::Udp)
        )
    }

    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        [Protocol::Tcp, Protocol::Udp]
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    pub fn intersects(self, other: Protocols) -> bool {
        self.iter().any(|p| other.contains(p))
    }
}

impl fmt::Display for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocols::Tcp => "tcp",
            Protocols::Udp => "udp",
            Protocols::Both => "tcp+udp",
        })
    }
}

/// An inclusive, non-empty range of ports, never containing port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    pub fn new(first: u16, last: u16) -> Result<Self, PortSpecError> {
        if first == 0 || last == 0 {
            return Err(PortSpecError::PortZero);
        }
        if first > last {
            return Err(PortSpecError::Reversed { first, last });
        }
        Ok(Self { first, last })
    }

    pub fn single(port: u16) -> Result<Self, PortSpecError> {
        Self::new(port, port)
    }

    pub fn first(self) -> u16 {
        self.first
    }

    pub fn last(self) -> u16 {
        self.last
    }

    pub fn len(self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Never true: a range holds at least one port. Present so `len` reads naturally to clippy.
    pub fn is_empty(self) -> bool {
        false
    }

    pub fn is_single(self) -> bool {
        self.first == self.last
    }

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    #[error("empty port spec: give a port such as 22, 22/tcp, 53/udp, 60000-60100/udp or 2222:22")]
    Empty,
    #[error("'{0}' is not a port number: use 1-65535, e.g. 22 or 60000-60100")]
    NotANumber(String),
    #[error("'{0}' has a port missing (before or after '-' or ':'): the form is PUBLIC[:LOCAL][/PROTOCOL], e.g. 22, 60000-60100/udp or 2222:22")]
    MissingPort(String),
    #[error("port {0} is out of range: ports are 1-65535")]
    OutOfRange(String),
    #[error("port 0 is not a real port: use 1-65535")]
    PortZero,
    #[error("range {first}-{last} is reversed: write the lower port first ({last}-{first})")]
    Reversed { first: u16, last: u16 },
    #[error("unknown protocol '{0}': use tcp, udp or tcp+udp (e.g. 53/udp)")]
    Protocol(String),
    #[error(
        "public range {public} has {public_len} ports but local range {local} has {local_len}: \
         a remapped range must have the same length (e.g. 8000-8010:9000-9010)"
    )]
    RemapLength {
        public: PortRange,
        local: PortRange,
        public_len: u32,
        local_len: u32,
    },
    #[error("'{0}' has more than one ':' or '/': the form is PUBLIC[:LOCAL][/PROTOCOL], e.g. 2222:22/tcp")]
    Shape(String),
}

/// One forward's ports: public ports on the floating IP → local ports on the roamer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    pub public: PortRange,
    pub local: PortRange,
    pub protocols: Protocols,
}

impl PortSpec {
    /// True when both cover at least one common (protocol, public port).
    pub fn overlaps(&self, other: &PortSpec) -> bool {
        self.protocols.intersects(other.protocols) && self.public.overlaps(other.public)
    }

    pub fn is_remap(&self) -> bool {
        self.public != self.local
    }

    /// The local port a public port maps to (same offset within the range).
    pub fn local_port_for(&self, public_port: u16) -> Option<u16> {
        if !self.public.contains(public_port) {
            return None;
        }
        Some(self.local.first + (public_port - self.public.first))
    }
}

fn parse_port(text: &str) -> Result<u16, PortSpecError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortSpecError::NotANumber(text.to_string()));
    }
    match text.parse::<u32>() {
        Ok(0) => Err(PortSpecError::PortZero),
        Ok(n) if n <= u32::from(u16::MAX) => Ok(n as u16),
        _ => Err(PortSpecError::OutOfRange(text.to_string())),
    }
}

fn parse_range(text: &str) -> Result<PortRange, PortSpecError> {
    let missing = |part: &str| part.trim().is_empty();
    if missing(text)
        || text
            .split_once('-')
            .is_some_and(|(a, b)| missing(a) || missing(b))
    {
        return Err(PortSpecError::MissingPort(text.to_string()));
    }
    match text.split_once('-') {
        Some((first, last)) => PortRange::new(parse_port(first)?, parse_port(last)?),
        None => PortRange::single(parse_port(text)?),
    }
}

impl FromStr for Protocols {
    type Err = PortSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocols::Tcp),
            "udp" => Ok(Protocols::Udp),
            "tcp+udp" | "udp+tcp" | "both" => Ok(Protocols::Both),
            other => Err(PortSpecError::Protocol(other.to_string())),
        }
    }
}

impl FromStr for PortSpec {
    type Err = PortSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(PortSpecError::Empty);
        }
        if s.matches('/').count() > 1 || s.matches(':').count() > 1 {
            return Err(PortSpecError::Shape(s.to_string()));
        }
        let (ports, protocols) = match s.split_once('/') {
            Some((ports, proto)) => (ports, proto.parse()?),
            None => (s, Protocols::Tcp),
        };
        // A missing port is named by the whole spec: its empty part alone says nothing.
        let whole = |e| match e {
            PortSpecError::MissingPort(_) => PortSpecError::MissingPort(s.to_string()),
            other => other,
        };
        let (public, local) = match ports.split_once(':') {
            Some((public, local)) => (
                parse_range(public).map_err(whole)?,
                parse_range(local).map_err(whole)?,
            ),
            None => {
                let range = parse_range(ports).map_err(whole)?;
                (range, range)
            }
        };
        if public.len() != local.len() {
            return Err(PortSpecError::RemapLength {
                public,
                local,
                public_len: public.len(),
                local_len: local.len(),
            });
        }
        Ok(PortSpec {
            public,
            local,
            protocols,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_remap() {
            write!(f, "{}:{}/{}", self.public, self.local, self.protocols)
        } else {
            write!(f, "{}/{}", self.public, self.protocols)
        }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PortSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn valid_specs_parse_to_canonical_form() {
        let table = [
            ("22", "22/tcp"),
            ("22/tcp", "22/tcp"),
            ("22/TCP", "22/tcp"),
            (" 53/udp ", "53/udp"),
            ("53/tcp+udp", "53/tcp+udp"),
            ("53/udp+tcp", "53/tcp+udp"),
            ("53/both", "53/tcp+udp"),
            ("51000-51100/udp", "51000-51100/udp"),
            ("2222:22", "2222:22/tcp"),
            ("22:22", "22/tcp"),
            ("8000-8010:9000-9010/tcp", "8000-8010:9000-9010/tcp"),
            ("1", "1/tcp"),
            ("65535/udp", "65535/udp"),
            ("7-7", "7/tcp"),
        ];
        for (input, canonical) in table {
            assert_eq!(spec(input).to_string(), canonical, "input {input}");
            assert_eq!(spec(canonical), spec(input), "round trip of {input}");
        }
    }

    #[test]
    fn invalid_specs_are_rejected_for_the_right_reason() {
        let table: &[(&str, &str)] = &[
            ("", "empty port spec"),
            ("0", "port 0"),
            ("65536", "out of range"),
            ("99999999999", "out of range"),
            ("ssh", "not a port number"),
            ("-5", "'-5' has a port missing"),
            ("22/icmp", "unknown protocol"),
            ("22/", "unknown protocol"),
            ("100-90", "reversed"),
            ("1000-2000:1-5", "same length"),
            ("1:2:3", "more than one"),
            ("22/tcp/udp", "more than one"),
            ("22-", "'22-' has a port missing"),
            (":22", "':22' has a port missing"),
            ("22:", "'22:' has a port missing"),
            ("0-10", "port 0"),
            ("+22", "not a port number"),
        ];
        for (input, reason) in table {
            let err = input
                .parse::<PortSpec>()
                .expect_err(&format!("{input:?} should fail"));
            assert!(
                err.to_string().contains(reason),
                "{input:?}: got '{err}', expected it to mention '{reason}'"
            );
        }
    }

    #[test]
    fn overlap_needs_a_common_protocol_and_port() {
        let table = [
            ("22", "22/tcp", true),
            ("22", "22/udp", false),
            ("53/tcp+udp", "53/udp", true),
            ("1000-2000", "2000-3000", true),
            ("1000-2000", "2001-3000", false),
            ("2222:22", "22", false),
            ("100-200/udp", "150/tcp+udp", true),
        ];
        for (a, b, expected) in table {
            assert_eq!(spec(a).overlaps(&spec(b)), expected, "{a} vs {b}");
            assert_eq!(spec(b).overlaps(&spec(a)), expected, "{b} vs {a}");
        }
    }

    #[test]
    fn remapped_range_keeps_the_offset() {
        let s = spec("8000-8010:9000-9010");
        assert_eq!(s.local_port_for(8000), Some(9000));
        assert_eq!(s.local_port_for(8010), Some(9010));
        assert_eq!(s.local_port_for(7999), None);
    }
}
