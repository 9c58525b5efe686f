//! What sits between the gateway and its stores and upstreams is hostile (design.md §8), end to
//! end against the real binary: a Redis cache entry or idempotency record altered or moved by
//! hand is ignored and counted, never served; `rediss://` reaches a real TLS Redis that
//! presents a certificate of a CA given by `ca_file`; an HTTPS upstream whose certificate comes
//! from a private CA is refused unless its `ca_file` (or the system store) trusts that CA.

#[path = "support/binary.rs"]
mod binary;
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use binary::Binary;
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "test-entry-secret-0123456789abcdef";

fn prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("sekisho-tls-test-{}-{}:", std::process::id(), nanos % 1_000_000_007)
}

/// A modern `tools/call` of `up__echo` with `message`, optionally under an idempotency key.
async fn echo(gw: &Binary, message: &str, idem: Option<&str>) -> Answer {
    let mut params = json!({"name": "up__echo", "arguments": {"message": message}});
    if let Some(k) = idem {
        params["_meta"] = json!({"io.sekisho/idempotencyKey": k});
    }
    modern(&gw.url("/mcp"), 1, "tools/call", params).await
}

fn cache_status(a: &Answer) -> String {
    a.body.pointer("/result/_meta/io.sekisho~1cache/status").and_then(Value::as_str).unwrap_or("none").to_string()
}

/// The one key of `now` that is not in `before`.
fn new_key(now: &[String], before: &[String]) -> String {
    let new: Vec<&String> = now.iter().filter(|k| !before.contains(k)).collect();
    assert_eq!(new.len(), 1, "one new key: {new:?}");
    new[0].clone()
}

/// Wait until a result cached by `one` is an L2 hit on `two` (fresh messages each time): the
/// replicas then agree on the cache generation, which each replica's first catalog bumps and
/// which replicas re-read at most a second later. Also shows that genuine entries are served.
async fn shared_l2(one: &Binary, two: &Binary) {
    let mut n = 0;
    eventually("a result cached by one replica is an L2 hit on the other", Duration::from_secs(15), async || {
        n += 1;
        let message = format!("control-{n}");
        echo(one, &message, None).await;
        let a = echo(two, &message, None).await;
        let level = a.body.pointer("/result/_meta/io.sekisho~1cache/level").and_then(Value::as_str).unwrap_or("none");
        if (cache_status(&a).as_str(), level) == ("hit", "l2") { Ok(()) } else { Err(a.raw) }
    })
    .await;
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(conn).await.unwrap();
    // Coalescing leases come and go; only entries matter here.
    keys.retain(|k| !k.ends_with(":lease"));
    keys.sort();
    keys
}

/// Replace every `from` in the value stored at `key` with `to` (same length), keeping the rest
/// (and the MAC, if any) as it is: what someone with write access to Redis but without the
/// entry secret can do.
async fn alter(conn: &mut redis::aio::MultiplexedConnection, key: &str, from: &str, to: &str) {
    let raw: Vec<u8> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains(from), "{from} in the stored entry");
    let altered = raw
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .map(|at| [&raw[..at], to.as_bytes(), &raw[at + from.len()..]].concat())
        .unwrap();
    let _: () = redis::cmd("SET").arg(key).arg(altered).arg("KEEPTTL").query_async(conn).await.unwrap();
}

