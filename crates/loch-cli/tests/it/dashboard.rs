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
        "CREATE TABLE shop.users (id BIGINT, name STRING, PRIMARY KEY (id)) TBLPROPERTIES ('write.upsert.enabled' = 'true', 'self-optimizing.minor.trigger.interval' = '99999999999999', 'self-optimizing.minor.trigger.file-count' = '100000')",
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
    let planned = sql(&server, "OPTIMIZE shop.users");
    assert!(planned.contains("minor"), "{planned}");
    server.wait_for("the keyed minor", "/api/v1/tables/local/shop/users/optimizing", Duration::from_secs(60), |t| {
        t["status"] == "idle"
    });
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
                "next plan allowed",
                "(last plan ",
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
    assert!(text.contains("\tdata\t"), "{text}");
    for tab in ["details", "changes"] {
        browser.goto(&format!("{}/tables/local/shop/users?tab={tab}", server.url));
        let text = check_page(&browser, &format!("table-users-{tab}"));
        assert!(text.contains("keyed"), "{text}");
    }
    let text = browser.text();
    assert!(text.contains("Change records") && text.contains("CDC stream"), "{text}");
    assert!(text.contains("three"), "the newest change, an upsert of key 3, is shown: {text}");
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
    let warehouse_line = browser
        .execute("return document.querySelector('textarea[name=properties]').value;", json!([]))
        .as_str()
        .unwrap()
        .to_string();
    browser.type_into("textarea[name=properties]", &format!("{}table.self-optimizing.quota=0.25\n", warehouse_line));
    browser.click_and_load("form[action='/catalogs/made_in_browser'] button");
    assert!(browser.text().contains("table.self-optimizing.quota"), "edited: {}", browser.text());
    browser.click_and_load("form[action$='/delete'] button");
    assert!(!browser.text().contains("made_in_browser"), "deleted: {}", browser.text());

    // Optimizer groups: create and delete.
    browser.goto(&format!("{}/optimizing", server.url));
    let text = check_page(&browser, "optimizing");
    assert!(text.contains("default") && text.contains("shop"), "{text}");
    browser.type_into("input[name=name]", "nightly");
    browser.click_and_load("form[action='/optimizing/groups'] button");
    assert!(browser.text().contains("nightly"), "{}", browser.text());
    browser.execute("document.querySelectorAll('details').forEach(d => d.open = true);", json!([]));
    browser.type_into("form[action='/optimizing/groups/nightly'] textarea", "scheduling-policy=balanced");
    browser.click_and_load("form[action='/optimizing/groups/nightly'] button");
    assert!(browser.source().contains("scheduling-policy=balanced"), "edited group");
    browser.click_and_load("form[action='/optimizing/groups/nightly/delete'] button");
    assert!(!browser.text().contains("nightly"), "{}", browser.text());

    // Release a `loch optimizer` process: it is no longer listed, and it stops by itself.
    let mut optimizer = server.optimizer(1, &[]);
    let listed = server.wait_for(
        "the optimizer",
        "/api/v1/optimizer-groups/default/optimizers",
        Duration::from_secs(30),
        |list| list.as_array().is_some_and(|l| l.iter().any(|o| o["kind"] == "external")),
    );
    let external = listed.as_array().unwrap().iter().find(|o| o["kind"] == "external").unwrap();
    let id = external["id"].as_str().unwrap().to_string();
    browser.goto(&format!("{}/optimizing", server.url));
    assert!(browser.text().contains(&id), "{}", browser.text());
    browser.screenshot("optimizing-release");
    browser.click_and_load(&format!("form[action='/optimizing/groups/default/optimizers/{id}/release'] button"));
    assert!(!browser.text().contains(&id), "released: {}", browser.text());
    let status = optimizer.wait(Duration::from_secs(30)).expect("a released optimizer stops");
    assert!(status.success(), "{status}: {}", optimizer.log_tail());
    assert!(optimizer.log_tail().contains("released by an operator"), "{}", optimizer.log_tail());

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
    // One result tab per statement; the last with rows is open, the first is a click away.
    assert!(text.contains("Statement 2") && !text.contains("Statement 1 ("), "{text}");
    browser.click_and_load("nav[aria-label=Results] li:first-child a");
    let text = browser.text();
    assert!(text.contains("Statement 1 (") && text.contains("count(*)") && !text.contains("three"), "{text}");
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
        "/optimizing/groups/default/optimizers/0123abcd/release",
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

