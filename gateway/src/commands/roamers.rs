//! Roamers: add, remove, list, and the configs for their side.

use super::*;

/// A roamer's keys: the public key given (its private key stays on the laptop), or a new pair.
fn key_pair(
    given: Option<roamgw_common::PublicKey>,
) -> Result<(Option<PrivateKey>, roamgw_common::PublicKey)> {
    Ok(match given {
        Some(public) => (None, public),
        None => {
            let key = PrivateKey::generate()?;
            let public = key.public_key();
            (Some(key), public)
        }
    })
}

pub fn add_roamer(store: &Store, args: AddRoamerArgs) -> Result<String> {
    let _lock = store.lock()?;
    let (private_key, public_key) = key_pair(args.public_key)?;
    let psk = PresharedKey::generate()?;
    let change = StateChange::AddRoamer {
        name: args.name.clone(),
        public_key,
        address: args.address,
    };
    // The key files must exist before the change is applied (the daemon reads the PSK for the
    // peer), yet a refused change must not overwrite an existing roamer's files: so a dry run
    // on the saved state first, with the same checks and messages.
    let mut dry_run = store.load()?;
    crate::change::apply(&mut dry_run, &change).map_err(|e| refused(e.0))?;
    if let Some(key) = &private_key {
        store.write_private_key(&store.roamer_key_path(&args.name), key)?;
    }
    store.write_psk(&store.roamer_psk_path(&args.name), &psk)?;
    let (summary, how) = match make_change(store, change) {
        Ok(done) => done,
        Err(e) => {
            let _ = store.remove_roamer_keys(&args.name);
            return Err(e);
        }
    };
    let held = if private_key.is_some() {
        "its private key is kept here until you remove the roamer"
    } else {
        "its private key stays on the laptop"
    };
    let several = dry_run.roamers.len() > 1;
    Ok(format!(
        "{summary} ({held}); {how}\n\
         next: roamgw show-config {name} --format roamer > roamer.toml   # copy to the laptop, 0600\n      \
         roamgw add-port 22{to}\n",
        name = args.name,
        to = if several { format!(" --to {}", args.name) } else { String::new() },
    ))
}

pub fn remove_roamer(store: &Store, args: RemoveRoamerArgs) -> Result<String> {
    let _lock = store.lock()?;
    let change = StateChange::RemoveRoamer {
        name: args.name.clone(),
        force: args.force,
    };
    let (summary, how) = make_change(store, change)?;
    store.remove_roamer_keys(&args.name)?;
    Ok(format!("{summary}; {how}\n"))
}

/// `roamgw rotate-key NAME [--public-key KEY]` or `--gateway`. The key files are written
/// before the change goes live (the daemon reads them), and put back if it is refused.
pub fn rotate_key(store: &Store, args: RotateKeyArgs) -> Result<String> {
    let _lock = store.lock()?;
    let mut saved = Vec::new();
    let restore = |saved: &[(std::path::PathBuf, Option<String>)]| {
        for (path, old) in saved {
            store.put_back_secret(path, old.as_deref());
        }
    };
    let mut keep = |path: std::path::PathBuf| {
        let old = std::fs::read_to_string(&path).ok();
        saved.push((path, old));
    };
    let change = match args.name {
        Some(name) => {
            let (private_key, public_key) = key_pair(args.public_key)?;
            let change = StateChange::RotateRoamerKey {
                name: name.clone(),
                public_key,
            };
            let mut dry_run = store.load()?;
            crate::change::apply(&mut dry_run, &change).map_err(|e| refused(e.0))?;
            keep(store.roamer_key_path(&name));
            keep(store.roamer_psk_path(&name));
            match &private_key {
                Some(key) => store.write_private_key(&store.roamer_key_path(&name), key)?,
                None => {
                    let _ = std::fs::remove_file(store.roamer_key_path(&name));
                }
            }
            store.write_psk(&store.roamer_psk_path(&name), &PresharedKey::generate()?)?;
            change
        }
        None => {
            let key = PrivateKey::generate()?;
            keep(store.gateway_key_path());
            store.write_private_key(&store.gateway_key_path(), &key)?;
            StateChange::RotateGatewayKey {
                public_key: key.public_key(),
            }
        }
    };
    match make_change(store, change) {
        Ok((summary, how)) => Ok(format!("{summary}; {how}\n")),
        Err(e) => {
            restore(&saved);
            Err(e)
        }
    }
}

/// `roamgw egress NAME [CIDR...] [--off]`: sets the list, or shows it when given neither.
pub fn egress(store: &Store, args: EgressArgs) -> Result<String> {
    if args.destinations.is_empty() && !args.off {
        let state = store.load()?;
        let roamer = state.roamer(&args.name).ok_or_else(|| {
            refused(format!(
                "no roamer '{}' ({})",
                args.name,
                roamer_names(&state)
            ))
        })?;
        return Ok(if roamer.egress.is_empty() {
            format!(
                "{}: no egress (only replies to its forwards leave through the droplet)\n",
                args.name
            )
        } else {
            let nets: Vec<String> = roamer.egress.iter().map(ToString::to_string).collect();
            format!("{}: egress to {}\n", args.name, nets.join(", "))
        });
    }
    let _lock = store.lock()?;
    let change = StateChange::SetEgress {
        name: args.name,
        egress: args.destinations,
    };
    let (summary, how) = make_change(store, change)?;
    Ok(format!("{summary}; {how}\n"))
}

