//! The status page of `roamgw run --http`, in headless Chromium (Debian's chromium and
//! chromium-driver) in the droplet's namespace: it shows the roamer and the forwards, its chart
//! moves while traffic flows, a forward is removed from the page with the token and refused
//! without it; another origin and a daemon without a token file are refused too.
//!
//! `ROAMGW_SCREENSHOT=docs/status-page.png cargo test -p roamgw-e2e --test status_page`
//! refreshes the screenshot in the docs.

use std::time::Duration;

use roamgw_e2e::browser::Browser;
use roamgw_e2e::{wait_until, GatewayMode, Laptop, Scenario, FLOATING_IP};

const ADDR: &str = "127.0.0.1:9587";
const TOKEN: &str = "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5";

/// A POST from inside the page (the browser adds Origin and Sec-Fetch-Site), with `headers`
/// as a JS object literal; the HTTP status.
fn post_from_page(browser: &Browser, path: &str, headers: &str, body: &str) -> i64 {
    let status = browser.eval(&format!(
        "fetch('{path}', {{method: 'POST', headers: {headers}, body: JSON.stringify({body})}}).then(r => r.status)"
    ));
    status
        .as_i64()
        .unwrap_or_else(|| panic!("not a status: {status}"))
}

/// The same POST with curl from the droplet, with extra headers.
fn post_with_curl(s: &Scenario, headers: &[&str], body: &str) -> String {
    let mut args = vec![
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    let url = format!("http://{ADDR}/api/forwards/remove");
    args.extend(["--data", body, &url]);
    String::from_utf8_lossy(&s.bed.gw.output(&args).stdout).into_owned()
}

#[test]
fn the_page_shows_the_tunnel_and_changes_only_with_the_token() {
    let mut s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.ok(&["add-port", "22"]);
    s.ok(&["add-port", "5201"]);
    s.ok(&[
        "add-port",
        "60000-60010/udp",
        "--allow-from",
        "198.51.100.0/24",
    ]);
    let token_file = s.bed.dir.path().join("http-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let token_arg = token_file.to_str().expect("utf-8").to_string();
    s.restart_daemon_with(
        &["--http", ADDR, "--http-token-file", &token_arg],
        "daemon-http.log",
    );
    s.bed.spawn(&s.bed.roam, &["iperf3", "-s", "-p", "5201"]);

    let browser = Browser::start(&s.bed, &s.bed.gw);
    browser.goto(&format!("http://{ADDR}/"));
    assert!(
        browser.wait_for(
            Duration::from_secs(10),
            r#"document.querySelector('#roamers tr[data-name="laptop"]') !== null
               && document.querySelector('#forwards tr[data-spec="22/tcp"]') !== null
               && document.querySelector('#forwards tr[data-spec="60000-60010/udp"]').textContent.includes('198.51.100.0/24')"#
        ),
        "the page shows no roamer or forward: {}",
        browser.eval("document.body.innerText")
    );
    assert!(
        browser.wait_for(
            Duration::from_secs(10),
            r#"document.querySelector('#roamers tr[data-name="laptop"]').dataset.health === 'up'"#
        ),
        "the roamer is not up on the page: {}",
        browser.eval("document.body.innerText")
    );
    assert_eq!(
        browser.eval(r#"document.querySelector('#events li[data-kind="started"]') !== null"#),
        true,
        "no start event"
    );

    // Traffic through a forward: the chart (one sample every 5 s) rises above 5 Mbit/s.
    let out = s.bed.cli.clone();
    let traffic = std::thread::spawn(move || {
        out.output(&[
            "iperf3",
            "-c",
            FLOATING_IP,
            "-p",
            "5201",
            "-t",
            "20",
            "-b",
            "40M",
        ])
    });
    assert!(
        browser.wait_for(
            Duration::from_secs(30),
            "Number(document.getElementById('chart').dataset.max) > 5e6"
        ),
        "the chart did not move: {}",
        browser.eval("document.getElementById('chart').outerHTML")
    );
    let screenshot = browser.screenshot();
    let _ = traffic.join();
    let path = std::env::var("ROAMGW_SCREENSHOT")
        .unwrap_or_else(|_| format!("{}/status-page.png", env!("CARGO_TARGET_TMPDIR")));
    std::fs::write(&path, &screenshot).expect("screenshot");
    assert!(screenshot.starts_with(b"\x89PNG"), "not a PNG");

    // Without the token: no remove buttons, and the API refuses.
    assert_eq!(
        browser.eval("document.querySelectorAll('button.remove').length"),
        0
    );
    let body = "{spec: '22/tcp'}";
    let json = "'Content-Type': 'application/json'";
    assert_eq!(
        post_from_page(
            &browser,
            "/api/forwards/remove",
            &format!("{{{json}}}"),
            body
        ),
        401
    );
    assert_eq!(
        post_from_page(
            &browser,
            "/api/forwards/remove",
            &format!("{{{json}, 'Authorization': 'Bearer wrong-token-0123456789'}}"),
            body
        ),
        401
    );
    // The right token from another origin (a page elsewhere, or a DNS name for 127.0.0.1).
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let spec_body = r#"{"spec":"22/tcp"}"#;
    assert_eq!(
        post_with_curl(&s, &[&bearer, "Origin: http://evil.example"], spec_body),
        "403"
    );
    assert_eq!(
        post_with_curl(&s, &[&bearer, "Host: evil.example:9587"], spec_body),
        "421"
    );
    assert!(s.ok(&["list"]).contains("22/tcp"), "refused, yet changed");

    // With the token, entered into the page: remove the forward with its button.
    browser.type_into("#token", TOKEN);
    browser.click("#token-save");
    assert!(
        browser.wait_for(
            Duration::from_secs(10),
            r#"document.querySelector('button.remove[data-spec="22/tcp"]') !== null"#
        ),
        "no remove button with the token"
    );
    browser.click(r#"button.remove[data-spec="22/tcp"]"#);
    assert!(
        browser.wait_for(
            Duration::from_secs(10),
            r#"document.querySelector('#forwards tr[data-spec="22/tcp"]') === null"#
        ),
        "the forward is still on the page: {}",
        browser.eval("document.getElementById('message').textContent")
    );
    let list = s.ok(&["list"]);
    assert!(!list.contains("22/tcp"), "still listed:\n{list}");
    assert!(
        list.contains("5201/tcp"),
        "the other forwards went too:\n{list}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || s
            .banner(&format!("{FLOATING_IP}:22"))
            .is_none()),
        "the removed forward still answers"
    );
    assert!(
        browser.wait_for(
            Duration::from_secs(10),
            r#"document.querySelector('#events li[data-kind="changed"]') !== null"#
        ),
        "no change event"
    );
    // And add it back from the form.
    browser.type_into("#add-spec", "22");
    browser.click("#add button");
    assert!(
        browser.wait_for(
            Duration::from_secs(10),
            r#"document.querySelector('#forwards tr[data-spec="22/tcp"]') !== null"#
        ),
        "the forward was not added: {}",
        browser.eval("document.getElementById('message').textContent")
    );
    assert!(s.ok(&["list"]).contains("22/tcp"));
    drop(browser);

    // A public address is refused unless asked for in so many words: the page shows where
    // every laptop is.
    let out = s.bed.roamgw(
        &roamgw_e2e::binary("roamgw"),
        &["run", "--http", "0.0.0.0:9587"],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("--http-public"),
        "{said}"
    );

    // Read-only by default: without --http-token-file even the token is refused.
    s.restart_daemon_with(&["--http", ADDR], "daemon-readonly.log");
    assert_eq!(post_with_curl(&s, &[&bearer], spec_body), "403");
    // The events from before the restart are still there, after the new start.
    let status = s
        .bed
        .gw
        .output(&["curl", "-s", &format!("http://{ADDR}/api/status")]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let kinds: Vec<&str> = status["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"started"), "{kinds:?}");
    assert!(kinds.contains(&"changed"), "{kinds:?}");
    assert!(
        kinds.iter().filter(|k| **k == "started").count() >= 2,
        "{kinds:?}"
    );
    assert!(s.ok(&["list"]).contains("22/tcp"));
    s.daemon = None; // the testbed stops the processes it spawned
}