/// Registers `shop.big`: 100,000 data files (manifest entries only, as a long-lived streaming
/// table's manifests list them; the pages never read data files) in the newest of 5,000
/// snapshots.
fn register_big_table(server: &Serve, warehouse: &std::path::Path) {
    use iceberg::spec::{
        DataContentType, DataFileBuilder, DataFileFormat, NestedField, PrimitiveType, Schema, Struct, Type,
        UnboundPartitionSpec,
    };
    use loch_table::snapshot::{RowDelta, SnapshotAction};
    let metadata_location = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
        let schema = Schema::builder()
            .with_fields(vec![NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into()])
            .build()
            .unwrap();
        let spec = UnboundPartitionSpec::builder().build();
        let mut local =
            loch_testkit::local::LocalTable::create(&warehouse.join("shop/big"), schema, spec).await.unwrap();
        let location = local.table.metadata().location().to_string();
        let mut delta = RowDelta::new();
        for i in 0..100_000 {
            let file = DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path(format!("{location}/data/{i:08}-0-big.parquet"))
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::empty())
                .record_count(1000)
                .file_size_in_bytes(65_536)
                .build()
                .unwrap();
            delta = delta.add_rows(file);
        }
        local.commit(delta.prepare(&local.table).await.unwrap()).await.unwrap();
        // 4,999 older snapshots in front of the real one, a minute apart.
        let mut json = serde_json::to_value(local.table.metadata()).unwrap();
        let real = json["snapshots"][0].clone();
        let end = real["timestamp-ms"].as_i64().unwrap();
        let (mut snapshots, mut log) = (Vec::new(), Vec::new());
        for i in 0..5_000i64 {
            let mut s = real.clone();
            let id = if i == 4_999 { real["snapshot-id"].as_i64().unwrap() } else { 1_000_000 + i };
            s["snapshot-id"] = json!(id);
            s["sequence-number"] = json!(i + 1);
            s["timestamp-ms"] = json!(end - (4_999 - i) * 60_000);
            match i {
                0 => s.as_object_mut().unwrap().remove("parent-snapshot-id"),
                _ => s.as_object_mut().unwrap().insert("parent-snapshot-id".into(), json!(1_000_000 + i - 1)),
            };
            log.push(json!({ "snapshot-id": id, "timestamp-ms": s["timestamp-ms"] }));
            snapshots.push(s);
        }
        json["snapshots"] = json!(snapshots);
        json["snapshot-log"] = json!(log);
        json["last-sequence-number"] = json!(5_000);
        let path = format!("{location}/metadata/00002-big.metadata.json");
        local
            .table
            .file_io()
            .new_output(&path)
            .unwrap()
            .write(serde_json::to_vec(&json).unwrap().into())
            .await
            .unwrap();
        path
    });
    let (status, answer) = crate::common::http::call(
        Method::POST,
        &format!("{}/api/iceberg/rest/v1/catalogs/local/namespaces/shop/register", server.url),
        Some(json!({ "name": "big", "metadata-location": metadata_location })),
    );
    assert_eq!(status, 200, "{answer}");
}

