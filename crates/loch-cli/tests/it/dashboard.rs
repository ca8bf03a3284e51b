//! The dashboard in a real browser (headless Chromium) against a real `loch serve` with real
//! tables: log in, every page and tab, the forms, security (sessions, CSRF, masked secrets,
//! escaping), accessibility basics. Screenshots of every page land in `target/screenshots/`.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::browser::Browser;
use crate::common::{LOCH, Serve};

const PASSWORD: &str = "correct-horse-battery-staple-9d1";
const S3_SECRET: &str = "SECRETKEY-3f9a1c77";

fn sql(server: &Serve, script: &str) -> String {
    let output = std::process::Command::new(LOCH).args(["sql", "--ams", &server.url, "-e", script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script}: {stderr}");
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// A server with an Iceberg table (optimized, deleted from, maintained), a keyed table, a table
/// whose name is markup, and a catalog holding a secret.
fn seeded_server(dir: &std::path::Path) -> Serve {
    let server = Serve::start_with(
        dir,
        loch_testkit::free_port(),
        &[("LOCH_DASHBOARD_ADMIN__PASSWORD", PASSWORD), ("LOCH_OPTIMIZER_TEST_TASK_DELAY_MS", "4000")],
    );
    sql(&server, "CREATE NAMESPACE shop");
    sql(
        &server,
        "CREATE TABLE shop.orders (id BIGINT NOT NULL, region STRING, amount DOUBLE) PARTITIONED BY (region) \
         TBLPROPERTIES ('self-optimizing.minor.trigger.interval' = '99999999999999', 'self-optimizing.minor.trigger.file-count' = '100000')",
    );
    for i in 0..4 {
        sql(
            &server,
            &format!(
                "INSERT INTO shop.orders SELECT value + {}, 'r' || CAST(value % 3 AS VARCHAR), value * 1.5 FROM range(0, 40)",
                i * 100
            ),
        );
    }
    sql(&server, "ALTER TABLE shop.orders ADD COLUMN note STRING");
    sql(&server, "DELETE FROM shop.orders WHERE id % 7 = 0");
    sql(
        &server,
        "CREATE TABLE shop.users (id BIGINT, name STRING, PRIMARY KEY (id)) TBLPROPERTIES ('write.upsert.enabled' = 'true', 'self-optimizing.minor.trigger.interval' = '99999999999999')",
    );
    sql(&server, "INSERT INTO shop.users SELECT value, 'u' || CAST(value AS VARCHAR) FROM range(0, 30)");
    sql(&server, "INSERT INTO shop.users VALUES (3, 'three')");
    sql(
        &server,
        "CREATE TABLE shop.\"<script>alert(1)</script>\" (id INT) TBLPROPERTIES ('note' = '<img src=x onerror=alert(2)>')",
    );
    let warehouse = format!("file://{}", dir.join("extra-warehouse").display());
    let (status, answer) = crate::common::http::call(
        Method::POST,
        &format!("{}/api/v1/catalogs", server.url),
        Some(json!({ "name": "extra", "properties": { "warehouse": warehouse, "s3.secret-access-key": S3_SECRET } })),
    );
    assert_eq!(status, 201, "{answer}");
    server
}

fn login(browser: &Browser, server: &Serve) {
    browser.goto(&format!("{}/", server.url));
    assert!(
        browser.current_url().contains("/login"),
        "a page without a session sends to the login: {}",
        browser.current_url()
    );
    assert_eq!(browser.title(), "Log in · Loch");
    browser.type_into("input[name=username]", "admin");
    browser.type_into("input[name=password]", "wrong");
    browser.click_and_load("button[type=submit]");
    assert!(browser.text().contains("Wrong user name or password"), "{}", browser.text());
    browser.type_into("input[name=username]", "admin");
    browser.type_into("input[name=password]", PASSWORD);
    browser.click_and_load("button[type=submit]");
    assert!(browser.title().starts_with("Overview"), "{}", browser.title());
}

/// Checks the basics every page must have: a title, headings in order, labelled fields, no
/// secret in its HTML; then saves screenshots at 1280×800 and 390×844.
fn check_page(browser: &Browser, name: &str) -> String {
    let title = browser.title();
    assert!(title.ends_with("· Loch"), "{name}: title {title:?}");
    let problems = browser.execute(
        r#"
        const out = [];
        let last = 0;
        for (const h of document.querySelectorAll('h1, h2, h3, h4')) {
          const level = Number(h.tagName[1]);
          if (level > last + 1) out.push('heading ' + h.tagName + ' "' + h.innerText + '" after h' + last);
          last = level;
        }
        if (document.querySelectorAll('h1').length !== 1) out.push('not exactly one h1');
        for (const f of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
          if (!f.closest('label') && !f.getAttribute('aria-label') && !(f.id && document.querySelector('label[for="' + f.id + '"]')))
            out.push('unlabelled ' + f.outerHTML);
        }
        return out;"#,
        json!([]),
    );
    assert_eq!(problems, json!([]), "{name}: accessibility");
    let html = browser.source();
    for secret in [PASSWORD, S3_SECRET] {
        assert!(!html.contains(secret), "{name}: a secret is in the page's HTML");
    }
    assert!(!html.contains("<script>alert(1)"), "{name}: markup from a table name reached the page");
    browser.screenshot(&format!("{name}-1280x800"));
    browser.resize(390, 844);
    let overflow = browser.execute("return document.documentElement.scrollWidth - window.innerWidth;", json!([]));
    assert!(overflow.as_i64().unwrap_or(0) <= 1, "{name}: the page scrolls sideways at 390 px ({overflow} px)");
    browser.screenshot(&format!("{name}-390x844"));
    browser.resize(1280, 800);
    browser.text()
}

#[test]
fn dashboard_pages_forms_and_security_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = seeded_server(dir.path());
    // An optimized table: a minor process, waited for.
    let planned = sql(&server, "OPTIMIZE shop.orders");
    assert!(planned.contains("minor"), "{planned}");
    server.wait_for("the minor", "/api/v1/tables/local/shop/orders/optimizing", Duration::from_secs(60), |t| {
        t["status"] == "idle"
    });
    sql(&server, "EXPIRE SNAPSHOTS shop.orders RETAIN 3");
    let Some(browser) = Browser::start() else { return };
    login(&browser, &server);

    let text = check_page(&browser, "overview");
    for expected in [
        "Catalogs",
        "Tables",
        "Total size",
        "Optimizer threads",
        "Tables by optimizing status",
        "Largest tables",
        "orders",
    ] {
        assert!(text.contains(expected), "overview lacks {expected:?}:\n{text}");
    }

    browser.goto(&format!("{}/catalogs", server.url));
    let text = check_page(&browser, "catalogs");
    assert!(text.contains("local") && text.contains("extra"), "{text}");
    browser.goto(&format!("{}/catalogs/extra", server.url));
    let text = check_page(&browser, "catalog");
    assert!(text.contains("s3.secret-access-key"), "{text}");

    browser.goto(&format!("{}/tables?catalog=local", server.url));
    let text = check_page(&browser, "tables");
    assert!(
        text.contains("shop.orders") && text.contains("shop.users") && text.contains("<script>alert(1)</script>"),
        "{text}"
    );
    browser.type_into("input[name=q]", "user");
    browser.click_and_load("form[role=search] button");
    let text = browser.text();
    assert!(text.contains("shop.users") && !text.contains("shop.orders"), "search: {text}");

    for (tab, expected) in [
        (
            "details",
            vec![
                "Schema",
                "amount",
                "note",
                "Partition spec",
                "Health score",
                "Why (not) optimizing?",
                "self-optimizing.minor.trigger.file-count",
            ],
        ),
        ("files", vec!["live files in", "region=r0"]),
        ("snapshots", vec!["Files over time", "Branches and tags", "main"]),
        ("optimizing", vec!["Processes", "minor", "success"]),
        ("maintenance", vec!["expire-snapshots", "Preview", "Run now"]),
        ("operations", vec!["ADD COLUMN note"]),
    ] {
        browser.goto(&format!("{}/tables/local/shop/orders?tab={tab}", server.url));
        let text = check_page(&browser, &format!("table-orders-{tab}"));
        for e in expected {
            assert!(text.contains(e), "tab {tab} lacks {e:?}:\n{text}");
        }
    }
    browser.goto(&format!("{}/tables/local/shop/orders?tab=files&partition=region%3Dr0", server.url));
    let text = check_page(&browser, "table-orders-files-partition");
    assert!(text.contains("DATA") || text.contains("Data"), "{text}");
    for tab in ["details", "changes"] {
        browser.goto(&format!("{}/tables/local/shop/users?tab={tab}", server.url));
        let text = check_page(&browser, &format!("table-users-{tab}"));
        assert!(text.contains("keyed"), "{text}");
    }
    assert!(browser.text().contains("Change records"), "{}", browser.text());
    browser.goto(&format!("{}/tables/local/shop/%3Cscript%3Ealert(1)%3C%2Fscript%3E", server.url));
    let text = check_page(&browser, "table-markup-name");
    assert!(text.contains("<script>alert(1)</script>") && text.contains("<img src=x onerror=alert(2)>"), "{text}");

    // Maintenance: preview, then run.
    browser.goto(&format!("{}/tables/local/shop/orders?tab=maintenance", server.url));
    browser.click_and_load("form[action$='/maintenance/expire-snapshots'] button");
    let text = check_page(&browser, "maintenance-preview");
    assert!(text.contains("Preview of expire-snapshots"), "{text}");
    browser.goto(&format!("{}/tables/local/shop/orders?tab=maintenance", server.url));
    browser.click_and_load("form[action$='/maintenance/expire-snapshots'] button.primary");
    let text = browser.text();
    assert!(text.contains("Run of expire-snapshots"), "{text}");
    browser.goto(&format!("{}/tables/local/shop/orders?tab=maintenance", server.url));
    assert!(browser.text().contains("success"), "the run is listed: {}", browser.text());

    // Catalogs: create and delete.
    browser.goto(&format!("{}/catalogs", server.url));
    browser.type_into("input[name=name]", "made_in_browser");
    browser.type_into("input[name=warehouse]", &format!("file://{}", dir.path().join("browser-wh").display()));
    browser.click_and_load("form[action='/catalogs'] button");
    assert!(browser.title().starts_with("Catalog made_in_browser"), "{}", browser.title());
    browser.click_and_load("form[action$='/delete'] button");
    assert!(!browser.text().contains("made_in_browser"), "deleted: {}", browser.text());

    // Optimizer groups: create and delete.
    browser.goto(&format!("{}/optimizing", server.url));
    let text = check_page(&browser, "optimizing");
    assert!(text.contains("default") && text.contains("shop"), "{text}");
    browser.type_into("input[name=name]", "nightly");
    browser.click_and_load("form[action='/optimizing/groups'] button");
    assert!(browser.text().contains("nightly"), "{}", browser.text());
    browser.click_and_load("form[action='/optimizing/groups/nightly/delete'] button");
    assert!(!browser.text().contains("nightly"), "{}", browser.text());

    // Cancel a running process (each task sleeps 4 s here).
    for i in 0..3 {
        sql(
            &server,
            &format!(
                "INSERT INTO shop.orders (id, region, amount) SELECT value + {}, 'r1', 1.0 FROM range(0, 5)",
                1000 + i * 10
            ),
        );
    }
    let planned = sql(&server, "OPTIMIZE shop.orders");
    assert!(planned.contains("minor"), "{planned}");
    browser.goto(&format!("{}/tables/local/shop/orders?tab=optimizing", server.url));
    browser.click_and_load("form[action*='/cancel'] button");
    let text = browser.wait_for_text("the process closed", Duration::from_secs(30), |t| t.contains("closed"));
    assert!(text.contains("closed"), "{text}");

    // The terminal: a script, then a long one stopped.
    browser.goto(&format!("{}/terminal", server.url));
    let text = check_page(&browser, "terminal");
    assert!(text.contains("Examples"), "{text}");
    browser.type_into(
        "textarea[name=script]",
        "SELECT count(*) AS n FROM shop.orders;\nSELECT name FROM shop.users WHERE id = 3;",
    );
    browser.click_and_load("form[action='/terminal'] button[type=submit]");
    let text = browser
        .wait_for_text("the script ends", Duration::from_secs(30), |t| t.contains("three") && !t.contains("running"));
    assert!(text.contains("finished"), "{text}");
    check_page(&browser, "terminal-result");
    browser.type_into("textarea[name=script]", "SELECT sum(value % 7) AS s FROM range(0, 100000000000);");
    browser.click_and_load("form[action='/terminal'] button[type=submit]");
    browser.click_and_load("form[action$='/stop'] button");
    let text = browser.text();
    assert!(text.contains("canceled"), "{text}");

    browser.goto(&format!("{}/settings", server.url));
    let text = check_page(&browser, "settings");
    assert!(text.contains("dashboard.admin-password") && text.contains("******"), "{text}");

    // Log out: the pages need a login again.
    browser.click_and_load("form.logout button");
    browser.goto(&format!("{}/settings", server.url));
    assert!(browser.current_url().contains("/login"), "{}", browser.current_url());
    drop(browser);
    server.stop("TERM");
}

/// Without a session every page redirects to the login and every form is refused; with a
/// session, a form without this session's CSRF token is refused.
#[test]
fn dashboard_pages_and_forms_need_a_session_and_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), loch_testkit::free_port());
    sql(&server, "CREATE NAMESPACE n");
    sql(&server, "CREATE TABLE n.t (id INT)");
    let client = plain::blocking_client();
    let pages = [
        "/",
        "/catalogs",
        "/catalogs/local",
        "/tables",
        "/tables/local/n/t",
        "/tables/local/n/t?tab=files",
        "/optimizing",
        "/terminal",
        "/settings",
    ];
    let forms = [
        "/catalogs",
        "/catalogs/local/delete",
        "/optimizing/groups",
        "/optimizing/groups/default/delete",
        "/terminal",
        "/tables/local/n/t/maintenance/expire-snapshots",
    ];
    for page in pages {
        let (status, location, _) = client.get(&format!("{}{page}", server.url), None);
        assert_eq!(status, 303, "{page}");
        assert!(location.starts_with("/login"), "{page}: {location}");
    }
    for form in forms {
        let (status, location, _) = client.post(&format!("{}{form}", server.url), None, "csrf=x&name=y");
        assert_eq!((status, location.as_str()), (303, "/login"), "{form}");
    }
    // Log in (admin / admin on loopback).
    let (status, _, cookie) = client.post(&format!("{}/login", server.url), None, "username=admin&password=admin");
    assert_eq!(status, 303);
    let cookie = cookie.expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    for page in pages {
        let (status, _, _) = client.get(&format!("{}{page}", server.url), Some(&session));
        assert_eq!(status, 200, "{page}");
    }
    for form in forms {
        let (status, _, _) = client.post(
            &format!("{}{form}", server.url),
            Some(&session),
            "csrf=forged&name=y&catalog=local&script=SELECT%201&warehouse=file:///tmp/x",
        );
        assert_eq!(status, 403, "{form} with a forged CSRF token");
    }
    // The forged forms changed nothing.
    assert!(sql(&server, "SHOW TABLES IN n").lines().any(|l| l.contains("| t ")), "the table stays");
    assert!(sql(&server, "SHOW CATALOGS").contains("local"), "the catalog stays");
    server.stop("TERM");
}

