//! The admin console: signing in (accounts and API tokens), the first-time password change,
//! lock-out, sessions stored in the database (served by any node, ended at once when an account
//! is disabled or a token revoked), anti-forgery tokens on every form, security headers,
//! Chinese by default; and the same in real headless Chromium (WebDriver), with JavaScript off
//! and on a 375 px wide screen.

mod common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use common::api::Api;
use serde_json::json;

/// A browser's cookie jar over the in-process API.
struct Browser<'a> {
    api: &'a Api,
    jar: BTreeMap<String, String>,
    lang: Option<&'static str>,
    forwarded_https: bool,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
    headers: axum::http::HeaderMap,
}

impl<'a> Browser<'a> {
    fn new(api: &'a Api) -> Self {
        Browser { api, jar: BTreeMap::new(), lang: None, forwarded_https: false }
    }

    async fn request(&mut self, method: &str, uri: &str, form: Option<&[(&str, &str)]>) -> Page {
        let cookie = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if !cookie.is_empty() {
            headers.push(("cookie", &cookie));
        }
        if let Some(l) = self.lang {
            headers.push(("accept-language", l));
        }
        if self.forwarded_https {
            headers.push(("x-forwarded-proto", "https"));
        }
        let body = form.map(|f| {
            let encoded: Vec<String> = f.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
            ("application/x-www-form-urlencoded", encoded.join("&"))
        });
        let a = self.api.send_any(method, uri, body, &headers).await;
        for v in a.headers.get_all("set-cookie") {
            let c = cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap();
            if c.max_age().is_some_and(|m| m.is_zero()) || c.value().is_empty() {
                self.jar.remove(c.name());
            } else {
                self.jar.insert(c.name().to_owned(), c.value().to_owned());
            }
        }
        Page {
            status: a.status,
            location: a.headers.get("location").map(|v| v.to_str().unwrap().to_owned()),
            body: a.body,
            headers: a.headers,
        }
    }

    async fn get(&mut self, uri: &str) -> Page {
        self.request("GET", uri, None).await
    }

    async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Page {
        self.request("POST", uri, Some(form)).await
    }

    /// The anti-forgery token of the page's first form.
    fn csrf(page: &Page) -> String {
        let at = page.body.find("name=\"csrf\" value=\"").expect("a form with a csrf field") + 19;
        page.body[at..].split('"').next().unwrap().to_owned()
    }

