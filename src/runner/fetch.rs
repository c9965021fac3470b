//! TEMPORARY placeholder until the real fetch module lands (helper in progress).
pub struct Fetched { pub commit: Option<String> }
pub async fn git(_url: &str, _revision: Option<&str>, _dest: &std::path::Path) -> crate::Result<Fetched> {
    Err(crate::Error::Context("git sources not wired yet".into()))
}
pub async fn url(_client: &reqwest::Client, _url: &str, _dest: &std::path::Path) -> crate::Result<()> {
    Err(crate::Error::Context("url sources not wired yet".into()))
}