/// A dashboard on a non-loopback address with the default password does not serve, and says why.
#[test]
fn a_public_dashboard_with_the_default_password_refuses_to_serve() {
    let dir = tempfile::tempdir().unwrap();
    let port = loch_testkit::free_port();
    let mut command = std::process::Command::new(LOCH);
    command.args(["serve", "--data-dir"]).arg(dir.path()).args(["--bind", &format!("0.0.0.0:{port}")]);
    let server = Serve::spawn(command, port);
    let client = plain::blocking_client();
    let (status, _, body) = client.get(&format!("{}/login", server.url), None);
    assert_eq!(status, 503);
    assert!(body.contains("dashboard.admin-password"), "{body}");
    assert!(crate::common::http::get_ok(&format!("{}/health", server.url)), "the rest of the server serves");
    server.stop("TERM");
}

/// A small HTTP client that does not follow redirects and shows cookies.
mod plain {
    pub struct Blocking(::reqwest::Client);

    pub fn blocking_client() -> Blocking {
        Blocking(::reqwest::Client::builder().redirect(::reqwest::redirect::Policy::none()).build().unwrap())
    }

    impl Blocking {
        fn send(&self, request: ::reqwest::RequestBuilder) -> (u16, String, Option<String>, String) {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                let response = request.send().await.unwrap();
                let header =
                    |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                let (status, location, cookie) =
                    (response.status().as_u16(), header("location").unwrap_or_default(), header("set-cookie"));
                (status, location, cookie, response.text().await.unwrap_or_default())
            })
        }

        /// Status, Location and body of a GET.
        pub fn get(&self, url: &str, cookie: Option<&str>) -> (u16, String, String) {
            let mut request = self.0.get(url);
            if let Some(c) = cookie {
                request = request.header("cookie", c);
            }
            let (status, location, _, body) = self.send(request);
            (status, location, body)
        }

        /// Status, Location and Set-Cookie of a form POST.
        pub fn post(&self, url: &str, cookie: Option<&str>, form: &str) -> (u16, String, Option<String>) {
            let mut request =
                self.0.post(url).header("content-type", "application/x-www-form-urlencoded").body(form.to_string());
            if let Some(c) = cookie {
                request = request.header("cookie", c);
            }
            let (status, location, set_cookie, _) = self.send(request);
            (status, location, set_cookie)
        }
    }
}
