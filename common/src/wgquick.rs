//! wg-quick configuration files: parse and render every key wg-quick(8) and wg(8) accept.
//!
//! Keys are case-insensitive and `#` starts a comment, as in wg-quick. List keys (`Address`,
//! `DNS`, `AllowedIPs`) may repeat and accumulate; hook keys (`PreUp`, ...) may repeat and run in
//! order; any other key given twice in one section is an error rather than a silent override.

use std::fmt::{self, Write as _};

use ipnet::IpNet;

use crate::keys::{PresharedKey, PrivateKey, PublicKey};
use crate::names::Endpoint;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WgQuickConfig {
    pub interface: Interface,
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Absent when a hook sets it (`PostUp = wg set %i private-key FILE`).
    pub private_key: Option<PrivateKey>,
    pub listen_port: Option<u16>,
    /// `off`, or a number in decimal or 0x-hex, kept as written.
    pub fwmark: Option<String>,
    pub address: Vec<IpNet>,
    /// Resolver addresses and search domains.
    pub dns: Vec<String>,
    pub mtu: Option<u16>,
    /// `off`, `auto`, or a routing table number or name.
    pub table: Option<String>,
    pub pre_up: Vec<String>,
    pub post_up: Vec<String>,
    pub pre_down: Vec<String>,
    pub post_down: Vec<String>,
    pub save_config: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
    pub allowed_ips: Vec<IpNet>,
    pub endpoint: Option<Endpoint>,
    /// Seconds; `off` parses as `None`.
    pub persistent_keepalive: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct WgQuickError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> WgQuickError {
    WgQuickError {
        line,
        message: message.into(),
    }
}

enum Section {
    None,
    Interface,
    Peer(PeerBuilder),
}

struct PeerBuilder {
    header_line: usize,
    public_key: Option<PublicKey>,
    preshared_key: Option<PresharedKey>,
    allowed_ips: Vec<IpNet>,
    endpoint: Option<Endpoint>,
    persistent_keepalive: Option<Option<u16>>,
}

impl PeerBuilder {
    fn finish(self) -> Result<Peer, WgQuickError> {
        Ok(Peer {
            public_key: self
                .public_key
                .ok_or_else(|| err(self.header_line, "[Peer] has no PublicKey"))?,
            preshared_key: self.preshared_key,
            allowed_ips: self.allowed_ips,
            endpoint: self.endpoint,
            persistent_keepalive: self.persistent_keepalive.flatten(),
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &str, line: usize) -> Result<(), WgQuickError> {
    if slot.is_some() {
        return Err(err(
            line,
            format!("{key} is given twice in this section; keep one"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// wg-quick accepts a bare address as a /32 (or /128); so do we.
fn parse_ipnet(item: &str) -> Result<IpNet, ()> {
    item.parse::<IpNet>()
        .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| ())
}

fn parse_nets(value: &str, line: usize, what: &str) -> Result<Vec<IpNet>, WgQuickError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            parse_ipnet(item).map_err(|_| {
                err(
                    line,
                    format!("'{item}' is not a valid {what} (e.g. 192.168.32.2/24)"),
                )
            })
        })
        .collect()
}

fn parse_number<T: std::str::FromStr>(
    value: &str,
    line: usize,
    key: &str,
    range: &str,
) -> Result<T, WgQuickError> {
    value
        .parse()
        .map_err(|_| err(line, format!("{key} '{value}' is not a number in {range}")))
}

/// One `Key = Value` line of a file, where it is.
struct Setting<'a> {
    key: &'a str,
    value: &'a str,
    line: usize,
}

impl Setting<'_> {
    fn parsed<T: std::str::FromStr>(&self) -> Result<T, WgQuickError>
    where
        T::Err: fmt::Display,
    {
        self.value
            .parse()
            .map_err(|e| err(self.line, format!("{}: {e}", self.key)))
    }

    fn number<T: std::str::FromStr>(&self, range: &str) -> Result<T, WgQuickError> {
        parse_number(self.value, self.line, self.key, range)
    }

    fn once<T>(&self, slot: &mut Option<T>, value: T) -> Result<(), WgQuickError> {
        set_once(slot, value, self.key, self.line)
    }
}

impl Interface {
    fn set(&mut self, s: &Setting) -> Result<(), WgQuickError> {
        let value = s.value;
        match s.key.to_ascii_lowercase().as_str() {
            "privatekey" => s.once(&mut self.private_key, s.parsed()?),
            "listenport" => s.once(&mut self.listen_port, s.number("0-65535")?),
            "fwmark" => {
                let valid = value == "off"
                    || value.parse::<u32>().is_ok()
                    || value
                        .strip_prefix("0x")
                        .is_some_and(|h| u32::from_str_radix(h, 16).is_ok());
                if !valid {
                    return Err(err(
                        s.line,
                        format!("FwMark '{value}' must be off, a number or 0x-hex"),
                    ));
                }
                s.once(&mut self.fwmark, value.to_string())
            }
            "address" => {
                self.address.extend(parse_nets(value, s.line, "address")?);
                Ok(())
            }
            "dns" => {
                self.dns.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .map(str::to_string),
                );
                Ok(())
            }
            "mtu" => s.once(&mut self.mtu, s.number("576-65535")?),
            "table" => s.once(&mut self.table, value.to_string()),
            hook @ ("preup" | "postup" | "predown" | "postdown") => {
                let hooks = match hook {
                    "preup" => &mut self.pre_up,
                    "postup" => &mut self.post_up,
                    "predown" => &mut self.pre_down,
                    _ => &mut self.post_down,
                };
                hooks.push(value.to_string());
                Ok(())
            }
            "saveconfig" => {
                let save = match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(err(
                            s.line,
                            format!("SaveConfig '{value}' must be true or false"),
                        ))
                    }
                };
                s.once(&mut self.save_config, save)
            }
            _ => Err(err(s.line, format!("unknown key {} in [Interface]", s.key))),
        }
    }
}

