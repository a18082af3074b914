//! The web servers behind the load-balancer bench's paths: nginx with one
//! worker, no access log and a 612-byte static page, one instance per
//! backend namespace; and an HTTP GET from a namespace that tells which
//! backend answered (each backend's page is filled with its own letter).

use super::daemon::Daemon;
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Size of the page every backend serves, in bytes (nginx's default index
/// page is this long).
pub(super) const PAGE_BYTES: usize = 612;

/// How long nginx gets to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Whether nginx is installed.
pub(super) fn available() -> bool {
    Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The letter backend number `index` (from 0) fills its page with.
pub(super) fn page_letter(index: usize) -> u8 {
    b'a' + (index % 26) as u8
}

/// A directory of the bench's files (configurations, pages, logs), world
/// readable because nginx's workers drop root; removed when dropped.
pub(super) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates `<temp>/<name>`, which must not exist yet.
    pub(super) fn create(name: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        let scratch = Scratch { dir };
        open_to_all(&scratch.dir)?;
        Ok(scratch)
    }

    /// A subdirectory, created world readable.
    pub(super) fn subdir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        open_to_all(&dir)?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes `dir` readable and searchable by every user (mode 755).
fn open_to_all(dir: &Path) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("make {} world readable", dir.display()))
}

/// nginx's configuration for a backend whose files are in `dir` (pid,
/// error log, temporary files) and whose page is in `root`: one worker in
/// the foreground, listening on `port` on every address, no access log.
pub(super) fn nginx_config(dir: &Path, root: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3;
  uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;
  server {{ listen {port}; root {root}; location / {{ index index.html; }} }}
}}
",
        root = root.display()
    )
}

/// Starts nginx as backend number `index` (from 0) in `namespace` on
/// `port`, with its files in `dir` (a world-readable directory), and
/// waits until it listens.
pub(super) fn start_nginx(namespace: &str, index: usize, port: u16, dir: &Path) -> Result<Daemon> {
    let root = dir.join("www");
    std::fs::create_dir_all(&root)?;
    open_to_all(&root)?;
    let page = vec![page_letter(index); PAGE_BYTES];
    std::fs::write(root.join("index.html"), page)?;
    let config = dir.join("nginx.conf");
    std::fs::write(&config, nginx_config(dir, &root, port))?;
    let (prefix, config, error_log) = (
        dir.display().to_string(),
        config.display().to_string(),
        dir.join("error.log").display().to_string(),
    );
    let mut nginx = Daemon::start(
        &format!("nginx on {namespace}"),
        namespace,
        "nginx",
        &["-p", &prefix, "-c", &config, "-e", &error_log],
        &dir.join("nginx.out"),
    )?;
    nginx.wait_listening(namespace, port, START_LIMIT)?;
    Ok(nginx)
}

/// GETs `/` from `server` inside `namespace` and returns the letter the
/// answering backend's page is filled with.
pub(super) fn fetch_page_letter(namespace: &str, server: SocketAddr) -> Result<u8> {
    let answer = sdn_vswitch::netns::run_in(Some(namespace), || {
        let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        Ok(answer)
    })
    .with_context(|| format!("GET http://{server}/ from {namespace}"))?;
    page_letter_of(&answer).with_context(|| format!("GET http://{server}/ from {namespace}"))
}

/// The fill letter of a bench page in the HTTP answer `answer`.
fn page_letter_of(answer: &[u8]) -> Result<u8> {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("the answer has no end of headers ({} bytes)", answer.len());
    };
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("the answer is `{status}`, not 200");
    }
    match body.as_bytes() {
        [letter, rest @ ..] if body.len() == PAGE_BYTES && rest.iter().all(|b| b == letter) => {
            Ok(*letter)
        }
        _ => bail!(
            "the answer's body is not a bench page ({} bytes)",
            body.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_keeps_one_worker_and_no_access_log() {
        let config = nginx_config(Path::new("/tmp/b1"), Path::new("/tmp/b1/www"), 80);
        assert!(config.starts_with("worker_processes 1;\ndaemon off;\n"));
        assert!(config.contains("access_log off;"));
        assert!(config.contains("listen 80; root /tmp/b1/www;"));
        assert!(config.contains("pid /tmp/b1/nginx.pid;"));
        assert_eq!(config.matches('{').count(), config.matches('}').count());
    }

    #[test]
    fn the_answering_backend_is_told_by_its_page() {
        let page = "b".repeat(PAGE_BYTES);
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: 612\r\n\r\n{page}");
        assert_eq!(page_letter_of(answer.as_bytes()).unwrap(), b'b');
        let short = "HTTP/1.1 200 OK\r\n\r\nbbb";
        assert!(page_letter_of(short.as_bytes()).is_err());
        let refused = format!("HTTP/1.1 503 Service Unavailable\r\n\r\n{page}");
        let error = page_letter_of(refused.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("503"), "{error}");
        assert!(page_letter_of(b"HTTP/1.1 200").is_err());
        assert_eq!((page_letter(0), page_letter(1)), (b'a', b'b'));
    }
}
