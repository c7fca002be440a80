//! `roamgw ha` as an admin drives it, without root and without a daemon: setting up the pair's
//! halves, and every bad input refused with one line and nothing written.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::Gateway;

/// The flags every `ha setup`/`join` here shares: loopback addresses (`lo` exists everywhere),
/// an API nothing listens on (never asked by these commands), files in the test's dir.
fn ha_flags(gw: &Gateway) -> Vec<String> {
    [
        "--peer",
        "127.0.0.2",
        "--this",
        "127.0.0.1",
        "--droplet-id",
        "1001",
        "--api",
        "http://127.0.0.1:9",
        "--token-file",
        token(gw).to_str().expect("utf-8"),
        "--keepalived-conf",
        keepalived(gw).to_str().expect("utf-8"),
    ]
    .map(ToString::to_string)
    .to_vec()
}

fn token(gw: &Gateway) -> PathBuf {
    gw.dir.path().join("token")
}

fn keepalived(gw: &Gateway) -> PathBuf {
    gw.dir.path().join("keepalived.conf")
}

fn write_token(gw: &Gateway, mode: u32) {
    fs::write(token(gw), "dop_v1_test\n").expect("token");
    fs::set_permissions(token(gw), fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run(gw: &Gateway, command: &[&str], flags: &[String]) -> std::process::Output {
    let mut args: Vec<&str> = command.to_vec();
    args.extend(flags.iter().map(String::as_str));
    gw.run(&args)
}

/// The one line on stderr of a command that must fail.
fn refusal(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "it succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

fn nothing_written(gw: &Gateway) {
    for file in ["ha.toml", "pair.key", "ha.role"] {
        assert!(!gw.config_dir().join(file).exists(), "{file} was written");
    }
    assert!(!keepalived(gw).exists(), "keepalived.conf was written");
}

#[test]
fn setup_writes_this_droplets_half_and_prints_the_join() {
    let gw = Gateway::with_laptop();
    write_token(&gw, 0o600);
    let out = String::from_utf8(run(&gw, &["ha", "setup"], &ha_flags(&gw)).stdout).expect("utf-8");
    assert!(out.contains("is the active of a pair"), "{out}");
    assert!(
        out.contains("roamgw ha join --peer 127.0.0.1 --pair-key '"),
        "{out}"
    );
    assert!(
        out.contains("203.0.113.50"),
        "the state's floating IP is the reserved IP: {out}"
    );
    for file in ["ha.toml", "pair.key", "ha.role"] {
        let mode = fs::metadata(gw.config_dir().join(file))
            .expect(file)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let conf = fs::read_to_string(keepalived(&gw)).expect("keepalived.conf");
    assert!(conf.contains("unicast_peer {\n        127.0.0.2"), "{conf}");
    assert!(conf.contains("interface lo"), "{conf}");
    assert!(conf.contains("ha notify\""), "{conf}");
    // `ha keepalived` prints the same configuration.
    assert_eq!(gw.ok(&["ha", "keepalived"]), conf);
    let status = gw.ok(&["ha", "status"]);
    assert!(
        status.contains("role:         active (saved; roamgw run is not running)"),
        "{status}"
    );
}

#[test]
fn setup_refuses_bad_inputs_and_writes_nothing() {
    let gw = Gateway::empty();
    write_token(&gw, 0o600);
    let line = refusal(&run(&gw, &["ha", "setup"], &ha_flags(&gw)));
    assert!(line.contains("roamgw init"), "{line}");

    let gw = Gateway::with_laptop();
    let line = refusal(&run(&gw, &["ha", "setup"], &ha_flags(&gw)));
    assert!(
        line.contains("no API token at") && line.contains("install -m 600"),
        "{line}"
    );
    nothing_written(&gw);

    write_token(&gw, 0o644);
    let line = refusal(&run(&gw, &["ha", "setup"], &ha_flags(&gw)));
    assert!(
        line.contains("readable by others") && line.contains("chmod 600"),
        "{line}"
    );
    nothing_written(&gw);

    write_token(&gw, 0o600);
    fs::write(keepalived(&gw), "vrrp_instance mine {}\n").expect("foreign conf");
    let line = refusal(&run(&gw, &["ha", "setup"], &ha_flags(&gw)));
    assert!(line.contains("roamgw did not write it"), "{line}");
    assert_eq!(
        fs::read_to_string(keepalived(&gw)).expect("conf"),
        "vrrp_instance mine {}\n",
        "a foreign keepalived.conf is left alone"
    );
    fs::remove_file(keepalived(&gw)).expect("rm");
    nothing_written(&gw);

    let mut same = ha_flags(&gw);
    same[1] = "127.0.0.1".into();
    let line = refusal(&run(&gw, &["ha", "setup"], &same));
    assert!(line.contains("other droplet"), "{line}");
    nothing_written(&gw);
}

#[test]
fn join_takes_a_fresh_droplet_and_its_standby_refuses_changes() {
    let active = Gateway::with_laptop();
    write_token(&active, 0o600);
    let out = String::from_utf8(run(&active, &["ha", "setup"], &ha_flags(&active)).stdout)
        .expect("utf-8");
    let key = out
        .split("--pair-key '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a pair key")
        .to_string();

    // A droplet with a gateway of its own cannot join: its roamers would be lost.
    let busy = Gateway::with_laptop();
    write_token(&busy, 0o600);
    let line = refusal(&run(
        &busy,
        &["ha", "join", "--pair-key", &key],
        &ha_flags(&busy),
    ));
    assert!(line.contains("already has its own gateway"), "{line}");
    nothing_written(&busy);

    let fresh = Gateway::empty();
    fresh.ok(common::INIT);
    write_token(&fresh, 0o600);
    let line = refusal(&run(
        &fresh,
        &["ha", "join", "--pair-key", "c2hvcnQ="],
        &ha_flags(&fresh),
    ));
    assert!(line.contains("32"), "{line}");
    nothing_written(&fresh);
    let out = String::from_utf8(
        run(
            &fresh,
            &["ha", "join", "--pair-key", &key],
            &ha_flags(&fresh),
        )
        .stdout,
    )
    .expect("utf-8");
    assert!(out.contains("is the standby of a pair"), "{out}");
    assert_eq!(
        fs::read_to_string(fresh.config_dir().join("pair.key")).expect("key"),
        key
    );

    // The standby refuses changes, naming the active.
    let line = refusal(&fresh.run(&["add-roamer", "phone"]));
    assert!(
        line.contains("standby") && line.contains("127.0.0.2"),
        "{line}"
    );
    assert!(!fresh.config_dir().join("keys/phone.key").exists());

    // keepalived's word, without a daemon: saved for the next start.
    let line = refusal(&fresh.run(&["ha", "notify", "INSTANCE", "roamgw", "SLEEPY", "100"]));
    assert!(line.contains("MASTER"), "{line}");
    let out = fresh.ok(&["ha", "notify", "INSTANCE", "roamgw", "MASTER", "100"]);
    assert!(out.contains("active: saved"), "{out}");
    fresh.ok(&["add-roamer", "phone"]);
}