#[derive(Serialize)]
struct RoamerRow<'a> {
    name: &'a str,
    address: String,
    public_key: String,
    private_key_on_gateway: bool,
    forwards: Vec<String>,
    egress: Vec<String>,
}

pub fn roamers(store: &Store, json: bool) -> Result<String> {
    let state = store.load()?;
    let mut views = Vec::new();
    for roamer in &state.roamers {
        views.push(RoamerRow {
            name: roamer.name.as_str(),
            address: roamer.address.to_string(),
            public_key: roamer.public_key.to_string(),
            private_key_on_gateway: store.roamer_key_path(&roamer.name).exists(),
            forwards: state
                .forwards
                .iter()
                .filter(|f| f.to == roamer.name)
                .map(Forward::key)
                .collect(),
            egress: roamer.egress.iter().map(ToString::to_string).collect(),
        });
    }
    if json {
        return to_json(&views);
    }
    if views.is_empty() {
        return Ok("no roamers; add one with `roamgw add-roamer NAME`\n".into());
    }
    let mut table = Table::new([
        "NAME",
        "ADDRESS",
        "PUBLIC KEY",
        "KEY HELD BY",
        "FORWARDS",
        "EGRESS",
    ]);
    for v in &views {
        table.row([
            v.name.to_string(),
            v.address.clone(),
            v.public_key.clone(),
            if v.private_key_on_gateway {
                "gateway+roamer"
            } else {
                "roamer"
            }
            .into(),
            if v.forwards.is_empty() {
                "-".into()
            } else {
                v.forwards.join(" ")
            },
            if v.egress.is_empty() {
                "-".into()
            } else {
                v.egress.join(",")
            },
        ]);
    }
    Ok(table.render())
}

pub fn show_config(store: &Store, args: ShowConfigArgs) -> Result<String> {
    let state = store.load()?;
    if args.gateway {
        if args.format != ConfigFormat::WgQuick {
            return Err(refused("the gateway side exists only as --format wg-quick"));
        }
        let key = store.gateway_private_key(&state)?;
        let psks = state
            .roamers
            .iter()
            .map(|r| store.roamer_psk(&r.name).map(Some))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let text = peer_configs::gateway_wg_quick(&state, key, psks);
        return if args.qr { qr(&text) } else { Ok(text) };
    }
    let name = args
        .name
        .ok_or_else(|| refused("name a roamer, or pass --gateway"))?;
    let roamer = state
        .roamer(&name)
        .ok_or_else(|| refused(format!("no roamer '{name}' ({})", roamer_names(&state))))?;
    let mut config = peer_configs::roamer_config(
        &state,
        roamer,
        store.roamer_private_key(&name)?,
        Some(store.roamer_psk(&name)?),
    );
    match args.endpoint_family {
        None => {}
        Some(EndpointFamily::Ipv4) => config.gateway.endpoint6 = None,
        Some(EndpointFamily::Ipv6) => {
            config.gateway.endpoint = config.gateway.endpoint6.take().ok_or_else(|| {
                refused("this gateway has no IPv6 endpoint: give it one with `roamgw endpoint6 ADDRESS`")
            })?;
        }
    }
    let text = match args.format {
        ConfigFormat::Roamer => {
            peer_configs::roamer_toml(&config).map_err(|e| refused(e.to_string()))?
        }
        ConfigFormat::WgQuick if args.qr => {
            peer_configs::roamer_wg_quick(&config, peer_configs::WgQuickFor::App)
        }
        ConfigFormat::WgQuick => {
            peer_configs::roamer_wg_quick(&config, peer_configs::WgQuickFor::Linux)
        }
        ConfigFormat::Networkd | ConfigFormat::Nm if args.qr => {
            return Err(refused(
                "--qr draws a wg-quick config for the mobile apps: use --format wg-quick",
            ))
        }
        ConfigFormat::Networkd => roamgw_common::networkd::bundle(&config),
        ConfigFormat::Nm => roamgw_common::nm::bundle(&config),
    };
    if args.qr {
        return qr(&text);
    }
    Ok(text)
}

/// The text as a QR code drawn with half-block characters (two modules per character row).
///
/// Comment lines and blank lines stay out of the code: the apps that scan it ignore them, and
/// without them it fits an 80-column terminal.
fn qr(text: &str) -> Result<String> {
    let payload: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let code = qrcode::QrCode::new(payload.join("\n").as_bytes()).map_err(|e| {
        refused(format!(
            "the config does not fit in a QR code ({e}); copy the file instead"
        ))
    })?;
    let mut out = code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build();
    out.push('\n');
    Ok(out)
}