    async fn sign_in(&mut self, name: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        let csrf = Self::csrf(&form);
        self.post("/login", &[("csrf", &csrf), ("name", name), ("password", password)]).await
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn account(api: &Api, admin: &str, name: &str, scope: &str) -> i64 {
    let body =
        json!({ "name": name, "role": "operator", "scope": scope, "acts_as": ["staff"], "password": "first-pass-123" });
    let (s, v) = api.call("POST", "/api/v1/accounts", Some(admin), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_first_sign_in_asks_for_a_new_password_then_shows_what_the_scope_allows() {
    let api = Api::new().await;
    let admin = api.token("admin", "*", &[]).await;
    account(&api, &admin, "zhang", "pingcheng").await;
    let mut b = Browser::new(&api);

    // Not signed in: to the sign-in page, in Chinese unless the browser asks otherwise.
    let p = b.get("/").await;
    assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
    let p = b.get("/login").await;
    assert!(p.body.contains("<html lang=\"zh-CN\">") && p.body.contains("登录"), "{}", p.body);
    assert_eq!(p.headers["content-language"], "zh-CN");
    let csp = p.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(p.headers["x-frame-options"], "DENY");

    // A wrong password: refused, in Chinese, the same words as an unknown account.
    let p = b.sign_in("zhang", "wrong-password").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("账号或密码不正确"), "{}", p.body);
    let p = b.sign_in("nobody", "wrong-password").await;
    assert!(p.body.contains("账号或密码不正确"), "{}", p.body);

    // The first password works once: the console asks for a new one before anything else.
    let p = b.sign_in("zhang", "first-pass-123").await;
    assert_eq!((p.status, p.location.as_deref()), (StatusCode::SEE_OTHER, Some("/")));
    let session = &b.jar["yishi_session"];
    assert_eq!(session.len(), 64, "a random secret");
    let p = b.get("/").await;
    assert_eq!(p.location.as_deref(), Some("/password"));
    let form = b.get("/password").await;
    assert!(form.body.contains("第一次登录"), "{}", form.body);
    let csrf = Browser::csrf(&form);
    let p =
        b.post("/password", &[("csrf", &csrf), ("old", "first-pass-123"), ("new", "short"), ("again", "short")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("至少 10 个字符"), "{}", p.body);
    let p = b
        .post(
            "/password",
            &[
                ("csrf", &csrf),
                ("old", "first-pass-123"),
                ("new", "新的密码很长很长很长很长"),
                ("again", "不一样的密码很长很长很长"),
            ],
        )
        .await;
    assert!(p.body.contains("两次输入的新密码不一致"), "{}", p.body);
    let p = b
        .post(
            "/password",
            &[
                ("csrf", &csrf),
                ("old", "first-pass-123"),
                ("new", "新的密码很长很长很长很长"),
                ("again", "新的密码很长很长很长很长"),
            ],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/?changed=1"));

    // Home: the person, their permission and the units of their scope only.
    let p = b.get("/?changed=1").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("密码已修改") && p.body.contains("zhang") && p.body.contains("经办人"), "{}", p.body);
    assert!(p.body.contains("pingcheng/yongtai/liuhangli"), "{}", p.body);
    assert!(!p.body.contains("chengguan/tianshuinanlu"), "outside the scope: {}", p.body);
    // English on request, remembered.
    let p = b.get("/?lang=en").await;
    assert!(p.body.contains("<html lang=\"en\">") && p.body.contains("Units you can see"), "{}", p.body);
    assert_eq!(b.jar["yishi_lang"], "en");
    let p = b.get("/").await;
    assert!(p.body.contains("Sign out"), "{}", p.body);

    // Signing out ends the session in the database: the old cookie no longer works.
    let csrf = Browser::csrf(&p);
    let old = b.jar["yishi_session"].clone();
    let p = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.location.as_deref(), Some("/login"));
    b.jar.insert("yishi_session".into(), old);
    assert_eq!(b.get("/").await.location.as_deref(), Some("/login"));
    // The new password signs in; the first one no longer does.
    assert!(b.sign_in("zhang", "first-pass-123").await.body.contains("Sign in"));
    assert_eq!(b.sign_in("zhang", "新的密码很长很长很长很长").await.location.as_deref(), Some("/"));
}

#[tokio::test]
async fn forms_without_their_anti_forgery_token_are_refused() {
    let api = Api::new().await;
    let admin = api.token("admin", "*", &[]).await;
    account(&api, &admin, "li", "*").await;
    let mut b = Browser::new(&api);
    // Signing in needs the token the form carried (and its cookie).
    let p = b.post("/login", &[("csrf", "forged"), ("name", "li"), ("password", "first-pass-123")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(!b.jar.contains_key("yishi_session"));
    b.get("/login").await;
    let p = b.post("/login", &[("csrf", "forged"), ("name", "li"), ("password", "first-pass-123")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "the cookie alone is not enough");
    assert_eq!(b.sign_in("li", "first-pass-123").await.status, StatusCode::SEE_OTHER);
    // Signing out with a forged token does nothing.
    let p = b.post("/logout", &[("csrf", "forged")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/").await.location.as_deref(), Some("/password"), "still signed in");
    let p = b
        .post(
            "/password",
            &[
                ("csrf", "forged"),
                ("old", "first-pass-123"),
                ("new", "another-long-one"),
                ("again", "another-long-one"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // The cookie is HttpOnly and SameSite=Strict, and Secure behind https.
    let mut s = Browser::new(&api);
    s.forwarded_https = true;
    let p = s.get("/login").await;
    let set = p.headers["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure"), "{set}");
}

#[tokio::test]
async fn repeated_failures_lock_the_account_and_a_disabled_account_is_out_at_once() {
    let api = Api::new().await;
    let admin = api.token("admin", "*", &[]).await;
    let id = account(&api, &admin, "wang", "pingcheng").await;
    let mut b = Browser::new(&api);
    b.lang = Some("en");
    for _ in 0..4 {
        assert!(b.sign_in("wang", "not-the-password").await.body.contains("not right"));
    }
    let p = b.sign_in("wang", "not-the-password").await;
    assert!(p.body.contains("locked until"), "{}", p.body);
    let p = b.sign_in("wang", "first-pass-123").await;
    assert!(p.body.contains("locked until"), "the right password waits too: {}", p.body);
    // Fifteen minutes later it opens again.
    api.clock.advance(16 * 60 * 1000);
    assert_eq!(b.sign_in("wang", "first-pass-123").await.location.as_deref(), Some("/"));
    assert_eq!(b.get("/").await.location.as_deref(), Some("/password"));

    // Sessions expire after a working day.
    api.clock.advance(13 * 3600 * 1000);
    assert_eq!(b.get("/").await.location.as_deref(), Some("/login"), "expired");
    assert_eq!(b.sign_in("wang", "first-pass-123").await.location.as_deref(), Some("/"));

    // Disabled through the API: the open session ends at once, and signing in says why.
    let (s, v) = api.call("POST", &format!("/api/v1/accounts/{id}/disable"), Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(b.get("/").await.location.as_deref(), Some("/login"));
    assert!(b.sign_in("wang", "first-pass-123").await.body.contains("disabled"));
    api.call("POST", &format!("/api/v1/accounts/{id}/enable"), Some(&admin), None).await;
    assert_eq!(b.sign_in("wang", "first-pass-123").await.location.as_deref(), Some("/"));
    // A reset password ends the sessions too, and must be changed again.
    let (s, v) = api
        .call(
            "POST",
            &format!("/api/v1/accounts/{id}/password"),
            Some(&admin),
            Some(json!({ "password": "reset-pass-456" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["must_change"], true);
    assert_eq!(b.get("/").await.location.as_deref(), Some("/login"));
}

#[tokio::test]
async fn api_tokens_sign_in_and_a_revoked_token_ends_its_sessions() {
    let api = Api::new().await;
    let admin = api.token("admin", "*", &[]).await;
    let (s, made) = api
        .call(
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({ "name": "grid-li", "role": "viewer", "scope": "chengguan" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    let id = made["token"]["id"].as_i64().unwrap();
    let mut b = Browser::new(&api);
    let form = b.get("/login").await;
    let csrf = Browser::csrf(&form);
    let p = b.post("/login", &[("csrf", &csrf), ("token", &secret)]).await;
    assert_eq!(p.location.as_deref(), Some("/"));
    let home = b.get("/").await;
    assert!(home.body.contains("grid-li") && home.body.contains("只读"), "{}", home.body);
    assert!(home.body.contains("chengguan/tianshuinanlu") && !home.body.contains("pingcheng/yongtai"), "{}", home.body);
    let (s, v) = api.call("POST", &format!("/api/v1/tokens/{id}/revoke"), Some(&admin), None).await;
    assert_eq!((s, v["revoked"].clone()), (StatusCode::OK, json!(true)));
    assert_eq!(b.get("/").await.location.as_deref(), Some("/login"));

    // Accounts and tokens are for admins, inside their own scope.
    let op = api.token("operator", "*", &[]).await;
    let (s, _) = api.call("GET", "/api/v1/accounts", Some(&op), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let street_admin = api.token("admin", "pingcheng/yongtai", &[]).await;
    let body = json!({ "name": "x", "role": "admin", "scope": "*", "password": "first-pass-123" });
    let (s, p) = api.call("POST", "/api/v1/accounts", Some(&street_admin), Some(body)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(p["field"], "/scope");
    let body = json!({ "name": "zhao", "role": "operator", "scope": "pingcheng/yongtai/liuhangli", "password": "first-pass-123" });
    let (s, _) = api.call("POST", "/api/v1/accounts", Some(&street_admin), Some(body.clone())).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, p) = api.call("POST", "/api/v1/accounts", Some(&street_admin), Some(body)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "/name");
    let (_, list) = api.call("GET", "/api/v1/accounts", Some(&street_admin), None).await;
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["zhao"]);
    assert!(list["items"][0].get("password_hash").is_none());
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address() {
    let api = Api::new().await;
    let mut b = Browser::new(&api);
    b.lang = Some("en");
    let mut last = StatusCode::OK;
    for _ in 0..=yishi::console::SIGN_INS_PER_MINUTE {
        last = b.sign_in("someone", "guess-guess-guess").await.status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    api.clock.advance(61_000);
    assert_eq!(b.sign_in("someone", "guess-guess-guess").await.status, StatusCode::UNAUTHORIZED);
}

/// Sessions live in the database: a session opened through one node is served by another.
#[tokio::test]
async fn any_node_serves_a_session() {
    use common::backends::PgDatabase;
    let Some(db) = PgDatabase::create("console_sessions").await else { return };
    let one = Api::on_store(db.store().await).await;
    let two = Api::on_store(db.store().await).await;
    let admin = one.token("admin", "*", &[]).await;
    account(&one, &admin, "sun", "*").await;
    let mut b = Browser::new(&one);
    assert_eq!(b.sign_in("sun", "first-pass-123").await.location.as_deref(), Some("/"));
    let jar = b.jar.clone();
    let mut c = Browser::new(&two);
    c.jar = jar;
    assert_eq!(c.get("/").await.location.as_deref(), Some("/password"), "signed in on the other node");
    drop((one, two));
    db.drop_now().await;
}

// ---- real Chromium -----------------------------------------------------------------------

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// ChromeDriver on a free port, stopped when dropped.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ChromeDriver, or `None` (saying so) on a machine without Chromium outside CI.
async fn driver() -> Option<Driver> {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Chromium and ChromeDriver ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver"
        );
        eprintln!(
            "skipped the Chromium test: no {CHROMIUM} or {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver { child, port };
    common::poll("chromedriver to listen", std::time::Duration::from_secs(30), async || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    })
    .await;
    Some(d)
}

async fn browser(d: &Driver, lang: &str, width: u32) -> fantoccini::Client {
    let profile = tempfile::tempdir().unwrap().keep();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()), format!("--lang={lang}"),
                format!("--window-size={width},900"),
            ],
            // As many staff browsers are set up: no JavaScript at all.
            "prefs": { "profile.managed_default_content_settings.javascript": 2, "intl.accept_languages": lang },
        }),
    );
    let client = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("a Chromium session");
    client.set_window_size(width, 900).await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_sign_in_change_the_password_and_sign_out_in_chromium_without_javascript() {
    use fantoccini::Locator;
    let Some(d) = driver().await else { return };
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"),
        &tmp.path().join("workflows"),
    );
    let s = common::Server::start(tmp.path(), None).await;
    // An admin makes the account at the command line, beside the running server.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yishi"))
        .args([
            "account",
            "create",
            "--name",
            "zhang",
            "--role",
            "operator",
            "--scope",
            "pingcheng",
            "--acts-as",
            "staff",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(first.chars().count(), 16, "a first password: {first}");
    let c = browser(&d, "zh-CN", 375).await;
    let base = s.base.clone();
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/login"));
    assert_eq!(c.title().await.unwrap(), "登录 · 议事管理台");
    c.find(Locator::Id("name")).await.unwrap().send_keys("zhang").await.unwrap();
    c.find(Locator::Id("password")).await.unwrap().send_keys(&first).await.unwrap();
    c.find(Locator::Css("form[action='/login'] button")).await.unwrap().click().await.unwrap();
    // First sign-in: the password page, labelled fields, in Chinese.
    c.wait().for_element(Locator::Css("form[action='/password']")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/password"));
    assert_eq!(c.title().await.unwrap(), "修改密码 · 议事管理台");
    let label = c.find(Locator::Css("label[for='new']")).await.unwrap().text().await.unwrap();
    assert_eq!(label, "新密码");
    c.find(Locator::Id("old")).await.unwrap().send_keys(&first).await.unwrap();
    c.find(Locator::Id("new")).await.unwrap().send_keys("我的新密码一点也不太短").await.unwrap();
    c.find(Locator::Id("again")).await.unwrap().send_keys("我的新密码一点也不太短").await.unwrap();
    c.find(Locator::Css("form[action='/password'] button")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("dl.facts")).await.unwrap();
    let body = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(body.contains("密码已修改") && body.contains("柳航里社区"), "{body}");
    // Fits the phone: nothing wider than the 375 px screen.
    let shot = c.screenshot().await.unwrap();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("console-home-375.png"), &shot).unwrap();
    for css in ["header.top", "main", "dl.facts", "div.scroll"] {
        let (x, _, w, _) = c.find(Locator::Css(css)).await.unwrap().rectangle().await.unwrap();
        assert!(x + w <= 375.5, "{css} reaches {} px on a 375 px screen", x + w);
    }
    // A case from the list page's form, then its first action through labelled controls.
    c.goto(&format!("{base}/cases")).await.unwrap();
    c.find(Locator::Css("option[value='pingcheng/yongtai/liuhangli/proposal']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("title")).await.unwrap().send_keys("楼道声控灯坏了").await.unwrap();
    c.find(Locator::Css("form[method='post'][action='/cases'] button")).await.unwrap().click().await.unwrap();
    if c.wait().at_most(std::time::Duration::from_secs(5)).for_element(Locator::Css("form.action")).await.is_err() {
        let body = c.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
        panic!("{}: {body}", c.current_url().await.unwrap());
    }
    c.find(Locator::Css("form.action input[name='f.title']")).await.unwrap().send_keys("楼道声控灯坏了").await.unwrap();
    c.find(Locator::Css("form.action input[name='f.channel'][value='visit']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.action input[name='on_behalf_of']")).await.unwrap().send_keys("居民钱").await.unwrap();
    c.find(Locator::Css("form.action button")).await.unwrap().click().await.unwrap();
    // The page after the action (the page before it has a note too).
    c.wait().for_element(Locator::XPath("//ol[@class='timeline']/li[contains(., '居民钱')]")).await.unwrap();
    let history = c.find(Locator::Css("ol.timeline")).await.unwrap().text().await.unwrap();
    assert!(history.contains("zhang（代 居民钱）"), "{history}");
    let (x, _, w, _) = c.find(Locator::Css("main")).await.unwrap().rectangle().await.unwrap();
    assert!(x + w <= 375.5, "the case page fits: {}", x + w);
    std::fs::write(out.join("console-case-375.png"), c.screenshot().await.unwrap()).unwrap();
    let drawing = c.find(Locator::Css(".diagram img")).await.unwrap();
    let (_, _, dw, dh) = drawing.rectangle().await.unwrap();
    assert!(dw > 100.0 && dh > 100.0, "the drawing is shown ({dw} x {dh})");
    std::fs::write(out.join("console-diagram.png"), drawing.screenshot().await.unwrap()).unwrap();
    // A workflow's page: its steps, params by layer and versions, fitting the phone.
    c.goto(&format!("{base}/workflows/pingcheng/yongtai/liuhangli/proposal")).await.unwrap();
    let params = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(params.contains("柳航里社区") && params.contains("await_sitting"), "{params}");
    let (x, _, w, _) = c.find(Locator::Css("main")).await.unwrap().rectangle().await.unwrap();
    assert!(x + w <= 375.5, "the workflow page fits: {}", x + w);
    std::fs::write(out.join("console-workflow-375.png"), c.screenshot().await.unwrap()).unwrap();
    // Sign out from the header's button.
    c.find(Locator::Css("form[action='/logout'] button")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("form[action='/login']")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/login"));
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/login"), "signed out for good");
    c.close().await.unwrap();
    drop(s);
}

/// Signs in a fresh operator of `scope` (first password changed) and returns the browser.
async fn staff<'a>(api: &'a Api, admin: &str, name: &str, scope: &str) -> Browser<'a> {
    account(api, admin, name, scope).await;
    let mut b = Browser::new(api);
    b.sign_in(name, "first-pass-123").await;
    let form = b.get("/password").await;
    let csrf = Browser::csrf(&form);
    let p = b
        .post(
            "/password",
            &[("csrf", &csrf), ("old", "first-pass-123"), ("new", "second-pass-456"), ("again", "second-pass-456")],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/?changed=1"));
    b
}

#[tokio::test]
async fn staff_start_a_case_act_on_it_through_labelled_forms_and_read_its_history() {
    let api = Api::new().await;
    let admin = api.token("admin", "*", &[]).await;
    let mut b = staff(&api, &admin, "zhang", "pingcheng").await;
    // Start a Liuhangli proposal from the list page's form.
    let list = b.get("/cases").await;
    assert!(list.body.contains("没有符合条件的事项"), "{}", list.body);
    assert!(!list.body.contains("chengguan/tianshuinanlu/garden"), "workflows outside the scope are not offered");
    let csrf = Browser::csrf(&list);
    let p = b
        .post(
            "/cases",
            &[("csrf", &csrf), ("workflow", "pingcheng/yongtai/liuhangli/proposal"), ("title", "楼道声控灯")],
        )
        .await;
    let at = p.location.clone().expect("to the case page");
    assert!(at.starts_with("/cases/1"), "{at}");
    let page = b.get(&at).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("事项已登记") && page.body.contains("<h1>楼道声控灯</h1>"), "{}", page.body);
    // The intake step's submit: the channel is a set of labelled radio buttons, not a JSON box.
    assert!(page.body.contains("type=\"radio\" name=\"f.channel\" value=\"wechat\""), "{}", page.body);
    assert!(page.body.contains("src=\"/cases/1/diagram.svg\""), "{}", page.body);
    let svg = b.get("/cases/1/diagram.svg").await;
    assert_eq!(svg.headers["content-type"], "image/svg+xml; charset=utf-8");
    assert!(svg.body.contains("<svg") && svg.body.contains("class=\"node current\""), "the diagram marks where it is");
    assert!(svg.body.contains("民事民提"), "labelled in Chinese");
    assert!(!svg.headers["content-security-policy"].to_str().unwrap().contains("script"), "no script in a drawing");
    let csrf = Browser::csrf(&page);
    // A refused action: the page says why, and nothing changes.
    let p = b
        .post(
            "/cases/1/act",
            &[
                ("csrf", &csrf),
                ("action", "submit"),
                ("step", "raise"),
                ("f.title", "楼道声控灯"),
                ("f.channel", "carrier-pigeon"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("channel"), "{}", p.body);
    // Entered for a resident: both are recorded.
    let p = b
        .post(
            "/cases/1/act",
            &[
                ("csrf", &csrf),
                ("action", "submit"),
                ("step", "raise"),
                ("f.title", "楼道声控灯"),
                ("f.channel", "visit"),
                ("f.category", "building"),
                ("f.cost", "4000"),
                ("on_behalf_of", "居民钱"),
            ],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/cases/1?done=1"), "{}", p.body);
    let page = b.get("/cases/1?done=1").await;
    assert!(page.body.contains("已办理"), "{}", page.body);
    assert!(page.body.contains("zhang（代 居民钱）"), "the history names both: {}", page.body);
    assert!(page.body.contains("被拒绝"), "the refusal is in the history, marked: {}", page.body);
    assert!(page.body.contains("liuhangli-2026-0001"), "the data table shows the registration: {}", page.body);
    // The overview counts it at its stage, for its community.
    let home = b.get("/").await;
    let row = home.body.split("<tr>").find(|r| r.contains("柳航里社区")).expect("a row for Liuhangli").to_owned();
    let cells: Vec<&str> = row.split("<td>").skip(2).map(|c| c.split("</td>").next().unwrap()).collect();
    assert_eq!(&cells[..6], &["0", "1", "0", "0", "0", "0"], "screened, waiting for the sitting (议): {row}");
    assert!(
        home.body.contains("提") && home.body.contains("本周到期") && home.body.contains("最近一次规则更新"),
        "{}",
        home.body
    );
    // The list finds it; the CSV opens in Excel.
    let list = b.get("/cases?workflow=pingcheng/yongtai/liuhangli/proposal").await;
    assert!(list.body.contains("楼道声控灯"), "{}", list.body);
    assert!(b.get("/cases?text=声控").await.body.contains("楼道声控灯"));
    assert!(b.get("/cases?text=快递柜").await.body.contains("没有符合条件的事项"));
    assert!(b.get("/cases?overdue=1").await.body.contains("没有符合条件的事项"));
    assert!(b.get("/cases?sort=urgency").await.body.contains("楼道声控灯"));
    let csv = b.get("/cases.csv").await;
    assert!(csv.body.starts_with('\u{feff}'), "a byte-order mark for Excel");
    assert!(csv.body.contains("楼道声控灯") && csv.body.contains("编号"), "{}", csv.body);
    // Another scope sees none of it; a viewer sees no forms.
    let mut other = staff(&api, &admin, "li", "chengguan").await;
    assert_eq!(other.get("/cases/1").await.status, StatusCode::NOT_FOUND);
    assert!(!other.get("/cases").await.body.contains("楼道声控灯"));
    let viewer_token = api.token("viewer", "pingcheng", &[]).await;
    let mut v = Browser::new(&api);
    let form = v.get("/login").await;
    let csrf = Browser::csrf(&form);
    v.post("/login", &[("csrf", &csrf), ("token", &viewer_token)]).await;
    let page = v.get("/cases/1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("/cases/1/act"), "no action forms for a viewer");
    let csrf = Browser::csrf(&page);
    let p = v.post("/cases/1/act", &[("csrf", &csrf), ("action", "co_sign")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn workflows_show_their_steps_params_by_layer_versions_and_a_side_by_side_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let wf = tmp.path().join("workflows");
    common::copy_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"), &wf);
    let api = Api::on(&wf).await;
    let admin = api.token("admin", "*", &[]).await;
    let mut b = staff(&api, &admin, "zhang", "pingcheng").await;
    let list = b.get("/workflows").await;
    assert!(list.body.contains("/workflows/pingcheng/yongtai/liuhangli/proposal"), "{}", list.body);
    assert!(!list.body.contains("chengguan/"), "outside the scope: {}", list.body);
    let key = "pingcheng/yongtai/liuhangli/proposal";
    let page = b.get(&format!("/workflows/{key}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<code>await_sitting</code>"), "the steps table: {}", page.body);
    // Each param names the layer that set it: community, street, district.
    let row = |name: &str| {
        let at = page.body.find(&format!("<td><code>{name}</code></td>")).unwrap_or_else(|| panic!("{name}"));
        page.body[at..].split("</tr>").next().unwrap().to_owned()
    };
    assert!(row("quorum").contains("0.6") && row("quorum").contains("柳航里社区"), "{}", row("quorum"));
    assert!(
        row("review_period").contains("5wd") && row("review_period").contains("永泰街道"),
        "{}",
        row("review_period")
    );
    assert!(row("co_signers").contains("平城区"), "{}", row("co_signers"));
    let svg = b.get(&format!("/workflows/{key}/diagram.svg")).await;
    assert!(svg.body.contains("<svg"), "the drawing");
    // A second version: the community asks for fewer opinions before works; the diff shows both sides.
    let file = wf.join("pingcheng/yongtai/liuhangli/proposal.toml");
    let text = std::fs::read_to_string(&file).unwrap().replace("min_responses = 3", "min_responses = 2");
    std::fs::write(&file, text).unwrap();
    assert!(api.reloader.reload("test").await.unwrap().ok);
    let page = b.get(&format!("/workflows/{key}")).await;
    assert!(page.body.contains("action=\"/workflows/pingcheng/yongtai/liuhangli/proposal/diff\""), "{}", page.body);
    let diff = b.get(&format!("/workflows/{key}/diff?from=1&to=2")).await;
    assert_eq!(diff.status, StatusCode::OK, "{}", diff.body);
    assert!(diff.body.contains("opinion_before"), "in words: {}", diff.body);
    let changed =
        diff.body.split("<tr class=\"change\">").nth(1).expect("a changed line").split("</tr>").next().unwrap();
    assert!(changed.contains("min_responses = 3") && changed.contains("min_responses = 2"), "{changed}");
    assert_eq!(b.get(&format!("/workflows/{key}/diff?from=1&to=9")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        b.get("/workflows/chengguan/tianshuinanlu/garden").await.status,
        StatusCode::NOT_FOUND,
        "outside the scope"
    );
}

#[tokio::test]
async fn admins_make_accounts_and_tokens_in_the_console_and_see_failed_deliveries() {
    let api = Api::new().await;
    let root = api.token("admin", "pingcheng", &[]).await;
    let mut a = Browser::new(&api);
    let form = a.get("/login").await;
    let csrf = Browser::csrf(&form);
    a.post("/login", &[("csrf", &csrf), ("token", &root)]).await;
    let page = a.get("/accounts").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("href=\"/operations\""), "admins are offered the admin pages");
    let csrf = Browser::csrf(&page);
    // A new account: its first password is shown once, on the answer.
    let p = a
        .post(
            "/accounts",
            &[
                ("csrf", &csrf),
                ("do", "create_account"),
                ("name", "qian"),
                ("role", "operator"),
                ("scope", "pingcheng/yongtai/liuhangli"),
                ("acts_as", "staff, grid_worker"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let at = p.body.find("class=\"secret-value\">").expect("the first password") + 21;
    let first = p.body[at..].split('<').next().unwrap().to_owned();
    assert_eq!(first.len(), 16, "{first}");
    assert!(!a.get("/accounts").await.body.contains(&first), "shown once");
    // Outside the admin's scope: refused, naming why.
    let p = a
        .post(
            "/accounts",
            &[("csrf", &csrf), ("do", "create_account"), ("name", "x"), ("role", "admin"), ("scope", "*")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("超出了您自己的管辖范围"), "{}", p.body);
    // The holder signs in with it; disabled from the console, they are out.
    let mut q = Browser::new(&api);
    assert_eq!(q.sign_in("qian", &first).await.location.as_deref(), Some("/"));
    let (_, list) = api.call("GET", "/api/v1/accounts", Some(&root), None).await;
    let id = list["items"][0]["id"].as_i64().unwrap().to_string();
    assert_eq!(list["items"][0]["acts_as"], json!(["staff", "grid_worker"]));
    let p = a.post("/accounts", &[("csrf", &csrf), ("do", "disable"), ("id", &id)]).await;
    assert_eq!(p.location.as_deref(), Some("/accounts?done=1"));
    assert_eq!(q.get("/").await.location.as_deref(), Some("/login"));
    // A token: its secret shown once; revoked from the console.
    let p = a
        .post(
            "/accounts",
            &[
                ("csrf", &csrf),
                ("do", "create_token"),
                ("name", "hotline-bridge"),
                ("role", "operator"),
                ("scope", "pingcheng"),
            ],
        )
        .await;
    let at = p.body.find("class=\"secret-value\">").expect("the token") + 21;
    let secret = p.body[at..].split('<').next().unwrap().to_owned();
    assert!(secret.starts_with("yishi_"), "{secret}");
    let (s, _) = api.call("GET", "/api/v1/whoami", Some(&secret), None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, tokens) = api.call("GET", "/api/v1/tokens", Some(&root), None).await;
    let tid =
        tokens["items"].as_array().unwrap().iter().find(|t| t["name"] == "hotline-bridge").unwrap()["id"].to_string();
    a.post("/accounts", &[("csrf", &csrf), ("do", "revoke"), ("id", &tid)]).await;
    let (s, _) = api.call("GET", "/api/v1/whoami", Some(&secret), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Operations: a topic on next week's sitting has its deadline (3 days after the sitting)
    // falling due within 7 days once 5 days pass; nothing given up on; the reload is listed.
    let clerk = api.token("operator", "pingcheng", &["staff", "resident"]).await;
    let (_, case) = api
        .call(
            "POST",
            "/api/v1/instances",
            Some(&clerk),
            Some(json!({ "workflow": "pingcheng/yongtai/liuhangli/proposal", "data": { "title": "修补篮球场" } })),
        )
        .await;
    let cid = case["id"].as_i64().unwrap();
    let submit = json!({ "action": "submit", "payload": { "title": "修补篮球场", "channel": "visit", "category": "building", "cost": 3000 } });
    api.call("POST", &format!("/api/v1/instances/{cid}/actions"), Some(&clerk), Some(submit)).await;
    let date =
        chrono::DateTime::from_timestamp_millis(yishi_core::clock::Clock::now(api.clock.as_ref()) + 8 * 86_400_000)
            .unwrap()
            .to_rfc3339();
    let body =
        json!({ "unit": "pingcheng/yongtai/liuhangli", "date": date, "place": "议事厅", "expected": ["r1", "r2"] });
    let (st, v) = api.call("POST", "/api/v1/sittings", Some(&clerk), Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let ops = a.get("/operations").await;
    assert!(!ops.body.contains("修补篮球场"), "due in 11 days: not yet");
    api.clock.advance(5 * 86_400_000);
    // Five days on, the session has long expired: sign in again.
    let form = a.get("/login").await;
    let csrf = Browser::csrf(&form);
    a.post("/login", &[("csrf", &csrf), ("token", &root)]).await;
    let ops = a.get("/operations").await;
    let csrf = Browser::csrf(&ops);
    assert!(ops.body.contains("修补篮球场") && ops.body.contains("6 天后到期"), "{}", ops.body);
    assert!(ops.body.contains("所有通知都已送达"), "{}", ops.body);
    assert!(ops.body.contains("<td>test</td>"), "the start-up reload is in the history: {}", ops.body);
    let p = a.post("/operations/retry", &[("csrf", &csrf), ("id", "99")]).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    // Not for operators.
    let mut op = staff(&api, &root, "sun", "pingcheng").await;
    assert_eq!(op.get("/accounts").await.status, StatusCode::FORBIDDEN);
    assert!(!op.get("/").await.body.contains("href=\"/accounts\""));
}

#[tokio::test]
async fn the_rule_editor_checks_previews_and_saves_through_the_activation_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let wf = tmp.path().join("workflows");
    common::copy_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"), &wf);
    let api = Api::on(&wf).await;
    let admin = api.token("admin", "pingcheng/yongtai", &[]).await;
    let mut a = Browser::new(&api);
    let form = a.get("/login").await;
    let csrf = Browser::csrf(&form);
    a.post("/login", &[("csrf", &csrf), ("token", &admin)]).await;
    let files = a.get("/rules").await;
    assert!(files.body.contains("pingcheng/yongtai/liuhangli/proposal.toml"), "{}", files.body);
    assert!(!files.body.contains("pingcheng/proposal.toml\""), "the district's file is outside the scope");
    let file = "pingcheng/yongtai/liuhangli/proposal.toml";
    let page = a.get(&format!("/rules/edit?file={file}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = Browser::csrf(&page);
    let original = std::fs::read_to_string(wf.join(file)).unwrap();
    // A mistake: shown at its line, in Chinese; saving is refused and the file stays as it was.
    let broken = original.replace("kind = \"evaluate\"", "kind = \"evalute\"");
    let p = a.post("/rules/edit", &[("csrf", &csrf), ("file", file), ("text", &broken), ("do", "check")]).await;
    assert_eq!(p.status, StatusCode::OK);
    let line = broken.lines().position(|l| l.contains("evalute")).unwrap() + 1;
    let flagged = p
        .body
        .split(&format!("id=\"line-{line}\""))
        .nth(1)
        .expect("the line is flagged")
        .split("</tr>")
        .next()
        .unwrap()
        .to_owned();
    assert!(flagged.contains("Y0") && flagged.contains("evalute"), "{flagged}");
    let p = a.post("/rules/edit", &[("csrf", &csrf), ("file", file), ("text", &broken), ("do", "save")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("未保存"), "{}", p.body);
    assert_eq!(std::fs::read_to_string(wf.join(file)).unwrap(), original);
    // A good change: the preview says what changes and runs the scenarios; saving activates it.
    let better = original.replace("min_responses = 3", "min_responses = 2");
    let p = a.post("/rules/edit", &[("csrf", &csrf), ("file", file), ("text", &better), ("do", "preview")]).await;
    assert!(p.body.contains("opinion_before") && p.body.contains("场景测试") && p.body.contains("✓"), "{}", p.body);
    assert!(!p.body.contains("✗"), "every scenario passes: {}", p.body);
    let p = a.post("/rules/edit", &[("csrf", &csrf), ("file", file), ("text", &better), ("do", "save")]).await;
    assert_eq!(p.location.as_deref(), Some(&*format!("/rules/edit?file={file}&saved=1")), "{}", p.body);
    assert_eq!(std::fs::read_to_string(wf.join(file)).unwrap(), better);
    let (_, versions) =
        api.call("GET", "/api/v1/workflows/pingcheng/yongtai/liuhangli/proposal/versions", Some(&admin), None).await;
    let last = versions["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["version"], 2, "{versions}");
    assert_eq!(last["created_by"], format!("console: admin@pingcheng/yongtai saved {file}"), "who and which file");
    // Operators do not edit rules; forged forms change nothing.
    let p = a.post("/rules/edit", &[("csrf", "forged"), ("file", file), ("text", &original), ("do", "save")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let mut op = staff(&api, &admin, "zhou", "pingcheng/yongtai").await;
    assert_eq!(op.get("/rules").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_date_field_is_a_date_control_and_only_a_date_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("t")).unwrap();
    std::fs::write(tmp.path().join("t/unit.toml"), "name = \"测试社区\"\n").unwrap();
    std::fs::write(
        tmp.path().join("t/visit.toml"),
        r#"
id = "visit"
title = { zh-CN = "上门走访", en = "home visit" }
[roles]
staff = "staff"
[[steps]]
id = "plan"
kind = "task"
title = { zh-CN = "约定走访日期", en = "agree the date" }
roles = ["staff"]
actions.schedule = { summary = { zh-CN = "约定日期", en = "agree the date" }, fields = { visit_on = "date", note = "string?" } }
on = { schedule = "work" }
[[steps]]
id = "work"
kind = "implement"
title = { zh-CN = "上门整改", en = "the works" }
roles = ["staff"]
on = { done = "done", abandoned = "done" }
[[steps]]
id = "done"
kind = "end"
"#,
    )
    .unwrap();
    let api = Api::on(tmp.path()).await;
    let admin = api.token("admin", "*", &[]).await;
    let mut b = staff(&api, &admin, "zhang", "t").await;
    let list = b.get("/cases").await;
    let csrf = Browser::csrf(&list);
    let p = b.post("/cases", &[("csrf", &csrf), ("workflow", "t/visit"), ("title", "走访独居老人")]).await;
    let at = p.location.unwrap();
    let page = b.get(&at).await;
    assert!(page.body.contains("name=\"f.visit_on\" type=\"date\""), "{}", page.body);
    let csrf = Browser::csrf(&page);
    let id = at.trim_start_matches("/cases/").split('?').next().unwrap().to_owned();
    let act = format!("/cases/{id}/act");
    let p = b.post(&act, &[("csrf", &csrf), ("action", "schedule"), ("step", "plan"), ("f.visit_on", "下周二")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("日期（YYYY-MM-DD）"), "{}", p.body);
    let p =
        b.post(&act, &[("csrf", &csrf), ("action", "schedule"), ("step", "plan"), ("f.visit_on", "2026-12-01")]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (_, v) = api.call("GET", &format!("/api/v1/instances/{id}"), Some(&admin), None).await;
    assert_eq!(v["instance"]["data"]["plan"]["visit_on"], "2026-12-01", "{v}");
    // A plan's task list is written one task a line, not as JSON.
    let page = b.get(&at).await;
    assert!(page.body.contains("name=\"f.tasks\"") && page.body.contains("购买座椅 | 1"), "{}", page.body);
    let p = b.post(&act, &[("csrf", &csrf), ("action", "plan"), ("step", "work"), ("f.tasks", "买材料 | x")]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "a weight that is no number");
    let p = b
        .post(&act, &[("csrf", &csrf), ("action", "plan"), ("step", "work"), ("f.tasks", "买材料\n上门安装 | 2\n")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (_, v) = api.call("GET", &format!("/api/v1/instances/{id}/history"), Some(&admin), None).await;
    let plan = v["events"].as_array().unwrap().iter().find(|e| e["action"] == "plan").unwrap().clone();
    assert_eq!(
        plan["payload"]["tasks"],
        json!([{ "id": "t1", "title": "买材料", "weight": 1.0 }, { "id": "t2", "title": "上门安装", "weight": 2.0 }])
    );
}
