use super::*;

#[test]
fn relative_submodule_urls() {
    let base = "https://u:p@h.example/group/super.git";
    assert_eq!(
        resolve_relative(base, "../lib.git").as_deref(),
        Some("https://u:p@h.example/group/lib.git")
    );
    assert_eq!(
        resolve_relative(base, "./sub").as_deref(),
        Some("https://u:p@h.example/group/super.git/sub")
    );
    assert_eq!(
        resolve_relative(base, "../../other/x.git").as_deref(),
        Some("https://u:p@h.example/other/x.git")
    );
    assert_eq!(resolve_relative("https://h/x.git", "../../../y"), None);
    assert_eq!(
        resolve_relative(base, "https://else/x.git").as_deref(),
        Some("https://else/x.git")
    );
}

#[test]
fn kinds() {
    assert_eq!(kind("HTTP status 401 Unauthorized"), Some(AUTH));
    assert_eq!(
        kind("error trying to connect: Connection refused"),
        Some(NETWORK)
    );
    assert_eq!(
        kind("The remote didn't have any ref that matched 'x'"),
        Some(NO_SUCH_REVISION)
    );
    assert_eq!(
        kind("client error (Connect): invalid peer certificate: UnknownIssuer"),
        Some(UNTRUSTED)
    );
    assert_eq!(kind("corrupt pack"), None);
}
