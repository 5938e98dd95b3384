//! Yishi on PostgreSQL, as a deployment sees it: the database going away and coming back
//! under a serving node. The database sits behind a TCP proxy the test cuts and restores, so
//! the shared test server is never touched. Skipped, saying why, on a machine without
//! PostgreSQL (never under CI).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use common::backends::PgDatabase;
use common::{Server, http_full, poll};

/// A TCP proxy to PostgreSQL that can be cut (every connection dropped, new ones refused)
/// and restored.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c, l) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                l.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Proxy { port, cut, links }
    }

    async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_node_answers_503_while_the_database_is_away_and_recovers_by_itself() {
    let Some(db) = PgDatabase::create("outage").await else { return };
    let host_port = db.url.split('@').nth(1).and_then(|r| r.split('/').next()).unwrap().to_owned();
    let proxy = Proxy::start(host_port.clone()).await;
    let through_proxy = db.url.replace(&host_port, &format!("127.0.0.1:{}", proxy.port));
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"),
        &tmp.path().join("workflows"),
    );
    let server = Server::start_with(tmp.path(), None, &["--db", &through_proxy, "--db-connect-timeout", "1"]).await;
    let call = |method: &'static str, path: String, body: Option<serde_json::Value>| {
        let (base, token) = (server.base.clone(), server.token.clone());
        async move { http_full(&base, &token, method, &path, body).await.expect("the node answers") }
    };

    // A case started and acted on: acknowledged.
    let (status, _, started) =
        call("POST", "/api/v1/instances".into(), Some(json!({"workflow": "chengguan/tianshuinanlu/garden"}))).await;
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_i64().unwrap();
    let submit = json!({"action": "submit", "payload": {"title": "a garden", "channel": "visit"},
                        "on_behalf_of": {"id": "res-1", "roles": ["resident"]}});
    let (status, _, acted) = call("POST", format!("/api/v1/instances/{id}/actions"), Some(submit)).await;
    assert_eq!(status, 200, "{acted}");

    // The database goes away: the node says so, and asks to be asked again later.
    proxy.cut().await;
    poll("/readyz to say not ready", Duration::from_secs(60), async || {
        let (status, _, _) = call("GET", "/readyz".into(), None).await;
        (status == 503).then_some(())
    })
    .await;
    let (status, headers, problem) = call("GET", format!("/api/v1/instances/{id}"), None).await;
    assert_eq!(status, 503, "{problem}");
    assert!(headers.get("retry-after").is_some(), "{headers:?}");
    let (status, _, problem) =
        call("POST", "/api/v1/instances".into(), Some(json!({"workflow": "chengguan/tianshuinanlu/garden"}))).await;
    assert_eq!(status, 503, "nothing is half-written while the database is away: {problem}");

    // It comes back: the node reconnects by itself, and what was acknowledged is there.
    proxy.restore();
    poll("/readyz to say ready again", Duration::from_secs(60), async || {
        let (status, _, _) = call("GET", "/readyz".into(), None).await;
        (status == 200).then_some(())
    })
    .await;
    let (status, _, case) = call("GET", format!("/api/v1/instances/{id}"), None).await;
    assert_eq!(status, 200, "{case}");
    assert_eq!(case["instance"]["active_steps"], json!(["small_stool"]), "{case}");
    let (status, _, second) =
        call("POST", "/api/v1/instances".into(), Some(json!({"workflow": "chengguan/tianshuinanlu/garden"}))).await;
    assert_eq!(status, 201, "{second}");
    drop(server);
    db.drop_now().await;
}

