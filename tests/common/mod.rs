//! Shared harness for the end-to-end tests: the real gateway (`app::run`) on an ephemeral
//! loopback port, the harness's echo upstream as a real child process or HTTP server, and a
//! small MCP-over-HTTP client.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

pub const MODERN: &str = "2026-07-28";

/// The admin key the harness adds to configurations whose keys include no admin.
pub const HARNESS_KEY: &str = "harness-admin-0123456789abcdef";

/// The echo upstream binary, built once per test run.
pub fn echo_upstream() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "sekisho-bench", "--bin", "echo-upstream"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building echo-upstream failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        target.join("debug").join("echo-upstream")
    })
    .clone()
}

/// Poll `probe` every 25 ms until it returns `Ok`, and return that value; after `limit`, fail
/// naming `what` with the state the probe last reported (its `Err`). Tests wait with this on
/// a condition they can observe instead of sleeping for a guessed time.
pub async fn eventually<T, S: std::fmt::Display>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, S>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "gave up after {limit:?} waiting for: {what}; last seen: {last}"
                )
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The gateway at `base` has settled when `/readyz` shows no upstream starting and a list
/// result no longer names any upstream that is up in `io.sekisho/unavailableUpstreams` (the
/// catalog has listed it). `bearer` must be an admin key when keys are configured (`/readyz`
/// shows upstreams only to admins). `Ok`: the `/readyz` body; `Err`: what is still missing.
pub async fn settled(base: &str, bearer: Option<&str>) -> Result<Value, String> {
    let mut req = client().get(format!("{base}/readyz"));
    if let Some(key) = bearer {
        req = req.bearer_auth(key);
    }
    let ready: Value = match req.send().await {
        Ok(r) => r.json().await.map_err(|e| e.to_string())?,
        Err(e) => return Err(e.to_string()),
    };
    let upstreams = ready["upstreams"].as_object().ok_or_else(|| ready.to_string())?;
    if upstreams.values().any(|u| u["status"] == "starting") {
        return Err(format!("an upstream is starting: {ready}"));
    }
    let list = modern_as(&format!("{base}/mcp"), bearer, 0, "tools/list", json!({})).await;
    let unavailable = list.body.pointer("/result/_meta/io.sekisho~1unavailableUpstreams").cloned().unwrap_or(json!([]));
    let unlisted: Vec<&String> = upstreams
        .iter()
        .filter(|(name, u)| u["status"] == "up" && unavailable.as_array().is_some_and(|a| a.contains(&json!(name))))
        .map(|(name, _)| name)
        .collect();
    match (list.status, unlisted.is_empty()) {
        (200, true) => Ok(ready),
        (200, false) => Err(format!("up but not listed yet: {unlisted:?}")),
        _ => Err(format!("tools/list answered {}: {}", list.status, list.raw)),
    }
}

/// A TOML table for a stdio echo upstream.
pub fn stdio_upstream(name: &str, era: &str) -> String {
    format!(
        "[upstreams.{name}]\ncommand = {:?}\nargs = [\"stdio\", \"--era\", \"{era}\"]\nstartup_timeout = \"20s\"\n",
        echo_upstream().display().to_string()
    )
}

/// An echo upstream serving HTTP; killed on drop.
pub struct HttpUpstream {
    pub url: String,
    child: tokio::process::Child,
}

impl HttpUpstream {
    pub async fn start(era: &str) -> HttpUpstream {
        HttpUpstream::start_with(&["--era", era]).await
    }