// Old code: the second gateway answered the altered "PARIS" as an L2 hit, the moved entry
// answered "TOKYO" for BERLIN, and the altered idempotency record replayed "EVIL"; there was
// no `sekisho_cache_l2_rejected_total` series.
#[tokio::test]
async fn altered_or_moved_redis_entries_are_ignored_and_counted() {
    let upstream = HttpUpstream::start("legacy").await;
    let prefix = prefix();
    let toml = format!(
        "[redis]\nurl = \"redis://127.0.0.1:6379\"\nprefix = {prefix:?}\ntimeout = \"2s\"\nentry_secret = {SECRET:?}\n\
         [idempotency]\nwait = \"1s\"\n{}trusted = true\n",
        upstream.table("up")
    );
    let mut conn = redis_conn("redis://127.0.0.1:6379").await;
    // Both replicas start first: a starting replica's first catalog bumps its upstreams' cache
    // generation, which would hide the entries below for the wrong reason.
    let (one, two) = (Binary::start("", &toml, None).await, Binary::start("", &toml, None).await);
    shared_l2(&one, &two).await;
    // A cached result, altered in place.
    let c = format!("{prefix}c:*");
    let before = keys(&mut conn, &c).await;
    assert_eq!(cache_status(&echo(&one, "TOKYO", None).await), "miss");
    let tokyo = new_key(&keys(&mut conn, &c).await, &before);
    assert_eq!(cache_status(&echo(&one, "BERLIN", None).await), "miss");
    let berlin = new_key(&keys(&mut conn, &c).await, &[&before[..], std::slice::from_ref(&tokyo)].concat());
    // A genuine entry moved to another key: BERLIN's key now holds TOKYO's entry.
    let genuine: Vec<u8> = redis::cmd("GET").arg(&tokyo).query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("SET").arg(&berlin).arg(genuine).arg("PX").arg(60_000).query_async(&mut conn).await.unwrap();
    alter(&mut conn, &tokyo, "TOKYO", "PARIS").await;
    // An idempotent call's record, altered.
    assert_eq!(text(&echo(&one, "IDEM", Some("k-1")).await), "IDEM");
    let records = keys(&mut conn, &format!("{prefix}idem:*")).await;
    assert_eq!(records.len(), 1, "{records:?}");
    alter(&mut conn, &records[0], "IDEM", "EVIL").await;

    // The second gateway has nothing in L1: everything it serves comes from Redis or upstream.
    let a = echo(&two, "TOKYO", None).await;
    assert_eq!((text(&a).as_str(), cache_status(&a).as_str()), ("TOKYO", "miss"), "altered entry not served");
    let b = echo(&two, "BERLIN", None).await;
    assert_eq!((text(&b).as_str(), cache_status(&b).as_str()), ("BERLIN", "miss"), "moved entry not served");
    let c = echo(&two, "IDEM", Some("k-1")).await;
    assert!(!c.raw.contains("EVIL"), "altered record not replayed: {}", c.raw);
    let rejected = two.metric("sekisho_cache_l2_rejected_total{reason=\"mac\"}").await.expect("the series");
    let count: u64 = rejected.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3, "each refused read counted: {rejected}");
    // The first gateway's own L1 still serves the genuine result.
    assert_eq!(text(&echo(&one, "TOKYO", None).await), "TOKYO");
}

// ---------------------------------------------------------------------------------------------
// Certificates and TLS servers made by the test.

