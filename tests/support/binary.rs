//! The real `sekisho` binary as a child process (`sekisho serve --config FILE` on a free
//! loopback port), for end-to-end tests of hostile input; ended with SIGTERM on drop (so its
//! children drain with it), SIGKILL after 15 s.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{client, eventually, settled};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");

/// A running `sekisho serve`.
pub struct Binary {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// An admin key of the configuration (for `/readyz` and `/metrics`), if it has keys.
    pub admin: Option<String>,
    _dir: tempfile::TempDir,
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Binary {
    /// Start `sekisho serve` with `toml` (a `[server]` table is written first; `server` holds
    /// its extra lines) and wait until every upstream is up and listed, and Redis, when
    /// configured, answers. `admin` is an admin key among `server`'s `api_keys`, if any.
    pub async fn start(server: &str, toml: &str, admin: Option<&str>) -> Binary {
        let gw = Binary::spawn(server, toml, admin, &[]);
        let redis = toml.contains("[redis]");
        eventually("sekisho ready, its upstreams up and listed", Duration::from_secs(30), async || {
            let ready = settled(&gw.base, admin).await?;
            let all_up = ready["upstreams"].as_object().is_some_and(|u| u.values().all(|u| u["status"] == "up"));
            if all_up && (!redis || ready["redis"] == "up") { Ok(()) } else { Err(ready.to_string()) }
        })
        .await;
        gw
    }

    /// Start `sekisho serve` as [`Binary::start`] does, with `env` added to its environment,
    /// without waiting for anything.
    pub fn spawn(server: &str, toml: &str, admin: Option<&str>, env: &[(&str, &str)]) -> Binary {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("sekisho.toml");
        let text = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{server}\n[log]\nlevel = \"warn\"\n{toml}");
        std::fs::write(&cfg, text).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&cfg)
            .env_remove("REDIS_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            // SEKISHO_TEST_STDERR=1 shows the gateway's logs (e.g. with `--no-capture`).
            .stderr(if std::env::var_os("SEKISHO_TEST_STDERR").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Binary { child, addr, base: format!("http://{addr}"), admin: admin.map(str::to_string), _dir: dir }
    }

    /// Start `sekisho serve` as [`Binary::spawn`] does and wait until `/healthz` answers,
    /// probed on raw connections that close with their answer: a pooled client's connection
    /// would stay open (and count against `max_connections`) until its task runs.
    pub async fn serving(server: &str, toml: &str) -> Binary {
        let gw = Binary::spawn(server, toml, None, &[]);
        eventually("sekisho serving", Duration::from_secs(30), async || {
            let Ok(mut s) = TcpStream::connect(gw.addr) else { return Err("not listening yet".to_string()) };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            if answer.starts_with(b"HTTP/1.1 200") {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&answer).into_owned())
            }
        })
        .await;
        gw
    }

    /// Peak resident memory of the gateway process so far (VmHWM), in bytes.
    pub fn peak_memory(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB");
        kib.parse::<u64>().unwrap() * 1024
    }

    /// `/readyz` as the admin sees it; `Null` while it does not answer.
    pub async fn readyz(&self) -> serde_json::Value {
        let mut req = client().get(self.url("/readyz"));
        if let Some(key) = &self.admin {
            req = req.bearer_auth(key);
        }
        match req.send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `/metrics` line that starts with `series`, if any (`None` also while it does not
    /// answer).
    pub async fn metric(&self, series: &str) -> Option<String> {
        let mut req = client().get(self.url("/metrics"));
        if let Some(key) = &self.admin {
            req = req.bearer_auth(key);
        }
        let text = req.send().await.ok()?.text().await.ok()?;
        text.lines().find(|l| l.starts_with(series)).map(str::to_string)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
