//! Real PostgreSQL for tests (127.0.0.1:5432, user postgres, trust auth): a database of the
//! test's own (`sekisho_test_<random>`, dropped at the end), and a TCP proxy in front of the
//! server that counts the statements clients send and can be taken down and up again.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The server the tests use.
pub const SERVER: &str = "127.0.0.1:5432";

/// A database of one test's own, dropped (with its connections) when this is dropped.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// `postgres://postgres@127.0.0.1:5432/<name>`.
    pub url: String,
}

impl TestDb {
    /// Create `sekisho_test_<random>`.
    pub async fn create() -> TestDb {
        let name = format!("sekisho_test_{:016x}", rand::random::<u64>());
        let admin = sqlx::PgPool::connect(&format!("postgres://postgres@{SERVER}/postgres?sslmode=disable"))
            .await
            .expect("PostgreSQL answers on 127.0.0.1:5432 (user postgres, trust auth)");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
        admin.close().await;
        let url = format!("postgres://postgres@{SERVER}/{name}?sslmode=disable");
        TestDb { name, url }
    }

    /// The URL of this database through `proxy`.
    pub fn via(&self, proxy: &Proxy) -> String {
        format!("postgres://postgres@{}/{}?sslmode=disable", proxy.addr, self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A thread of its own: the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(admin) =
                    sqlx::PgPool::connect(&format!("postgres://postgres@{SERVER}/postgres?sslmode=disable")).await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A TCP proxy to [`SERVER`] that counts what clients send (PostgreSQL frontend protocol v3:
/// `E` Execute, `Q` simple Query, `S` Sync: one Sync ends one round trip) and can refuse and
/// cut every connection (`set_up(false)`) as if the server were gone.
pub struct Proxy {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    up: watch::Sender<bool>,
    /// Execute + simple Query messages seen.
    pub statements: Arc<AtomicU64>,
    /// Sync + simple Query messages seen (round trips).
    pub round_trips: Arc<AtomicU64>,
    /// Counting only while set.
    pub counting: Arc<AtomicBool>,
}

impl Proxy {
    /// Start a proxy on a free loopback port.
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = watch::channel(true);
        let statements = Arc::new(AtomicU64::new(0));
        let round_trips = Arc::new(AtomicU64::new(0));
        let counting = Arc::new(AtomicBool::new(true));
        let (tx, st, rt, c) = (up.clone(), statements.clone(), round_trips.clone(), counting.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if !*tx.borrow() {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, tx.subscribe(), st.clone(), rt.clone(), c.clone()));
            }
        });
        Proxy { addr, up, statements, round_trips, counting }
    }

    /// Let connections through (`true`), or cut them all and refuse new ones (`false`).
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// (statements, round trips) counted so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.statements.load(Ordering::SeqCst), self.round_trips.load(Ordering::SeqCst))
    }
}

async fn relay(
    client: TcpStream,
    mut up: watch::Receiver<bool>,
    statements: Arc<AtomicU64>,
    round_trips: Arc<AtomicU64>,
    counting: Arc<AtomicBool>,
) {
    let Ok(server) = TcpStream::connect(SERVER).await else { return };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let upstream = async move {
        // The startup message has no type byte: its length, then its body.
        let mut len = [0u8; 4];
        cr.read_exact(&mut len).await?;
        let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
        cr.read_exact(&mut body).await?;
        sw.write_all(&len).await?;
        sw.write_all(&body).await?;
        loop {
            let mut head = [0u8; 5];
            cr.read_exact(&mut head).await?;
            let n = (u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize).saturating_sub(4);
            let mut body = vec![0u8; n];
            cr.read_exact(&mut body).await?;
            if counting.load(Ordering::SeqCst) {
                match head[0] {
                    b'E' => {
                        statements.fetch_add(1, Ordering::SeqCst);
                    }
                    b'Q' => {
                        statements.fetch_add(1, Ordering::SeqCst);
                        round_trips.fetch_add(1, Ordering::SeqCst);
                    }
                    b'S' => {
                        round_trips.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
            sw.write_all(&head).await?;
            sw.write_all(&body).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    let downstream = async move { tokio::io::copy(&mut sr, &mut cw).await };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = up.wait_for(|u| !*u) => {}
    }
}