    /// An HTTP echo upstream with more `echo-upstream http` arguments (`--bearer TOKEN` …).
    pub async fn start_with(args: &[&str]) -> HttpUpstream {
        let mut child = tokio::process::Command::new(echo_upstream())
            .args(["http", "--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("echo-upstream starts");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
        let addr = line.strip_prefix("listening on ").expect("address line").to_string();
        HttpUpstream { url: format!("http://{addr}/mcp"), child }
    }

    pub fn table(&self, name: &str) -> String {
        format!("[upstreams.{name}]\nurl = {:?}\n", self.url)
    }
}

/// A running gateway; stops (and drains) on drop of the shutdown sender.
pub struct Gateway {
    pub addr: std::net::SocketAddr,
    pub base: String,
    /// An admin key of `[server] api_keys` (the configuration's first, else the harness's
    /// own), for the harness's own requests; `None` without keys.
    pub bearer: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Gateway {
    /// Start the gateway with `toml` (its `[server] listen` is replaced by an ephemeral port)
    /// and wait until every upstream has settled. When `toml` has API keys but no admin key,
    /// the harness adds its own admin key (`name = "harness"`) to watch `/readyz`.
    pub async fn start(toml: &str) -> Gateway {
        let mut config = sekisho::config::Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}"));
        let keys = &mut config.server.api_keys;
        let bearer = match keys.iter().find(|k| k.is_admin()) {
            _ if keys.is_empty() => None,
            Some(admin) => Some(admin.secret().to_string()),
            None => {
                let mut own = sekisho::front::config::ApiKey::plain(HARNESS_KEY);
                own.name = Some("harness".into());
                own.role = sekisho::front::config::Role::Admin;
                own.resolve(config.admission.default_priority, None);
                keys.push(own);
                Some(HARNESS_KEY.to_string())
            }
        };
        if std::env::var_os("RUST_LOG").is_some() {
            sekisho::observe::logging::init(&config.log);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let upstreams = config.upstreams.len();
        let task = tokio::spawn(async move {
            sekisho::app::run(&config, listener, async move {
                let _ = rx.await;
            })
            .await
        });
        let gw = Gateway { addr, base: format!("http://{addr}"), bearer, stop: Some(stop), task: Some(task) };
        if upstreams > 0 {
            gw.wait_ready(Duration::from_secs(30)).await;
        }
        gw
    }

    /// Wait until no upstream is starting (each is up, or down after a failed start) and the
    /// catalog has listed every upstream that is up.
    pub async fn wait_ready(&self, limit: Duration) {
        eventually("every upstream settled and the live ones listed", limit, async || {
            settled(&self.base, self.bearer.as_deref()).await
        })
        .await;
    }

    /// Ask the gateway to drain and wait for it to stop.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `/readyz` as an admin sees it (with the harness's admin key when keys are configured).
    pub async fn readyz(&self) -> Value {
        let mut req = client().get(self.url("/readyz"));
        if let Some(key) = &self.bearer {
            req = req.bearer_auth(key);
        }
        req.send().await.unwrap().json().await.unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    // 60 s: a hang still fails the test, and a slow answer on a loaded two-core machine does not.
    C.get_or_init(|| reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()).clone()
}

/// An HTTP answer: status, headers, and the JSON-RPC message (the last SSE event for streams).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub events: Vec<Value>,
    pub raw: String,
}

impl Answer {
    pub fn error_code(&self) -> Option<i64> {
        self.body.pointer("/error/code").and_then(Value::as_i64)
    }
}

pub async fn read(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let sse = headers.get("content-type").is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    let raw = resp.text().await.unwrap();
    let mut events: Vec<Value> = Vec::new();
    if sse {
        for block in raw.split("\n\n") {
            let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            if !data.is_empty() {
                events.push(serde_json::from_str(&data.join("\n")).unwrap());
            }
        }
    }
    let body = if sse {
        events.last().cloned().unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&raw).unwrap_or(Value::Null)
    };
    Answer { status, headers, body, events, raw }
}

/// A legacy session on one endpoint.
pub struct Legacy {
    pub endpoint: String,
    pub session: String,
    pub version: String,
}

impl Legacy {
    pub async fn open(endpoint: &str, version: &str) -> Legacy {
        Legacy::open_declaring(endpoint, version, json!({})).await
    }

    /// Open a session whose client declares `capabilities` (sampling, roots, …).
    pub async fn open_declaring(endpoint: &str, version: &str, capabilities: Value) -> Legacy {
        let a = read(
            client()
                .post(endpoint)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                    "protocolVersion": version, "capabilities": capabilities, "clientInfo": {"name":"test","version":"0"}}}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.raw);
        let session = a.headers.get("mcp-session-id").expect("session id").to_str().unwrap().to_string();
        let version = a.body["result"]["protocolVersion"].as_str().unwrap().to_string();
        let s = Legacy { endpoint: endpoint.to_string(), session, version };
        let n = s.post_raw(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
        assert_eq!(n.status, 202);
        s
    }

    /// Open the session's standalone GET stream (its events as raw SSE bytes); asserts 200.
    pub async fn listen(&self) -> impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin + use<> {
        let get = client()
            .get(&self.endpoint)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.session)
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 200);
        get.bytes_stream()
    }

    pub async fn post_raw(&self, body: Value) -> Answer {
        read(
            client()
                .post(&self.endpoint)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &self.session)
                .header("mcp-protocol-version", &self.version)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn request(&self, id: i64, method: &str, params: Value) -> Answer {
        self.post_raw(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})).await
    }
}

/// A modern (2026-07-28) request with the envelope and the routing headers.
pub async fn modern(endpoint: &str, id: i64, method: &str, params: Value) -> Answer {
    modern_as(endpoint, None, id, method, params).await
}

/// [`modern`] with an optional bearer key.
pub async fn modern_as(endpoint: &str, bearer: Option<&str>, id: i64, method: &str, mut params: Value) -> Answer {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name":"test","version":"0"},
    })
    .as_object()
    .unwrap()
    .clone()
    .into_iter()
    .chain(params.get("_meta").and_then(Value::as_object).cloned().unwrap_or_default())
    .collect::<serde_json::Map<_, _>>()
    .into();
    let mut req = client()
        .post(endpoint)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", method);
    let name = match method {
        "tools/call" | "prompts/get" => params["name"].as_str(),
        "resources/read" => params["uri"].as_str(),
        "tasks/get" | "tasks/update" | "tasks/cancel" => params["taskId"].as_str(),
        _ => None,
    };
    if let Some(name) = name {
        req = req.header("mcp-name", name);
    }
    if let Some(key) = bearer {
        req = req.bearer_auth(key);
    }
    read(req.json(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})).send().await.unwrap()).await
}

