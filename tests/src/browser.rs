//! Headless Chromium (Debian's `chromium` and `chromium-driver`) in a test namespace, driven
//! over WebDriver with fantoccini. chromedriver listens on the namespace's loopback, so the
//! WebDriver client lives on a thread that joined the namespace: every call is sent there.

use std::future::Future;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::{on_path, wait_until, Ns, Testbed};

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, Client) + Send>;

pub struct Browser {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

const DRIVER_PORT: u16 = 9515;

impl Browser {
    /// chromedriver in `ns`, and a Chromium session (1280x900) through it.
    pub fn start(bed: &Testbed, ns: &Ns) -> Browser {
        for tool in ["chromedriver", "chromium"] {
            assert!(
                on_path(tool),
                "{tool} is missing: apt-get install --no-install-recommends chromium chromium-driver (scripts/install-deps)"
            );
        }
        ns.run(&["ip", "link", "set", "lo", "up"]);
        bed.spawn_logged(
            ns,
            &[
                "chromedriver",
                &format!("--port={DRIVER_PORT}"),
                "--allowed-ips=127.0.0.1",
            ],
            "chromedriver.log",
        );
        let probe = ns.clone();
        assert!(
            wait_until(Duration::from_secs(20), || probe
                .connect(
                    &format!("127.0.0.1:{DRIVER_PORT}"),
                    Duration::from_millis(200)
                )
                .is_ok()),
            "chromedriver did not listen:\n{}",
            bed.log("chromedriver.log")
        );
        let profile = bed.dir.path().join("chromium-profile");
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel::<Result<(), String>>();
        let path = format!("/var/run/netns/{}", ns.name);
        let thread = std::thread::spawn(move || {
            let joined = std::fs::File::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| e.to_string())
                });
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let (runtime, client) = match (joined, runtime) {
                (Ok(()), Ok(runtime)) => {
                    let client = runtime.block_on(connect(&profile));
                    match client {
                        Ok(client) => (runtime, client),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                }
                (Err(e), _) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                (_, Err(e)) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            for job in inbox {
                job(&runtime, client.clone());
            }
            let _ = runtime.block_on(client.close());
        });
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("no Chromium session: {e}\n{}", bed.log("chromedriver.log")),
            Err(_) => panic!("the browser thread died:\n{}", bed.log("chromedriver.log")),
        }
        Browser {
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Runs `f` with the session on the namespace's thread and returns its result.
    fn run<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |runtime, client| {
            let _ = tx.send(runtime.block_on(f(client)));
        });
        self.jobs
            .as_ref()
            .expect("a running browser")
            .send(job)
            .expect("the browser thread is gone");
        rx.recv().expect("the browser thread is gone")
    }

    pub fn goto(&self, url: &str) {
        let url = url.to_string();
        self.run(move |c| async move { c.goto(&url).await })
            .unwrap_or_else(|e| panic!("goto: {e}"));
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&self, expression: &str) -> Value {
        let script = format!("return ({expression});");
        self.run(move |c| async move { c.execute(&script, vec![]).await })
            .unwrap_or_else(|e| panic!("script: {e}"))
    }

    pub fn click(&self, css: &str) {
        let css = css.to_string();
        self.run(move |c| async move { c.find(Locator::Css(&css)).await?.click().await })
            .unwrap_or_else(|e| panic!("click: {e}"));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let (css, text) = (css.to_string(), text.to_string());
        self.run(move |c| async move { c.find(Locator::Css(&css)).await?.send_keys(&text).await })
            .unwrap_or_else(|e| panic!("type: {e}"));
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        self.run(|c| async move { c.screenshot().await })
            .unwrap_or_else(|e| panic!("screenshot: {e}"))
    }

    /// Waits up to `deadline` for `expression` to be true in the page.
    pub fn wait_for(&self, deadline: Duration, expression: &str) -> bool {
        wait_until(deadline, || self.eval(expression) == Value::Bool(true))
    }
}

async fn connect(profile: &std::path::Path) -> Result<Client, String> {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new",
                // As root, and in a namespace without a user namespace for the sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{DRIVER_PORT}"))
        .await
        .map_err(|e| e.to_string())
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop, which closes the session (Chromium quits).
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