/// A table of 100,000 files and 5,000 snapshots: every tab opens in under a second (the
/// server's time to answer, measured by the browser's navigation timing), the first look too.
#[test]
fn a_table_of_100000_files_and_5000_snapshots_opens_in_under_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Serve::start_with(dir.path(), loch_testkit::free_port(), &[("LOCH_DASHBOARD_ADMIN__PASSWORD", PASSWORD)]);
    sql(&server, "CREATE NAMESPACE shop");
    register_big_table(&server, &dir.path().join("warehouse"));
    // As users meet it: the server evaluates a table after each commit, so its manifests are
    // decoded (once, shared with the pages) before anyone looks.
    server.wait_for("the evaluation", "/api/v1/tables/local/shop/big/optimizing", Duration::from_secs(60), |t| {
        !t["summary"].is_null()
    });
    let Some(browser) = Browser::start() else { return };
    browser.goto(&format!("{}/login", server.url));
    browser.type_into("input[name=username]", "admin");
    browser.type_into("input[name=password]", PASSWORD);
    browser.click_and_load("button[type=submit]");
    let mut times = Vec::new();
    for (tab, expected) in [
        ("details", "100,000 (0 delete files)"),
        ("files", "100,000 live files"),
        ("files&partition=%28unpartitioned%29&page=1000", "Rows 49,951–50,000 of 100,000"),
        ("snapshots", "Rows 1–50 of 5,000"),
        ("snapshots&page=100", "Rows 4,951–5,000 of 5,000"),
        ("optimizing", "Processes"),
        ("maintenance", "expire-snapshots"),
        ("operations", "metadata log"),
    ] {
        let url = format!("{}/tables/local/shop/big?tab={tab}", server.url);
        // The first look at a snapshot's files builds its list from the decoded manifests;
        // later looks (paging, other partitions) use the list the first one kept.
        let timed = || {
            browser.goto(&url);
            let script = "const n = performance.getEntriesByType('navigation')[0]; return n.responseEnd - n.startTime;";
            browser.execute(script, json!([])).as_f64().unwrap().round()
        };
        let (first, again) = (timed(), timed());
        let text = browser.text();
        assert!(text.contains(expected), "{tab}: {expected:?} not in\n{text}");
        times.push((tab, first, again));
        browser.screenshot(&format!("big-table-{}", tab.split('&').next().unwrap_or(tab)));
    }
    eprintln!("big table, ms until the page's last byte (first look, again): {times:?}");
    for (tab, first, again) in &times {
        assert!(*first < 1000.0 && *again < 1000.0, "{tab} took {first} ms, then {again} ms");
    }
    drop(browser);
    server.stop("TERM");
}

/// With `auth.clients` on, the dashboard still needs only its login, and its terminal's
/// statements reach the catalog with a token of their own.
#[test]
fn the_terminal_page_runs_statements_when_clients_need_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start_with(dir.path(), loch_testkit::free_port(), &[("LOCH_AUTH_CLIENTS", "spark:s3cret-77")]);
    let client = plain::blocking_client();
    let (_, _, cookie) = client.post(&format!("{}/login", server.url), None, "username=admin&password=admin");
    let session = cookie.expect("a session cookie").split(';').next().unwrap().to_string();
    let (status, _, page) = client.get(&format!("{}/terminal", server.url), Some(&session));
    assert_eq!(status, 200);
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_string();
    let script = "CREATE NAMESPACE t; CREATE TABLE t.x (id INT); INSERT INTO t.x VALUES (1), (2); SELECT count(*) AS n FROM t.x;";
    let form = format!("csrf={csrf}&catalog=local&stop_on_error=true&script={}", loch_sql::http::encode(script));
    let (status, location, _) = client.post(&format!("{}/terminal", server.url), Some(&session), &form);
    assert_eq!(status, 303, "{location}");
    let id = location.rsplit('=').next().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, state) = client.get(&format!("{}/terminal/{id}/state", server.url), Some(&session));
        if !state.contains("running") {
            assert!(state.contains("finished"), "{state}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the script did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, _, page) = client.get(&format!("{}{location}", server.url), Some(&session));
    assert!(!page.contains("failed") && page.contains("<td>2</td>"), "{page}");
    // The API itself still wants a token.
    let (status, _) = crate::common::http::call(Method::GET, &format!("{}/api/v1/catalogs", server.url), None);
    assert_eq!(status, 401);
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