/// Tool names of a tools/list answer.
pub fn tool_names(a: &Answer) -> Vec<String> {
    a.body["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

/// The text of the first content item of a tools/call answer.
pub fn text(a: &Answer) -> String {
    a.body
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no text in {}", a.raw))
        .to_string()
}

/// The next SSE event on `stream` that `want` accepts, within `limit` (`None`: none came, or
/// the stream ended).
pub async fn next_event(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    limit: Duration,
    want: impl Fn(&Value) -> bool,
) -> Option<Value> {
    use futures::StreamExt;
    tokio::time::timeout(limit, async {
        loop {
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                if let Ok(event) = serde_json::from_str::<Value>(&data.join("\n"))
                    && want(&event)
                {
                    return Some(event);
                }
            }
            let chunk = stream.next().await?.ok()?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .ok()
    .flatten()
}

/// A redis-server of our own on a free port, so a test can stop and restart it (the shared one
/// on 6379 stays up for everyone else). Stopped on drop.
pub struct OwnRedis {
    pub port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    /// Start it on `port` and wait until it accepts connections.
    pub async fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let redis = OwnRedis { port, child };
        eventually("redis-server accepting connections", Duration::from_secs(10), async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())
        })
        .await;
        redis
    }

    /// Stop it (as a crash would: the data is gone).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How many keys match `pattern`.
    pub fn keys(&self, pattern: &str) -> usize {
        String::from_utf8_lossy(&self.cli(&["--scan", "--pattern", pattern])).lines().count()
    }

    /// Whether `key` exists.
    pub fn has(&self, key: &str) -> bool {
        String::from_utf8_lossy(&self.cli(&["EXISTS", key])).trim() == "1"
    }

    fn cli(&self, args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("redis-cli").arg("-p").arg(self.port.to_string()).args(args).output();
        out.expect("redis-cli on PATH").stdout
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The real `sekisho serve` binary as a child process, with its configuration file and its
/// stderr (the logs) in a temporary folder of its own. Killed on drop.
pub struct Served {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    log: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Start `sekisho serve` on a free port with `toml` (everything but `[server] listen`, which
    /// this adds; `toml` must not open with a `[server]` table of its own, but may carry
    /// `server_extra` for it) and wait until `/healthz` answers.
    pub async fn start(server_extra: &str, toml: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.path().join("sekisho.toml");
        std::fs::write(&config, format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{server_extra}\n{toml}")).unwrap();
        let log = dir.path().join("stderr.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sekisho"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        eventually("the gateway serving", Duration::from_secs(30), async || {
            match client().get(format!("{base}/healthz")).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        Served { base, log, child, _dir: dir }
    }

    /// Send SIGTERM and wait for the process to drain and exit; its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        use nix::sys::signal::{Signal, kill};
        let _ = kill(nix::unistd::Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the gateway exits within 30 s of SIGTERM")
    }

    /// Its configuration file.
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("sekisho.toml")
    }

    /// Wait (at most `limit`) for the process to exit by itself; its exit status.
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the gateway did not exit within {limit:?}"))
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of the `sekisho` binary did.
pub struct CliRun {
    pub ok: bool,
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub out: String,
    pub err: String,
}

/// Run the `sekisho` binary with `args` and `env`, inheriting none of the store's or the admin
/// key's variables from the test's environment. Async, so gateways running in the test's
/// runtime keep answering meanwhile.
pub async fn sekisho_cli(args: &[&str], env: &[(&str, &str)]) -> CliRun {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sekisho"))
        .args(args)
        .env_remove("SEKISHO_STORE__POSTGRES_URL")
        .env_remove("SEKISHO_STORE__KEY_PEPPER")
        .env_remove("SEKISHO_STORE__SECRET_KEY")
        .env_remove("SEKISHO_ADMIN_KEY")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    CliRun {
        ok: out.status.success(),
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A legacy session of `bearer` declaring `capabilities`; returns its id.
pub async fn open_legacy_session(url: &str, bearer: &str, capabilities: Value) -> String {
    let a = read(
        client()
            .post(url)
            .bearer_auth(bearer)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name":"t","version":"0"}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    a.headers["mcp-session-id"].to_str().unwrap().to_string()
}

/// Initialize a legacy session as `bearer` with `capabilities`; returns its id.
pub async fn open_session(url: &str, bearer: &str, capabilities: Value) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "t", "version": "0"}}});
    let a = legacy_post(url, Some(bearer), None, &init).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    let session = a.headers["mcp-session-id"].to_str().unwrap().to_string();
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(legacy_post(url, Some(bearer), Some(&session), &done).await.status, 202);
    session
}

/// POST one message as a legacy client: optional bearer key and session id.
pub async fn legacy_post(url: &str, bearer: Option<&str>, session: Option<&str>, body: &Value) -> Answer {
    let mut req = client()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(key) = bearer {
        req = req.bearer_auth(key);
    }
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    read(req.json(body).send().await.unwrap()).await
}
