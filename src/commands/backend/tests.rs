use super::*;

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    mesos: MesosArgs,
}

#[test]
fn offers_are_refused_and_launches_watched_as_marathon_does() {
    let m = <Cli as clap::Parser>::parse_from(["slipway"]).mesos;
    assert_eq!(m.refuse_seconds, 120.0);
    assert_eq!(m.launch_timeout, Duration::from_secs(300));
    assert_eq!(m.locality_wait, Duration::from_secs(3));
}
