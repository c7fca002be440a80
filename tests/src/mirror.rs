//! What a mirror droplet has beside roamgw: nginx serving a large file on the droplet's public
//! IP, an uplink shaped to a droplet-like rate, and downloads that check what they got.

use super::*;
use crate::ns::wait_for_listener;

/// A file served over HTTP by nginx, and what a correct download of it gives.
pub struct Mirror {
    pub url: String,
    pub sha256: String,
    pub bytes: u64,
}

impl Testbed {
    /// The droplet's mirror: nginx on its public IP with a file of `megabytes` random bytes.
    pub fn start_mirror(&self, megabytes: u64) -> Mirror {
        self.start_http_server(&self.gw, PUBLIC_IP, "mirror", megabytes)
    }

    /// nginx in `ns` on `address`:80, serving `/NAME.bin` of `megabytes` random bytes.
    pub fn start_http_server(&self, ns: &Ns, address: &str, name: &str, megabytes: u64) -> Mirror {
        let prefix = self.dir.path().join(format!("nginx-{name}"));
        let root = prefix.join("www");
        std::fs::create_dir_all(&root).expect("nginx root");
        let file = root.join(format!("{name}.bin"));
        let out = Command::new("head")
            .args(["-c", &format!("{}", megabytes << 20), "/dev/urandom"])
            .output()
            .expect("head");
        std::fs::write(&file, &out.stdout).expect("write the served file");
        let conf = prefix.join("nginx.conf");
        // The test's directory is root's and 0700: the workers run as root too.
        std::fs::write(
            &conf,
            format!(
                "user root;\nworker_processes 1;\ndaemon off;\npid {prefix}/nginx.pid;\n\
                 error_log {prefix}/error.log;\nevents {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  sendfile on;\n  client_body_temp_path {prefix}/body;\n  \
                 proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n  \
                 uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n  \
                 server {{ listen {address}:80; root {root}; }}\n}}\n",
                prefix = prefix.display(),
                root = root.display(),
            ),
        )
        .expect("nginx.conf");
        let prefix_arg = prefix.to_str().expect("utf-8");
        let conf_arg = conf.to_str().expect("utf-8");
        self.spawn(ns, &["nginx", "-p", prefix_arg, "-c", conf_arg]);
        wait_for_listener(ns, 80, "tcp");
        Mirror {
            url: format!("http://{address}/{name}.bin"),
            sha256: sha256_of(&file),
            bytes: megabytes << 20,
        }
    }

    /// Shapes what leaves the droplet to `mbit` Mbit/s (a token bucket on its side of the
    /// link), as a droplet's uplink is.
    pub fn shape_droplet_uplink(&self, mbit: u32) {
        self.gw.run(&[
            "tc",
            "qdisc",
            "replace",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            &format!("{mbit}mbit"),
            "burst",
            "256kb",
            "latency",
            "50ms",
        ]);
    }
}

/// A download's outcome, as curl reports it.
#[derive(Debug)]
pub struct Download {
    pub ok: bool,
    pub bytes: u64,
    pub seconds: f64,
    pub sha256: String,
    /// curl's message when it failed (reset, stalled, short).
    pub error: String,
}

impl Download {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / 1e6 / self.seconds.max(1e-9)
    }
}

/// Downloads `url` from `ns` and hashes it; a transfer slower than 100 kB/s for 3 s counts as
/// stalled and fails.
pub fn download(ns: &Ns, url: &str) -> Download {
    let script = format!(
        "set -o pipefail; curl -sS --fail --speed-limit 100000 --speed-time 3 --max-time 300 \
         -w '%{{stderr}}%{{size_download}} %{{time_total}}\\n' {url} | sha256sum"
    );
    let out = ns.output(&["bash", "-c", &script]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (mut bytes, mut seconds) = (0, 0.0);
    let mut error = Vec::new();
    for line in stderr.lines() {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [size, time] if size.parse::<u64>().is_ok() => {
                bytes = size.parse().unwrap_or(0);
                seconds = time.parse().unwrap_or(0.0);
            }
            _ => error.push(line.to_string()),
        }
    }
    Download {
        ok: out.status.success(),
        bytes,
        seconds,
        sha256: String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        error: error.join("; "),
    }
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
