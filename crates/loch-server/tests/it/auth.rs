//! Authentication: with clients configured, every route but config, token and health needs a
//! valid bearer token; clients get one with `client_credentials` and refresh it by exchange.

use std::collections::HashMap;

use iceberg::{Catalog, NamespaceIdent, TableCreation};
use reqwest::Method;
use serde_json::Value;

use crate::common::{Backend, CLIENT, Storage, TestServer, simple_schema};

#[tokio::test]
async fn tokens_are_required_when_clients_are_configured() {
    let Some(server) = TestServer::start_with(Backend::Sqlite, Storage::File, true).await else { return };
    let anonymous = reqwest::Client::new();
    let get = |path: &str| anonymous.get(format!("{}{path}", server.url));

    // Open routes.
    assert_eq!(get("/api/iceberg/rest/v1/config?warehouse=local").send().await.unwrap().status(), 200);
    assert_eq!(get("/health").send().await.unwrap().status(), 200);
    // Everything else needs a token.
    for path in
        ["/api/iceberg/rest/v1/catalogs/local/namespaces", "/api/v1/catalogs", "/metrics", "/api/v1/openapi.json"]
    {
        let response = get(path).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "NotAuthorizedException", "{path}");
    }
    let bogus = get("/api/v1/catalogs").bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(bogus.status(), 401);

    // Wrong credentials are refused with an OAuth error.
    let token_url = format!("{}/api/iceberg/rest/v1/oauth/tokens", server.url);
    let wrong = anonymous
        .post(&token_url)
        .form(&[("grant_type", "client_credentials"), ("client_id", CLIENT.0), ("client_secret", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"], "invalid_client");
    let unsupported = anonymous.post(&token_url).form(&[("grant_type", "password")]).send().await.unwrap();
    assert_eq!(unsupported.status(), 400);
    assert_eq!(unsupported.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");

    // Basic auth works as well as form fields; the token works; exchanging it refreshes it.
    let basic = anonymous
        .post(&token_url)
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let token: Value = basic.json().await.unwrap();
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["expires_in"], 3600);
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(get("/api/v1/catalogs").bearer_auth(access).send().await.unwrap().status(), 200);
    let exchanged = anonymous
        .post(&token_url)
        .bearer_auth(access)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", access),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(exchanged.status(), 200);
    let refreshed: Value = exchanged.json().await.unwrap();
    assert_ne!(refreshed["access_token"], token["access_token"]);

    // iceberg-rust's REST client authenticates with `credential = id:secret`.
    let catalog = server.rest_catalog().await;
    let ns = NamespaceIdent::new("secure".into());
    catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    catalog.create_table(&ns, TableCreation::builder().name("t".into()).schema(simple_schema()).build()).await.unwrap();
    let listed = server.request(Method::GET, "/api/v1/catalogs/local/tables").send().await.unwrap();
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn tokens_survive_a_restart() {
    let Some(mut server) = TestServer::start_with(Backend::Postgres, Storage::File, true).await else { return };
    server.restart().await;
    let response = server.request(Method::GET, "/api/v1/catalogs").send().await.unwrap();
    assert_eq!(response.status(), 200, "a token issued before the restart still works");
}