/// A private CA and a certificate it signed for `localhost` and 127.0.0.1, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    leaf_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "sekisho test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), leaf_key.serialize_pem()).unwrap();
        Pki { leaf_der: leaf.der().to_vec(), key_der: leaf_key.serialize_der(), dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server` with only a TLS port, presenting `pki`'s certificate; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    async fn start(pki: &Pki) -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &pki.path("server.pem"), "--tls-key-file", &pki.path("server.key")])
            .args(["--tls-ca-cert-file", &pki.path("ca.pem"), "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        eventually("the TLS redis-server listens", Duration::from_secs(10), async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map(drop)
        })
        .await;
        TlsRedis { child, port, _dir: dir }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS front for `target` (a plain TCP address): accepts TLS with `pki`'s certificate and
/// relays the bytes. Returns its port; stops when the test's runtime ends.
async fn tls_proxy(pki: &Pki, target: std::net::SocketAddr) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(pki.leaf_der.clone())],
            rustls::pki_types::PrivateKeyDer::try_from(pki.key_der.clone()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

// Old code: `rediss://` URLs failed validation (the redis crate was built without TLS) and
// `ca_file` was an unknown key, so the gateway did not start.
#[tokio::test]
async fn rediss_reaches_a_tls_redis_trusted_through_ca_file() {
    let pki = Pki::new();
    let server = TlsRedis::start(&pki).await;
    let upstream = HttpUpstream::start("legacy").await;
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let prefix = prefix();
    let toml = format!(
        "[redis]\nurl = {url:?}\nprefix = {prefix:?}\ntimeout = \"2s\"\nentry_secret = {SECRET:?}\nca_file = {:?}\n{}trusted = true\n",
        pki.path("ca.pem"),
        upstream.table("up")
    );
    // Both replicas start first: a starting replica's first catalog bumps its upstreams' cache
    // generation, which would hide what was stored before.
    let (one, two) = (Binary::start("", &toml, None).await, Binary::start("", &toml, None).await);
    // Results cached by one replica are L2 hits on the other, through the TLS Redis.
    shared_l2(&one, &two).await;
    // And they are there (read back over TLS with the same CA).
    let certs =
        redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(pki.path("ca.pem")).unwrap()) };
    let mut conn =
        redis::Client::build_with_tls(url.as_str(), certs).unwrap().get_multiplexed_async_connection().await.unwrap();
    assert!(!keys(&mut conn, &format!("{prefix}c:*")).await.is_empty());
    // Without the CA the server's certificate is not trusted: Redis never comes up.
    let untrusted = toml.replace(&format!("ca_file = {:?}\n", pki.path("ca.pem")), "");
    let three = Binary::spawn("", &untrusted, None, &[]);
    eventually("a refused TLS connection to Redis counted", Duration::from_secs(30), async || {
        match three.metric("sekisho_redis_errors_total{op=\"connect\"}").await {
            Some(line) if !line.ends_with(" 0") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let ready = three.readyz().await;
    assert_eq!(ready["redis"], "degraded", "an untrusted certificate is refused: {ready}");
}

// Old code: `ca_file` was an unknown key (the gateway did not start), and the webpki roots
// compiled in ignored the system store, so the `SSL_CERT_FILE` case stayed down too.
#[tokio::test]
async fn an_https_upstream_of_a_private_ca_needs_its_ca_file() {
    let pki = Pki::new();
    let upstream = HttpUpstream::start("legacy").await;
    let plain: std::net::SocketAddr =
        upstream.url.trim_start_matches("http://").trim_end_matches("/mcp").parse().unwrap();
    let port = tls_proxy(&pki, plain).await;
    let table = format!("[upstreams.up]\nurl = \"https://127.0.0.1:{port}/mcp\"\nstartup_timeout = \"3s\"\n");
    // Trusted through ca_file.
    let with_ca = Binary::start("", &format!("{table}ca_file = {:?}\n", pki.path("ca.pem")), None).await;
    assert_eq!(text(&echo(&with_ca, "private CA", None).await), "private CA");
    // Trusted through the system store (rustls-native-certs reads SSL_CERT_FILE).
    let system = Binary::spawn("", &table, None, &[("SSL_CERT_FILE", &pki.path("ca.pem"))]);
    eventually("the upstream up through the system store", Duration::from_secs(30), async || {
        let ready = system.readyz().await;
        if ready["upstreams"]["up"]["status"] == "up" { Ok(()) } else { Err(ready.to_string()) }
    })
    .await;
    // Not trusted: the upstream stays down, and says why.
    let without = Binary::spawn("", &table, None, &[]);
    let ready = eventually("the upstream down", Duration::from_secs(30), async || {
        let ready = without.readyz().await;
        if ready["upstreams"]["up"]["status"] == "down" { Ok(ready) } else { Err(ready.to_string()) }
    })
    .await;
    let reason = ready["upstreams"]["up"]["reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(reason.contains("certificate") || reason.contains("tls"), "{ready}");
}
