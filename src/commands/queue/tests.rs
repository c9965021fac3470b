use clap::error::ErrorKind;

use crate::commands::tests::{parse, refused};
use crate::commands::{Command, QueueArgs};

fn queue(args: &[&str]) -> QueueArgs {
    let mut all = vec!["watch", "d"];
    all.extend_from_slice(args);
    match parse(&all).unwrap().command {
        Command::Watch { queue, .. } => queue,
        _ => unreachable!(),
    }
}

#[test]
fn a_webhook_needs_its_secret() {
    let m = refused(
        &["watch", "d", "--webhook-listen", "0.0.0.0:9000"],
        ErrorKind::MissingRequiredArgument,
    );
    assert!(m.contains("--webhook-secret-file"), "{m}");
}

#[test]
fn the_webhook_listens_where_asked_with_the_secret_file() {
    let q = queue(&[
        "--webhook-listen",
        "127.0.0.1:9000",
        "--webhook-secret-file",
        "/run/secret",
    ]);
    let w = q.triggers.settings().webhook.expect("the webhook is on");
    assert_eq!(w.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(w.secret_file, std::path::Path::new("/run/secret"));
    // a secret file alone turns nothing on
    let q = queue(&["--webhook-secret-file", "/run/secret"]);
    assert!(q.triggers.settings().webhook.is_none());
}

#[test]
fn a_webhook_address_must_be_host_and_port() {
    refused(
        &[
            "watch",
            "d",
            "--webhook-listen",
            "localhost",
            "--webhook-secret-file",
            "s",
        ],
        ErrorKind::ValueValidation,
    );
}

#[test]
fn settings_keep_logs_under_the_root_given_and_carry_the_flags() {
    let q = queue(&["--max-log-bytes", "4096", "--url-poll", "2h"]);
    let s = q.settings(true, "/logs".into());
    assert!(s.once);
    let logs = s.queue.logs.unwrap();
    assert_eq!(logs.root, std::path::Path::new("/logs"));
    assert_eq!(logs.max_bytes, 4096);
    assert_eq!(s.triggers.poll.url, std::time::Duration::from_secs(7200));
}
