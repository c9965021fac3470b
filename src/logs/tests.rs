use super::*;
use crate::runner::{BuildEvent, BuildOutcome};

fn store(dir: &Path) -> LogStore {
    LogStore {
        root: dir.to_path_buf(),
        retention: Retention::default(),
        max_bytes: DEFAULT_MAX_BYTES,
    }
}

fn outcome() -> crate::Result<BuildOutcome> {
    Ok(BuildOutcome {
        digest: "sha256:abc".into(),
        image: "reg/app".into(),
        ..Default::default()
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn every_event_is_a_timestamped_line_and_the_end_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = store(dir.path())
        .open("ns", "app", 3, Redactor::default())
        .unwrap();
    log.event(&BuildEvent::Step("[1/2] RUN make".into()));
    log.event(&BuildEvent::Log("compiling\nlinking\n".into()));
    log.event(&BuildEvent::Pushed {
        tag: "reg/app:v1".into(),
        digest: "sha256:abc".into(),
    });
    let path = log.path().to_path_buf();
    log.finish(&outcome());
    assert_eq!(path, dir.path().join("ns/app/3.log"));
    let text = read(&path);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for l in &lines {
        let (ts, _) = l.split_once(' ').unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{l}");
    }
    assert!(lines[0].ends_with(" ==> [1/2] RUN make"));
    assert!(lines[1].ends_with("     compiling"));
    assert!(lines[3].ends_with("--- pushed reg/app:v1 sha256:abc"));
    assert!(lines[4].ends_with("--- end of build 3: succeeded, reg/app@sha256:abc"));
}

#[test]
fn push_progress_is_summed_up_per_status_change() {
    let mut pushes = Default::default();
    let p = |status: &str, current| BuildEvent::PushProgress {
        tag: "t".into(),
        status: status.into(),
        current,
        total: 100,
    };
    let mut lines = Vec::new();
    for ev in [
        p("Pushing", 1),
        p("Pushing", 50),
        p("Pushing", 99),
        p("Pushed", 100),
    ] {
        lines.extend(writer::render(&ev, &mut pushes));
    }
    assert_eq!(lines, ["--- push t: Pushing", "--- push t: Pushed"]);
}

#[test]
fn secrets_never_reach_the_file_or_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let redactor = Redactor::new(["hunter22".to_string(), "s3cr3t-token".to_string()]);
    let mut log = store(dir.path()).open("ns", "app", 1, redactor).unwrap();
    log.event(&BuildEvent::Log(
        "password is hunter22 and s3cr3t-token".into(),
    ));
    let tail = log.tail();
    let path = log.path().to_path_buf();
    log.finish(&Err(crate::Error::Registry(
        "denied for user:hunter22".into(),
    )));
    let text = read(&path);
    assert!(
        !text.contains("hunter22") && !text.contains("s3cr3t"),
        "{text}"
    );
    assert!(text.contains("password is *** and ***"), "{text}");
    assert_eq!(tail, ["    password is *** and ***"]);
}

#[test]
fn a_log_past_its_cap_says_so_and_still_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    s.max_bytes = 400;
    let mut log = s.open("ns", "app", 1, Redactor::default()).unwrap();
    for i in 0..100 {
        log.event(&BuildEvent::Log(format!("line {i}")));
    }
    let tail = log.tail();
    let path = log.path().to_path_buf();
    log.finish(&outcome());
    let text = read(&path);
    assert!(text.len() < 600, "{}", text.len());
    assert!(text.contains("--- log cut at"), "{text}");
    assert!(!text.contains("line 99"));
    assert!(text.lines().last().unwrap().contains("end of build 1"));
    // the tail is the build's real end, cut or not
    assert_eq!(tail.len(), TAIL_LINES);
    assert_eq!(tail.last().unwrap(), "    line 99");
}