impl PeerBuilder {
    fn new(header_line: usize) -> Self {
        PeerBuilder {
            header_line,
            public_key: None,
            preshared_key: None,
            allowed_ips: Vec::new(),
            endpoint: None,
            persistent_keepalive: None,
        }
    }

    fn set(&mut self, s: &Setting) -> Result<(), WgQuickError> {
        match s.key.to_ascii_lowercase().as_str() {
            "publickey" => s.once(&mut self.public_key, s.parsed()?),
            "presharedkey" => s.once(&mut self.preshared_key, s.parsed()?),
            "allowedips" => {
                let nets = parse_nets(s.value, s.line, "AllowedIPs entry")?;
                self.allowed_ips.extend(nets);
                Ok(())
            }
            "endpoint" => s.once(&mut self.endpoint, s.parsed()?),
            "persistentkeepalive" => {
                let keepalive = match s.value {
                    "off" => None,
                    _ => Some(s.number("1-65535 or off")?),
                };
                s.once(&mut self.persistent_keepalive, keepalive)
            }
            _ => Err(err(s.line, format!("unknown key {} in [Peer]", s.key))),
        }
    }
}

impl std::str::FromStr for WgQuickConfig {
    type Err = WgQuickError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut config = WgQuickConfig::default();
        let mut seen_interface = false;
        let mut section = Section::None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            if content.starts_with('[') {
                if let Section::Peer(peer) = std::mem::replace(&mut section, Section::None) {
                    config.peers.push(peer.finish()?);
                }
                section = match content.to_ascii_lowercase().as_str() {
                    "[interface]" if seen_interface => {
                        return Err(err(
                            line,
                            "a second [Interface] section; a file has exactly one",
                        ))
                    }
                    "[interface]" => {
                        seen_interface = true;
                        Section::Interface
                    }
                    "[peer]" => Section::Peer(PeerBuilder::new(line)),
                    _ => {
                        return Err(err(
                            line,
                            format!("unknown section {content}: only [Interface] and [Peer] exist"),
                        ))
                    }
                };
                continue;
            }
            let Some((key, value)) = content.split_once('=') else {
                return Err(err(
                    line,
                    format!("'{content}' is not of the form Key = Value"),
                ));
            };
            let setting = Setting {
                key: key.trim(),
                value: value.trim(),
                line,
            };
            match &mut section {
                Section::None => {
                    return Err(err(
                        line,
                        format!(
                            "{} appears before any [Interface] or [Peer] section",
                            setting.key
                        ),
                    ))
                }
                Section::Interface => config.interface.set(&setting)?,
                Section::Peer(peer) => peer.set(&setting)?,
            }
        }
        if let Section::Peer(peer) = section {
            config.peers.push(peer.finish()?);
        }
        if !seen_interface {
            return Err(err(text.lines().count().max(1), "no [Interface] section"));
        }
        Ok(config)
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl WgQuickConfig {
    /// Renders the file. Secrets are written in full: the caller decides where this goes.
    pub fn render(&self) -> String {
        let mut out = String::from("[Interface]\n");
        let i = &self.interface;
        let mut line = |key: &str, value: &dyn fmt::Display| {
            let _ = writeln!(out, "{key} = {value}");
        };
        if let Some(k) = &i.private_key {
            line("PrivateKey", &k.expose_base64().as_str());
        }
        if let Some(p) = i.listen_port {
            line("ListenPort", &p);
        }
        if let Some(m) = &i.fwmark {
            line("FwMark", m);
        }
        if !i.address.is_empty() {
            line("Address", &join(&i.address));
        }
        if !i.dns.is_empty() {
            line("DNS", &join(&i.dns));
        }
        if let Some(m) = i.mtu {
            line("MTU", &m);
        }
        if let Some(t) = &i.table {
            line("Table", t);
        }
        for (key, commands) in [
            ("PreUp", &i.pre_up),
            ("PostUp", &i.post_up),
            ("PreDown", &i.pre_down),
            ("PostDown", &i.post_down),
        ] {
            for c in commands {
                line(key, c);
            }
        }
        if let Some(s) = i.save_config {
            line("SaveConfig", &s);
        }
        for peer in &self.peers {
            out.push_str("\n[Peer]\n");
            let _ = writeln!(out, "PublicKey = {}", peer.public_key);
            if let Some(k) = &peer.preshared_key {
                let _ = writeln!(out, "PresharedKey = {}", k.expose_base64().as_str());
            }
            if !peer.allowed_ips.is_empty() {
                let _ = writeln!(out, "AllowedIPs = {}", join(&peer.allowed_ips));
            }
            if let Some(e) = &peer.endpoint {
                let _ = writeln!(out, "Endpoint = {e}");
            }
            if let Some(k) = peer.persistent_keepalive {
                let _ = writeln!(out, "PersistentKeepalive = {k}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "YEocP0e2o1WT5GlvBvQzVF7EeR6z9aCk1ELvcRpoXUs=";
    const KEY_B: &str = "mRWxSJPnBqVjl1ywX0hE+JZfDzpnTPBWaT6gdHbT7HY=";
    const KEY_C: &str = "GDvZAcXn0PPlb8Obc9+CQrHeoYhhJZSkiUnlB5RsvUo=";

    /// The droplet side of the manual setup in background.md.
    fn droplet_conf() -> String {
        format!(
            "[Interface]\nAddress = 192.168.32.1/24\nListenPort = 51820\nPrivateKey = {KEY_A}\n\n\
             [Peer]\n# the laptop\nPublicKey = {KEY_B}\nPresharedKey = {KEY_C}\nAllowedIPs = 192.168.32.0/24\n"
        )
    }

    /// The laptop side of the manual setup in background.md.
    fn laptop_conf() -> String {
        format!(
            "[Interface]\nAddress = 192.168.32.2/24\nPrivateKey = {KEY_B}\n\n\
             [Peer]\nPublicKey = {KEY_A}\nPresharedKey = {KEY_C}\nAllowedIPs = 192.168.32.0/24\n\
             Endpoint = droplet.example.com:51820\nPersistentKeepalive = 10\n"
        )
    }

    #[test]
    fn background_examples_parse() {
        let droplet: WgQuickConfig = droplet_conf().parse().expect("droplet");
        assert_eq!(droplet.interface.listen_port, Some(51820));
        assert_eq!(droplet.peers.len(), 1);
        let laptop: WgQuickConfig = laptop_conf().parse().expect("laptop");
        assert_eq!(laptop.peers[0].persistent_keepalive, Some(10));
        assert_eq!(
            laptop.peers[0]
                .endpoint
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("droplet.example.com:51820")
        );
    }

    #[test]
    fn every_key_round_trips() {
        let text = format!(
            "[interface]\nprivatekey = {KEY_A}\nListenPort=51820\nFwMark = 0x1234\n\
             Address = 192.168.32.1/24, fd00::1/64\nAddress = 10.0.0.1\nDNS = 192.0.2.53, example.com\n\
             MTU = 1420\nTable = off\nPreUp = echo pre\nPostUp = echo a\nPostUp = echo b\n\
             PreDown = echo c\nPostDown = echo d\nSaveConfig = false\n\
             [Peer]\nPublicKey = {KEY_B}\nPresharedKey = {KEY_C}\nAllowedIPs = 0.0.0.0/0, ::/0\n\
             Endpoint = [2001:db8::1]:51820\nPersistentKeepalive = 25\n\
             [Peer]\nPublicKey = {KEY_C}\nPersistentKeepalive = off\n"
        );
        let config: WgQuickConfig = text.parse().expect("parse");
        assert_eq!(config.interface.address.len(), 3);
        assert_eq!(config.interface.post_up, vec!["echo a", "echo b"]);
        assert_eq!(config.peers[1].persistent_keepalive, None);
        let rendered = config.render();
        let again: WgQuickConfig = rendered.parse().expect("reparse");
        assert_eq!(again, config);
        assert_eq!(again.render(), rendered);
    }

    #[test]
    fn errors_name_the_line() {
        let table: Vec<(String, usize, &str)> = vec![
            ("[Interface]\nFoo = 1\n".into(), 2, "unknown key Foo"),
            ("[Interface]\nListenPort = abc\n".into(), 2, "not a number"),
            (
                "[Interface]\nAddress = 300.1.1.1/24\n".into(),
                2,
                "not a valid address",
            ),
            ("[Interface]\nnonsense\n".into(), 2, "Key = Value"),
            ("PrivateKey = x\n".into(), 1, "before any"),
            ("[Interface]\n[Interface]\n".into(), 2, "second [Interface]"),
            (
                "[Interface]\n\n[Peer]\nAllowedIPs = 10.0.0.0/8\n".into(),
                3,
                "no PublicKey",
            ),
            (
                "[Interface]\n[Peer]\nPublicKey = abc\n".into(),
                3,
                "not valid base64",
            ),
            ("[Interface]\n[Wat]\n".into(), 2, "unknown section"),
            (
                "[Interface]\nListenPort = 1\nListenPort = 2\n".into(),
                3,
                "twice",
            ),
            (
                format!("[Interface]\n[Peer]\nPublicKey = {KEY_A}\nEndpoint = nope\n"),
                4,
                "Endpoint",
            ),
            (
                "[Interface]\nSaveConfig = maybe\n".into(),
                2,
                "true or false",
            ),
            ("# only a comment\n".into(), 1, "no [Interface]"),
        ];
        for (text, line, reason) in table {
            let e = text.parse::<WgQuickConfig>().expect_err(&text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(reason), "{text:?}: {e}");
        }
    }
}
