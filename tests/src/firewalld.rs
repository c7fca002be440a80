//! A real firewalld inside a test namespace, on a private D-Bus (no system bus needed).

use std::path::PathBuf;
use std::time::Duration;

use crate::{wait_until, Ns, Testbed};

pub struct Firewalld {
    pub bus_address: String,
}

const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=@SOCKET@</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
  </policy>
</busconfig>
"#;

impl Firewalld {
    /// Starts dbus-daemon and firewalld in `ns`; both stop with the testbed.
    pub fn start(bed: &Testbed, ns: &Ns) -> Self {
        for (tool, package) in [
            ("dbus-daemon", "dbus"),
            ("firewalld", "firewalld"),
            ("firewall-cmd", "firewalld"),
        ] {
            assert!(
                crate::on_path(tool),
                "`{tool}` is missing: install {package} (apt-get install --no-install-recommends {package})"
            );
        }
        let dir: PathBuf = bed.dir.path().join("dbus");
        std::fs::create_dir_all(&dir).expect("dbus dir");
        let socket = dir.join("bus.sock");
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            BUS_CONFIG.replace("@SOCKET@", socket.to_str().expect("utf-8")),
        )
        .expect("write bus config");
        bed.spawn(
            ns,
            &[
                "dbus-daemon",
                &format!("--config-file={}", config.display()),
                "--nofork",
                "--nopidfile",
            ],
        );
        assert!(
            wait_until(Duration::from_secs(5), || socket.exists()),
            "dbus-daemon did not start"
        );
        let bus_address = format!("unix:path={}", socket.display());
        // Its permanent configuration in the test's own directory: firewalld writes zones and
        // policies there, and every test's firewalld would otherwise share (and the machine's
        // keep) /etc/firewalld.
        let system_config = bed.dir.path().join("firewalld");
        for sub in [
            "zones",
            "policies",
            "services",
            "ipsets",
            "icmptypes",
            "helpers",
        ] {
            std::fs::create_dir_all(system_config.join(sub)).expect("firewalld config dir");
        }
        std::fs::copy(
            "/etc/firewalld/firewalld.conf",
            system_config.join("firewalld.conf"),
        )
        .expect("copy firewalld.conf (is firewalld installed?)");
        bed.spawn(
            ns,
            &[
                "env",
                &format!("DBUS_SYSTEM_BUS_ADDRESS={bus_address}"),
                "firewalld",
                "--nofork",
                "--nopid",
                "--system-config",
                system_config.to_str().expect("utf-8"),
            ],
        );
        // roamgw talks to the droplet's firewalld; one on the laptop is the laptop's alone.
        if ns.name == bed.gw.name {
            bed.set_system_bus(&bus_address);
        }
        let firewalld = Firewalld { bus_address };
        let up = wait_until(Duration::from_secs(30), || {
            firewalld.cmd(ns, &["--state"]).status.success()
        });
        assert!(up, "firewalld did not start within 30 s");
        firewalld
    }

    /// Runs firewall-cmd against this firewalld.
    pub fn cmd(&self, ns: &Ns, args: &[&str]) -> std::process::Output {
        let env = format!("DBUS_SYSTEM_BUS_ADDRESS={}", self.bus_address);
        let mut full = vec!["env", env.as_str(), "firewall-cmd"];
        full.extend_from_slice(args);
        ns.output(&full)
    }
}