#[tokio::test]
async fn db_copy_moves_a_stopped_deployment_to_postgres_and_says_what_it_checked() {
    let Some(db) = PgDatabase::create("cli_copy").await else { return };
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"),
        &tmp.path().join("workflows"),
    );
    let server = Server::start_with(tmp.path(), None, &[]).await;
    let token = server.token.clone();
    for _ in 0..3 {
        let (status, _) =
            server.call("POST", "/api/v1/instances", Some(json!({"workflow": "chengguan/tianshuinanlu/garden"}))).await;
        assert_eq!(status, 201);
    }
    let yishi = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_yishi"))
            .args(args)
            .current_dir(tmp.path())
            .env("YISHI_LANG", "en")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    // Not while a server serves the file.
    let out = yishi(&["db", "copy", "--from", "yishi.db", "--to", &db.url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another yishi server"), "{out:?}");
    drop(server);

    let out = yishi(&["db", "copy", "--from", "yishi.db", "--to", &db.url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("instances") && stdout.contains("checksum matches"), "{stdout}");
    // Never into a database that holds anything.
    let out = yishi(&["db", "copy", "--from", "yishi.db", "--to", &db.url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"), "{out:?}");

    // The copy serves: the same cases, the same token, new ids after the copied ones.
    let server = Server::start_with(tmp.path(), Some(token), &["--db", &db.url]).await;
    let (status, case) = server.call("GET", "/api/v1/instances/3", None).await;
    assert_eq!(status, 200, "{case}");
    let (status, started) =
        server.call("POST", "/api/v1/instances", Some(json!({"workflow": "chengguan/tianshuinanlu/garden"}))).await;
    assert_eq!((status, started["id"].as_i64()), (201, Some(4)), "{started}");
    drop(server);
    db.drop_now().await;
}

/// Starts a garden case with an idempotency key; the case's id.
async fn start_with_key(base: &str, token: &str, key: &str) -> i64 {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<hyper::body::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::post(format!("{base}/api/v1/instances"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::from(json!({"workflow": "chengguan/tianshuinanlu/garden"}).to_string()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(status == 201 || status == 200, "{status} {body}");
    body["id"].as_i64().unwrap()
}

/// Runs `yishi` with `args` in `dir`; its output.
fn yishi_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_yishi"))
        .args(args)
        .current_dir(dir)
        .env("YISHI_LANG", "en")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[tokio::test]
async fn three_nodes_share_one_database_lead_follow_and_take_over() {
    let Some(db) = PgDatabase::create("three_nodes").await else { return };
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    // Each node has a folder of its own: only the leader's is read.
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for d in &dirs {
        common::copy_dir(&shipped, &d.path().join("workflows"));
    }
    let args = ["--db", db.url.as_str(), "--cluster-interval-ms", "200"];
    let a = Server::start_with(dirs[0].path(), None, &args).await;
    let token = a.token.clone();
    let b = Server::start_with(dirs[1].path(), Some(token.clone()), &args).await;
    let c = Server::start_with(dirs[2].path(), Some(token.clone()), &args).await;
    let garden = "/api/v1/workflows/chengguan/tianshuinanlu/garden/versions";

    // Any node answers any request: a case started on B is read and acted on at C, and read
    // back at A right after.
    let (status, started) =
        b.call("POST", "/api/v1/instances", Some(json!({"workflow": "chengguan/tianshuinanlu/garden"}))).await;
    assert_eq!(status, 201, "{started}");
    let id = started["id"].as_i64().unwrap();
    let submit = json!({"action": "submit", "payload": {"title": "a garden", "channel": "visit"},
                        "on_behalf_of": {"id": "res-1", "roles": ["resident"]}});
    let (status, acted) = c.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(submit)).await;
    assert_eq!(status, 200, "{acted}");
    let (_, case) = a.call("GET", &format!("/api/v1/instances/{id}"), None).await;
    assert_eq!(case["instance"]["active_steps"], json!(["small_stool"]), "read your writes: {case}");

    // An idempotency key is honoured across nodes: the same start sent to B and C at once makes
    // one case, and both answers name it.
    let (one, two) =
        tokio::join!(start_with_key(&b.base, &token, "k-cluster-1"), start_with_key(&c.base, &token, "k-cluster-1"));
    assert_eq!(one, two, "one case for one key");
    let (_, listed) = a.call("GET", "/api/v1/instances?limit=100", None).await;
    assert_eq!(listed["items"].as_array().unwrap().iter().filter(|i| i["id"] == one).count(), 1);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");

    // Every node reports itself; one leads.
    let nodes = poll("three nodes alive", Duration::from_secs(60), async || {
        let (_, nodes) = b.call("GET", "/api/v1/nodes", None).await;
        let items = nodes["items"].as_array()?.clone();
        (items.iter().filter(|n| n["alive"] == true).count() == 3).then_some(items)
    })
    .await;
    assert_eq!(nodes.iter().filter(|n| n["leader"] == true).count(), 1, "{nodes:?}");

    // A rule changed in the leader's folder is active on every node within the bound, from
    // the stored files (B and C never see the file).
    let file = dirs[0].path().join("workflows/chengguan/tianshuinanlu/garden.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\nvalue = 10\n"));
    std::fs::write(&file, text.replace("\nvalue = 10\n", "\nvalue = 12\n")).unwrap();
    let saved = std::time::Instant::now();
    let (status, reloaded) = a.call("POST", "/api/v1/reload", None).await;
    assert_eq!((status, reloaded["ok"].as_bool()), (200, Some(true)), "{reloaded}");
    for (name, node) in [("B", &b), ("C", &c)] {
        poll("the new version on every node", Duration::from_secs(30), async || {
            let (_, versions) = node.call("GET", garden, None).await;
            let items = versions["items"].as_array()?;
            items.iter().any(|v| v["version"] == 2 && v["current"] == true).then_some(())
        })
        .await;
        eprintln!("version 2 active on {name} {} ms after the reload was asked for on A", saved.elapsed().as_millis());
    }
    let (_, version) = c.call("GET", "/api/v1/workflows/chengguan/tianshuinanlu/garden/versions/2", None).await;
    assert!(version.to_string().contains("value = 12"), "C shows the stored file: {version}");

    // A token revoked through one node is refused by the others.
    let out = yishi_in(dirs[0].path(), &["token", "create", "--name", "wang", "--role", "viewer", "--db", &db.url]);
    assert!(out.status.success(), "{out:?}");
    let viewer =
        String::from_utf8_lossy(&out.stdout).split_whitespace().find(|w| w.starts_with("yishi_")).unwrap().to_owned();
    let (status, _, _) = http_full(&c.base, &viewer, "GET", "/api/v1/whoami", None).await.unwrap();
    assert_eq!(status, 200);
    let out = yishi_in(dirs[0].path(), &["token", "list", "--db", &db.url]);
    let listed = String::from_utf8_lossy(&out.stdout);
    let wang =
        listed.lines().find(|l| l.contains("wang")).and_then(|l| l.split_whitespace().next()).unwrap().to_owned();
    let out = yishi_in(dirs[0].path(), &["token", "revoke", &wang, "--db", &db.url]);
    assert!(out.status.success(), "{out:?}");
    // Refused by another node within its token bound (1 s by default).
    let revoked = std::time::Instant::now();
    poll("the revoked token refused on C", Duration::from_secs(30), async || {
        let (status, _, _) = http_full(&c.base, &viewer, "GET", "/api/v1/whoami", None).await?;
        (status == 401).then_some(())
    })
    .await;
    eprintln!("token refused on C {} ms after it was revoked", revoked.elapsed().as_millis());

    // The leader dies: another node takes the lead and reads its own folder.
    let leader = nodes.iter().find(|n| n["leader"] == true).unwrap()["address"].as_str().unwrap().to_owned();
    let (dead, alive): (Vec<_>, Vec<_>) = [a, b, c].into_iter().partition(|s| s.base.ends_with(&leader));
    dead.into_iter().next().unwrap().kill();
    let killed = std::time::Instant::now();
    let new_leader = poll("a new leader", Duration::from_secs(60), async || {
        let (_, nodes) = alive[0].call("GET", "/api/v1/nodes", None).await;
        let items = nodes["items"].as_array()?.clone();
        items.iter().find(|n| n["leader"] == true && n["alive"] == true && n["address"] != leader.as_str()).cloned()
    })
    .await;
    eprintln!("{} took the lead {} ms after the leader was killed", new_leader["id"], killed.elapsed().as_millis());
    let (status, started) =
        alive[1].call("POST", "/api/v1/instances", Some(json!({"workflow": "chengguan/tianshuinanlu/garden"}))).await;
    assert_eq!(status, 201, "{started}");
    drop(alive);
    db.drop_now().await;
}
