//! Networks that are hard on the tunnel, made in the testbed's CGNAT namespace: one that
//! passes no UDP but DNS (hotel Wi-Fi), and a lossy link to the laptop. Each is one nftables
//! table of its own, so undoing it is deleting the table.

use crate::Testbed;

const NO_UDP: &str = "rg_block_udp";
const LOSS: &str = "rg_loss";

fn nft(bed: &Testbed, commands: &[String]) {
    for command in commands {
        let mut args = vec!["nft"];
        args.extend(command.split(' '));
        bed.cgn.run(&args);
    }
}

/// The CGNAT drops every UDP datagram it forwards except DNS.
pub fn block_udp(bed: &Testbed) {
    nft(
        bed,
        &[
            format!("add table inet {NO_UDP}"),
            format!("add chain inet {NO_UDP} block {{ type filter hook forward priority -10 ; }}"),
            format!(
                "add rule inet {NO_UDP} block meta l4proto udp udp dport != 53 udp sport != 53 drop"
            ),
        ],
    );
}

pub fn unblock_udp(bed: &Testbed) {
    nft(bed, &[format!("delete table inet {NO_UDP}")]);
}

/// The CGNAT drops `percent` % of what it forwards, either way, at random (the kernel here
/// has no netem).
pub fn lose(bed: &Testbed, percent: u8) {
    nft(
        bed,
        &[
            format!("add table inet {LOSS}"),
            format!("add chain inet {LOSS} lose {{ type filter hook forward priority -20 ; }}"),
            format!("add rule inet {LOSS} lose numgen random mod 100 < {percent} drop"),
        ],
    );
}

pub fn stop_losing(bed: &Testbed) {
    nft(bed, &[format!("delete table inet {LOSS}")]);
}

/// Where the captive portal's login page is.
pub const PORTAL_LOGIN: &str = "http://100.64.0.1:8080/login";

/// A captive portal in the CGNAT: until someone on the laptop opens [`PORTAL_LOGIN`], every
/// TCP connection to ports 80 and 443 anywhere lands on its web server (a redirect to the
/// login page) and everything else but DNS is dropped. The login takes the portal away.
pub fn captive_portal(bed: &Testbed) {
    let server = format!(
        "import http.server, subprocess\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       if self.path.startswith('/login'):\n\
         \x20           subprocess.run(['nft', 'delete', 'table', 'ip', '{PORTAL}'])\n\
         \x20           self.send_response(200)\n\
         \x20           self.send_header('Content-Length', '7')\n\
         \x20           self.end_headers()\n\
         \x20           self.wfile.write(b'welcome')\n\
         \x20       else:\n\
         \x20           self.send_response(302)\n\
         \x20           self.send_header('Location', '{PORTAL_LOGIN}')\n\
         \x20           self.send_header('Content-Length', '0')\n\
         \x20           self.end_headers()\n\
         \x20   def log_message(self, *args):\n\
         \x20       pass\n\
         http.server.ThreadingHTTPServer(('100.64.0.1', 8080), H).serve_forever()\n"
    );
    nft(
        bed,
        &[
            format!("add table ip {PORTAL}"),
            format!("add chain ip {PORTAL} pre {{ type nat hook prerouting priority -110 ; }}"),
            format!(
                "add rule ip {PORTAL} pre ip saddr 100.64.0.0/10 ip daddr != 100.64.0.1 tcp dport {{ 80, 443 }} dnat to 100.64.0.1:8080"
            ),
            format!("add chain ip {PORTAL} block {{ type filter hook forward priority -10 ; }}"),
            format!("add rule ip {PORTAL} block ip saddr 100.64.0.0/10 udp dport != 53 drop"),
            format!("add rule ip {PORTAL} block ip saddr 100.64.0.0/10 tcp dport != 53 drop"),
        ],
    );
    bed.spawn(&bed.cgn, &["python3", "-c", &server]);
}

const PORTAL: &str = "rg_portal";