#[test]
fn retention_keeps_the_newest_builds() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for n in 1..=6 {
        s.open("ns", "app", n, Redactor::default())
            .unwrap()
            .finish(&outcome());
    }
    s.prune("ns", "app", 6).unwrap();
    let mut left: Vec<u64> = numbered(&s.dir("ns", "app"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    left.sort();
    assert_eq!(left, [2, 3, 4, 5, 6]);
}

#[test]
fn retention_drops_old_logs_but_never_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    s.retention.max_age = Duration::from_millis(1);
    for n in 1..=2 {
        s.open("ns", "app", n, Redactor::default())
            .unwrap()
            .finish(&outcome());
    }
    std::thread::sleep(Duration::from_millis(20));
    s.prune("ns", "app", 2).unwrap();
    let left: Vec<u64> = numbered(&s.dir("ns", "app"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(left, [2]);
}

#[test]
fn retention_flag_reads_count_and_age() {
    assert_eq!(
        parse_retention("3,2h").unwrap(),
        Retention {
            keep: 3,
            max_age: Duration::from_secs(7200)
        }
    );
    assert_eq!(parse_retention("10").unwrap().max_age, DEFAULT_MAX_AGE);
    assert!(parse_retention("0").is_err());
    assert!(parse_retention("x,1d").is_err());
}

#[test]
fn find_tells_why_there_is_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let q = |build| LogQuery {
        namespace: "ns".into(),
        name: "app".into(),
        build,
    };
    let logs = s.dir("ns", "app");
    assert_eq!(
        find(&logs, &q(None), None),
        Err(LogError::NoSuchResource("ns/app".into()))
    );
    assert_eq!(
        find(&logs, &q(None), Some(None)),
        Err(LogError::NoBuildYet("ns/app".into()))
    );
    for n in [7, 8] {
        s.open("ns", "app", n, Redactor::default())
            .unwrap()
            .finish(&outcome());
    }
    assert_eq!(
        find(&logs, &q(None), Some(Some(8))),
        Ok(s.path("ns", "app", 8))
    );
    assert_eq!(
        find(&logs, &q(Some(7)), Some(Some(8))),
        Ok(s.path("ns", "app", 7))
    );
    let expired = find(&logs, &q(Some(2)), Some(Some(8))).unwrap_err();
    assert_eq!(expired.exit_code(), 4);
    assert!(expired.to_string().contains("expired"), "{expired}");
    assert!(matches!(
        find(&logs, &q(Some(9)), Some(Some(8))),
        Err(LogError::NoSuchBuild { latest: 8, .. })
    ));
}

#[tokio::test]
async fn follow_prints_lines_as_they_come_and_stops_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut log = s.open("ns", "app", 1, Redactor::default()).unwrap();
    log.event(&BuildEvent::Step("[1/1] RUN make".into()));
    let path = log.path().to_path_buf();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let end = follow(&path, &mut out, true).await.unwrap();
        (end, String::from_utf8(out).unwrap())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!reader.is_finished(), "a running build's log is followed");
    log.event(&BuildEvent::Log("done".into()));
    log.finish(&outcome());
    let (end, text) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, Follow::Ended);
    assert_eq!(text.lines().count(), 3, "{text}");
    // not following: what is there, and says the build may go on
    let mut out = Vec::new();
    let mut open = s.open("ns", "b", 1, Redactor::default()).unwrap();
    open.note("started");
    assert_eq!(
        follow(open.path(), &mut out, false).await.unwrap(),
        Follow::Open
    );
}

#[tokio::test]
async fn follow_wakes_on_each_write_and_ends_with_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = store(dir.path())
        .open("ns", "app", 1, Redactor::default())
        .unwrap();
    log.event(&BuildEvent::Step("[1/1] RUN make".into()));
    let path = log.path().to_path_buf();
    // a poll that never comes in this test: only the writes can wake the follower
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let end = super::read::follow_polling(&path, &mut out, true, Duration::from_secs(3600))
            .await
            .unwrap();
        (end, String::from_utf8(out).unwrap())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..20 {
        log.event(&BuildEvent::Log(format!("line-{i}")));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    log.finish(&outcome());
    let (end, text) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the end line woke the follower")
        .unwrap();
    assert_eq!(end, Follow::Ended);
    assert_eq!(text.lines().count(), 22, "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.ends_with("succeeded, reg/app@sha256:abc"), "{last}");
}

#[test]
fn a_log_copied_from_a_mesos_sandbox_is_kept_once_with_its_own_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let redactor = Redactor::new(["hunter22".to_string()]);
    let mut log = store(dir.path()).open("ns", "app", 2, redactor).unwrap();
    let sandbox = crate::mesos::task::SandboxLog {
        agent: "http://agent:5051".into(),
        directory: "/var/lib/mesos/runs/r1".into(),
    };
    log.event(&BuildEvent::Running {
        host: "agent".into(),
        sandbox: Some(sandbox),
    });
    // the executor's own lines, through its status updates: its log has them already
    log.event(&BuildEvent::Step("[1/2] RUN make".into()));
    log.event(&BuildEvent::Copied(vec![
        "2026-01-01T00:00:00.000Z ==> [1/2] RUN make".into(),
        "2026-01-01T00:00:01.500Z     token hunter22".into(),
        "not stamped".into(),
    ]));
    let tail = log.tail();
    let path = log.path().to_path_buf();
    log.finish(&outcome());
    let text = read(&path);
    assert_eq!(text.matches("RUN make").count(), 1, "{text}");
    assert!(
        text.contains("\n2026-01-01T00:00:01.500Z     token ***\n"),
        "{text}"
    );
    assert!(
        text.contains("copied from /var/lib/mesos/runs/r1/slipway-build.log on http://agent:5051"),
        "{text}"
    );
    assert!(!text.contains("hunter22"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("--- end of build 2: succeeded, reg/app@sha256:abc"),
        "{text}"
    );
    // the tail shows the text, as for any build
    assert_eq!(&tail[tail.len() - 2..], ["    token ***", "not stamped"]);
}

#[test]
fn a_placement_by_base_layers_is_a_line_of_its_own() {
    let mut pushes = std::collections::HashMap::new();
    let task = |placement: Option<&str>| crate::api::MesosTask {
        task_id: "t1".into(),
        placement: placement.map(str::to_string),
        ..Default::default()
    };
    let placed = |t| BuildEvent::Placed {
        host: "a.test".into(),
        task: t,
    };
    let why = Some("placed on a.test: holds 5/6 base layers");
    assert_eq!(
        writer::render(&placed(task(why)), &mut pushes),
        ["--- placed on a.test: holds 5/6 base layers; Mesos task t1"]
    );
    assert_eq!(
        writer::render(&placed(task(None)), &mut pushes),
        ["--- placed on a.test as Mesos task t1"]
    );
}
