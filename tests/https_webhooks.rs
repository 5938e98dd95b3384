//! Webhooks over https against a local server whose certificate comes from a CA made in the
//! test: trusted only through the configured CA file; Yishi's JSON signed with HMAC-SHA256;
//! WeCom and DingTalk robot formats, DingTalk's signed URLs, and a robot's non-zero `errcode`
//! counted as a failure even on HTTP 200. The checker refuses what the sender would refuse.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_rustls::rustls;
use yishi::webhook::{HttpWebhooks, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookOptions};
use yishi_core::FileSet;
use yishi_core::kind::Actor;
use yishi_engine::service::WebhookSender;

/// What the receiver saw: the path with its query, the headers, the body.
#[derive(Clone, Debug)]
struct Seen {
    uri: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

struct Receiver {
    port: u16,
    ca_file: tempfile::NamedTempFile,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The JSON every request is answered with.
    answer: Arc<Mutex<Value>>,
}

/// An https server on 127.0.0.1 with a certificate for `localhost` signed by a fresh CA.
async fn receiver() -> Receiver {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Yishi test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&leaf_key, &ca).unwrap();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(Mutex::new(json!({ "errcode": 0, "errmsg": "ok" })));
    let (s, a) = (seen.clone(), answer.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, s, a) = (acceptor.clone(), s.clone(), a.clone());
            tokio::spawn(async move {
                // A client that does not trust the CA hangs up during the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (s, a) = (s.clone(), a.clone());
                    async move {
                        let uri = req.uri().to_string();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                            .collect();
                        let bytes = req.into_body().collect().await.unwrap().to_bytes();
                        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        s.lock().unwrap().push(Seen { uri, headers, body });
                        let answer = a.lock().unwrap().to_string();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Receiver { port, ca_file, seen, answer }
}

fn sender(r: &Receiver, signing: Option<&str>, robots: &[(&str, &str)]) -> HttpWebhooks {
    HttpWebhooks::new(WebhookOptions {
        ca_file: Some(r.ca_file.path().to_owned()),
        signing_secret: signing.map(str::to_owned),
        robot_secrets: robots.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        lang: yishi_core::i18n::Lang::ZhCn,
        ..WebhookOptions::default()
    })
    .unwrap()
}

fn hmac(key: &str, data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn notice(robot: Value) -> Value {
    json!({ "instance": 7, "notice": {
        "topic": "notice", "to": ["street_office"], "message": "第 LHL-2026-0007 号议题已表决通过",
        "webhook": "", "body": { "step": "tell", "registration": "LHL-2026-0007" }, "robot": robot,
    }})
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_trusted_through_the_configured_ca_and_deliveries_are_signed() {
    let r = receiver().await;
    let url = format!("https://localhost:{}/hook", r.port);

    // Without the CA the certificate is refused, and the error says why.
    let untrusting = HttpWebhooks::default();
    let err = untrusting.send(&url, &notice(Value::Null)).await.unwrap_err();
    assert!(err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"), "{err}");

    // With it, Yishi's JSON arrives signed.
    let mut body = notice(Value::Null);
    body["notice"].as_object_mut().unwrap().remove("robot");
    sender(&r, Some("s3cret"), &[]).send(&url, &body).await.unwrap();
    let seen = r.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.body, body);
    let ts = &seen.headers[TIMESTAMP_HEADER];
    let expected = format!(
        "sha256={}",
        hmac("s3cret", format!("{ts}.{body}").as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    assert_eq!(seen.headers[SIGNATURE_HEADER], expected, "a receiver can verify the body");
    assert!(seen.headers["user-agent"].starts_with("yishi/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wecom_and_dingtalk_robots_get_their_own_formats() {
    let r = receiver().await;
    let url = format!("https://localhost:{}/cgi-bin/webhook/send?key=abc", r.port);
    let s = sender(&r, None, &[("jiedao", "SECabc")]);

    s.send(&url, &notice(json!({ "kind": "wecom" }))).await.unwrap();
    let text = r.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(text.body["msgtype"], "text");
    let content = text.body["text"]["content"].as_str().unwrap();
    assert!(content.contains("第 LHL-2026-0007 号议题已表决通过") && content.contains("LHL-2026-0007"), "{content}");
    assert!(content.contains("议事"), "a Chinese template: {content}");

    s.send(&url, &notice(json!({ "kind": "wecom", "markdown": true }))).await.unwrap();
    let md = r.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(md.body["msgtype"], "markdown");
    assert!(md.body["markdown"]["content"].as_str().unwrap().contains("LHL-2026-0007"));

    s.send(&url, &notice(json!({ "kind": "dingtalk", "markdown": true, "secret": "jiedao" }))).await.unwrap();
    let ding = r.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(ding.body["msgtype"], "markdown");
    assert!(ding.body["markdown"]["title"].as_str().is_some_and(|t| !t.is_empty()));
    // timestamp and sign in the URL, as DingTalk checks them.
    let query: BTreeMap<String, String> = reqwest::Url::parse(&format!("https://x{}", ding.uri))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(query["key"], "abc", "the robot's own key stays");
    let ts = &query["timestamp"];
    let sign = base64::engine::general_purpose::STANDARD.encode(hmac("SECabc", format!("{ts}\nSECabc").as_bytes()));
    assert_eq!(query["sign"], sign);

    // A secret the configuration does not have is a failed delivery naming it.
    let err = s.send(&url, &notice(json!({ "kind": "dingtalk", "secret": "nope" }))).await.unwrap_err();
    assert!(err.contains("nope"), "{err}");

    // errcode != 0 on HTTP 200 is a failure.
    *r.answer.lock().unwrap() = json!({ "errcode": 93000, "errmsg": "invalid webhook url" });
    let err = s.send(&url, &notice(json!({ "kind": "wecom" }))).await.unwrap_err();
    assert!(err.contains("93000"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_robot_notice_goes_through_the_outbox_and_a_failure_is_retried() {
    let r = receiver().await;
    *r.answer.lock().unwrap() = json!({ "errcode": 310000, "errmsg": "sign not match" });
    let mut files = FileSet::new();
    files.insert(
        "u/w.toml",
        format!(
            "id = \"w\"\n[[steps]]\nid = \"tell\"\nkind = \"notify\"\nto = [\"street_office\"]\nmessage = \"议题 {{registration}} 已通过\"\nwebhook = \"https://localhost:{}/robot/send?access_token=t\"\nformat = \"dingtalk\"\nstyle = \"markdown\"\nsecret = \"jiedao\"\nnext = \"end\"\n[[steps]]\nid = \"end\"\nkind = \"end\"\n",
            r.port
        ),
    );
    let (engine, clock) = common::quiet_engine().await;
    let status = engine.activate_files(&files, "test").await.unwrap();
    assert!(status.ok, "{:?}", status.diagnostics);
    let data = [("registration".to_owned(), json!("LHL-2026-0009"))].into_iter().collect();
    engine.start("u/w", data, &Actor { id: "staff".into(), roles: vec![] }, None).await.unwrap();
    let s = sender(&r, None, &[("jiedao", "SECabc")]);
    assert!(s.unknown_robot_secrets(&engine).is_empty());
    assert_eq!(
        sender(&r, None, &[]).unknown_robot_secrets(&engine),
        vec![("u/w".to_owned(), "tell".to_owned(), "jiedao".to_owned())],
        "a server without the secret warns at start"
    );
    assert_eq!(engine.deliver_outbox(&s).await.unwrap(), 1);
    assert_eq!(r.seen.lock().unwrap().len(), 1);
    assert!(engine.dead_letters().await.unwrap().is_empty(), "retried, not given up");
    *r.answer.lock().unwrap() = json!({ "errcode": 0, "errmsg": "ok" });
    clock.advance(60_000);
    assert_eq!(engine.deliver_outbox(&s).await.unwrap(), 1);
    let last = r.seen.lock().unwrap().last().cloned().unwrap();
    assert!(last.body["markdown"]["text"].as_str().unwrap().contains("议题 LHL-2026-0009 已通过"), "{:?}", last.body);
    clock.advance(3_600_000);
    assert_eq!(engine.deliver_outbox(&s).await.unwrap(), 0, "delivered once");
}

#[tokio::test]
async fn the_checker_refuses_what_the_sender_would_refuse_at_the_same_line() {
    for (url, word) in
        [("ftp://example.org/hook", "ftp"), ("https://", "https://"), ("http://exa mple.org/", "exa mple")]
    {
        let mut files = FileSet::new();
        files.insert(
            "u/w.toml",
            format!("id = \"w\"\n[[steps]]\nid = \"tell\"\nkind = \"notify\"\nmessage = \"m\"\nwebhook = \"{url}\"\nnext = \"end\"\n[[steps]]\nid = \"end\"\nkind = \"end\"\n"),
        );
        let (engine, _clock) = common::quiet_engine().await;
        let status = engine.activate_files(&files, "test").await.unwrap();
        assert!(!status.ok, "{url} passes the checker");
        let d = status.diagnostics.iter().find(|d| d.is_error()).unwrap().to_string();
        assert!(d.contains(":6:"), "the error is on the webhook line: {d}");
        assert!(d.contains(word), "{d}");
        let err = HttpWebhooks::default().send(url, &json!({})).await.unwrap_err();
        assert!(err.contains(url), "the sender refuses it too: {err}");
    }
    // A format without a webhook, and a secret for a robot that does not sign, are mistakes.
    let mut files = FileSet::new();
    files.insert(
        "u/w.toml",
        "id = \"w\"\n[[steps]]\nid = \"tell\"\nkind = \"notify\"\nmessage = \"m\"\nformat = \"wecom\"\nsecret = \"x\"\nnext = \"end\"\n[[steps]]\nid = \"end\"\nkind = \"end\"\n".to_owned(),
    );
    let (engine, _clock) = common::quiet_engine().await;
    let status = engine.activate_files(&files, "test").await.unwrap();
    assert!(!status.ok);
}
