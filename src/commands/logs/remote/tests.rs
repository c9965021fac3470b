use super::*;

fn target() -> ProxyTarget {
    ProxyTarget {
        namespace: "slipway-system".into(),
        service: "slipway".into(),
        port: "metrics".into(),
    }
}

fn status(code: u16, message: &str) -> String {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "code": code})
    .to_string()
}

#[test]
fn the_controllers_refusal_keeps_its_exit_code_through_the_proxy() {
    let body = r#"{"code":5,"message":"not allowed: x may not get dockerbuilds/log"}"#;
    let e = refusal(403, body, Some(&target()));
    assert_eq!(e.exit_code(), 5);
    assert_eq!(e.to_string(), "not allowed: x may not get dockerbuilds/log");
}

#[test]
fn the_api_servers_403_names_the_proxy_permission() {
    let said = r#"services "slipway" is forbidden: User "u" cannot get resource "services/proxy""#;
    let e = refusal(403, &status(403, said), Some(&target()));
    assert_eq!(e.exit_code(), 5);
    let m = e.to_string();
    assert!(m.contains(said), "{m}");
    assert!(
        m.contains("`get` on `services/proxy` (resource name http:slipway:metrics) in namespace slipway-system"),
        "{m}"
    );
}

#[test]
fn a_missing_service_or_a_stopped_controller_says_where_it_looked() {
    let e = refusal(
        404,
        &status(404, r#"services "slipway" not found"#),
        Some(&target()),
    );
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("--controller-namespace"), "{e}");
    let e = refusal(503, &status(503, "no endpoints available"), Some(&target()));
    assert!(
        e.to_string()
            .contains("slipway-system/slipway is not running"),
        "{e}"
    );
    let e = refusal(401, &status(401, "Unauthorized"), Some(&target()));
    assert_eq!(e.exit_code(), 5);
    assert!(e.to_string().contains("kubeconfig's credentials"), "{e}");
}

#[test]
fn the_proxy_id_is_what_rbac_sees() {
    assert_eq!(target().id(), "http:slipway:metrics");
}

#[tokio::test]
async fn the_kubeconfigs_token_is_what_the_controller_gets() {
    let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    config.auth_info.token = Some("abc".to_string().into());
    let v = kubeconfig_bearer(&config).await.unwrap();
    assert_eq!(v.to_str().unwrap(), "Bearer abc");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-file").unwrap();
    let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    config.auth_info.token_file = Some(file.to_str().unwrap().into());
    let v = kubeconfig_bearer(&config).await.unwrap();
    assert_eq!(v.to_str().unwrap(), "Bearer from-file");
}

#[tokio::test]
async fn a_kubeconfig_without_a_token_says_what_to_do() {
    let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    let e = kubeconfig_bearer(&config).await.unwrap_err();
    assert_eq!(e.exit_code(), 5);
    let m = e.to_string();
    assert!(
        m.contains("no bearer token") && m.contains("--token"),
        "{m}"
    );
}
