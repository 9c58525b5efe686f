//! A PostgreSQL server of a test's own (initdb into a temporary folder, its own port), so the
//! test can really stop it (`pg_ctl stop -m fast`: clients get the administrator-shutdown
//! error, as with `pg_ctlcluster … stop`) and start it again while every other test keeps the
//! shared server on 5432. Run as the `postgres` user when the tests run as root (PostgreSQL
//! refuses root). Stopped and removed on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A running (or stopped) server of our own.
pub struct OwnPostgres {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

/// The newest installed PostgreSQL's `bin` folder (Debian: `/usr/lib/postgresql/<v>/bin`).
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    found.pop().expect("an initdb")
}

/// `program args…` as the `postgres` user when we are root.
fn run(program: &PathBuf, args: &[&str]) {
    let root = nix::unistd::geteuid().is_root();
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd.args(args).output().expect("the PostgreSQL tools run");
    assert!(out.status.success(), "{program:?} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl OwnPostgres {
    /// initdb (trust auth, user `postgres`, no fsync) and start it on a free port.
    pub fn start() -> OwnPostgres {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("sekisho-pg-{port}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        if nix::unistd::geteuid().is_root() {
            let out = Command::new("chown").args(["postgres:postgres"]).arg(&dir).output().unwrap();
            assert!(out.status.success(), "chown: {}", String::from_utf8_lossy(&out.stderr));
        }
        let pg = OwnPostgres { port, dir, bin: bin_dir() };
        let data = pg.data();
        run(&pg.bin.join("initdb"), &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        pg.up();
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Start the server (waits until it accepts connections).
    pub fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        run(&self.bin.join("pg_ctl"), &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"]);
    }

    /// Stop the server the way an operator does (`-m fast`: sessions are ended with the
    /// administrator-shutdown error); waits until it is down.
    pub fn down(&self) {
        run(&self.bin.join("pg_ctl"), &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// Create database `name`.
    pub async fn create_db(&self, name: &str) {
        let admin = sqlx::PgPool::connect(&self.url("postgres")).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
        admin.close().await;
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
        if !nix::unistd::geteuid().is_root() {
            let _ =
                Command::new(self.bin.join("pg_ctl")).args(["-D", &self.data(), "-m", "immediate", "stop"]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
