//! Offer arithmetic: what an offer still holds, and the TaskInfo that takes a
//! build's share of it (executor included).

use super::core::{CoreConfig, ExecutorLaunch, TaskSpec};
use crate::mesos::proto::v1::{
    self, CommandInfo, ContainerInfo, Environment, ExecutorId, ExecutorInfo, FrameworkId, Offer,
    Resource, TaskId, TaskInfo, Volume, command_info, container_info, environment, value,
};

/// Mesos keeps scalars to three decimals; so do we, or 0.1 + 0.2 would not fit 0.3.
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// What is left of one offer: each scalar resource entry and its remaining amount.
#[derive(Clone, Debug)]
pub struct Avail {
    entries: Vec<(Resource, f64)>,
}

impl Avail {
    pub fn of(offer: &Offer) -> Self {
        let entries = offer
            .resources
            .iter()
            .filter(|r| r.r#type() == value::Type::Scalar && r.revocable.is_none())
            .filter_map(|r| Some((r.clone(), r.scalar.as_ref()?.value)))
            .collect();
        Self { entries }
    }

    fn total(&self, name: &str) -> f64 {
        round(
            self.entries
                .iter()
                .filter(|(r, _)| r.name == name)
                .map(|(_, v)| v)
                .sum(),
        )
    }

    pub fn cpus(&self) -> f64 {
        self.total("cpus")
    }

    pub fn mem(&self) -> f64 {
        self.total("mem")
    }

    pub fn fits(&self, cpus: f64, mem: f64) -> bool {
        self.cpus() >= round(cpus) && self.mem() >= round(mem)
    }

    pub fn exhausted(&self) -> bool {
        self.cpus() <= 0.0 || self.mem() <= 0.0
    }

    pub fn bigger_than(&self, other: &Avail) -> bool {
        (self.cpus(), self.mem()) > (other.cpus(), other.mem())
    }

    /// Takes `amount` of `name`, entry by entry, keeping each entry's role and
    /// reservation so the master recognises the resources as the offer's.
    fn take(&mut self, name: &str, amount: f64) -> Vec<Resource> {
        let mut want = round(amount);
        let mut out = Vec::new();
        for (r, left) in self.entries.iter_mut().filter(|(r, _)| r.name == name) {
            if want <= 0.0 {
                break;
            }
            let n = round(want.min(*left));
            if n <= 0.0 {
                continue;
            }
            *left = round(*left - n);
            want = round(want - n);
            let mut piece = r.clone();
            piece.scalar = Some(value::Scalar { value: n });
            out.push(piece);
        }
        out
    }
}

/// The TaskInfo for one build on `offer`; takes its resources out of `avail`.
pub fn task_info(
    cfg: &CoreConfig,
    framework_id: Option<&str>,
    spec: &TaskSpec,
    offer: &Offer,
    avail: &mut Avail,
) -> TaskInfo {
    let mut exec_res = avail.take("cpus", cfg.executor_cpus);
    exec_res.extend(avail.take("mem", cfg.executor_mem_mib));
    let mut task_res = avail.take("cpus", spec.cpus);
    task_res.extend(avail.take("mem", spec.mem_mib));
    let mut executor = ExecutorInfo {
        executor_id: ExecutorId {
            value: spec.task_id.clone(),
        },
        framework_id: framework_id.map(|v| FrameworkId { value: v.into() }),
        command: Some(command(cfg)),
        container: container(cfg),
        resources: exec_res,
        name: Some(format!("slipway executor for {}", spec.key)),
        ..Default::default()
    };
    executor.set_type(v1::executor_info::Type::Custom);
    TaskInfo {
        name: format!("build {}", spec.key),
        task_id: TaskId {
            value: spec.task_id.clone(),
        },
        agent_id: offer.agent_id.clone(),
        resources: task_res,
        executor: Some(executor),
        data: Some(spec.payload.clone()),
        ..Default::default()
    }
}

/// The command that starts `slipway executor` on the agent.
fn command(cfg: &CoreConfig) -> CommandInfo {
    let (program, uris) = match &cfg.executor {
        ExecutorLaunch::Path(p) => (p.clone(), Vec::new()),
        ExecutorLaunch::Uri(u) => (
            // the agent unpacks the tarball into the sandbox, the working directory
            "./slipway".to_string(),
            vec![command_info::Uri {
                value: u.clone(),
                extract: Some(true),
                executable: Some(false),
                cache: Some(false),
                output_file: None,
            }],
        ),
        ExecutorLaunch::Image { .. } => ("slipway".to_string(), Vec::new()),
    };
    // the Mesos containerizer execs value with arguments as argv (argv[0] first);
    // the Docker containerizer runs `docker run IMAGE [value] arguments...`, so an
    // image gets no value and its ENTRYPOINT (slipway) receives the arguments
    let mut arguments = match cfg.executor {
        ExecutorLaunch::Image { .. } => vec!["executor".to_string()],
        _ => vec![program.clone(), "executor".to_string()],
    };
    if let Some(h) = &cfg.agent_docker_host {
        arguments.push("--docker-host".into());
        arguments.push(h.clone());
    }
    if cfg.builder != crate::runner::Builder::Auto {
        arguments.push("--builder".into());
        arguments.push(cfg.builder.as_arg().into());
    }
    arguments.extend(cfg.docker_tls.to_args());
    arguments.extend(cfg.engine.to_args());
    arguments.extend(cfg.buildkitd.to_args());
    arguments.extend(cfg.tls.to_args());
    // no secrets here: the environment is part of the task's state on the master
    let mut variables: Vec<environment::Variable> = ["RUST_LOG", "SLIPWAY_LOG"]
        .iter()
        .filter_map(|k| Some(variable(k, &std::env::var(k).ok()?)))
        .collect();
    if matches!(cfg.executor, ExecutorLaunch::Image { .. }) {
        // a minimal image may have no /tmp; the sandbox is mapped in and cleaned up
        variables.push(variable("TMPDIR", "/mnt/mesos/sandbox"));
    }
    CommandInfo {
        uris,
        environment: Some(Environment { variables }),
        shell: Some(false),
        value: (!matches!(cfg.executor, ExecutorLaunch::Image { .. })).then_some(program),
        arguments,
        ..Default::default()
    }
}

fn variable(name: &str, value: &str) -> environment::Variable {
    environment::Variable {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn container(cfg: &CoreConfig) -> Option<ContainerInfo> {
    let ExecutorLaunch::Image {
        image,
        docker_socket,
    } = &cfg.executor
    else {
        return None;
    };
    let mut volume = Volume {
        container_path: docker_socket.clone(),
        host_path: Some(docker_socket.clone()),
        ..Default::default()
    };
    volume.set_mode(v1::volume::Mode::Rw);
    let mut docker = container_info::DockerInfo {
        image: image.clone(),
        ..Default::default()
    };
    // the executor reaches its agent, the registry and the context server as the host does
    docker.set_network(container_info::docker_info::Network::Host);
    let mut c = ContainerInfo {
        volumes: vec![volume],
        docker: Some(docker),
        ..Default::default()
    };
    c.set_type(container_info::Type::Docker);
    Some(c)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::mesos::proto::v1::AgentId;

    /// An offer of `cpus` and `mem` on `host`, allocated to `role`.
    pub fn offer(id: &str, host: &str, cpus: f64, mem: f64, role: &str) -> Offer {
        let res = |name: &str, v: f64| {
            let mut r = Resource {
                name: name.into(),
                scalar: Some(value::Scalar { value: v }),
                allocation_info: Some(v1::resource::AllocationInfo {
                    role: Some(role.into()),
                }),
                ..Default::default()
            };
            r.set_type(value::Type::Scalar);
            r
        };
        Offer {
            id: v1::OfferId { value: id.into() },
            framework_id: FrameworkId { value: "fw".into() },
            agent_id: AgentId {
                value: format!("agent-{host}"),
            },
            hostname: host.into(),
            resources: vec![res("cpus", cpus), res("mem", mem), res("disk", 1000.0)],
            ..Default::default()
        }
    }

    #[test]
    fn taking_keeps_the_role_and_never_goes_below_zero() {
        let o = offer("o1", "h", 1.0, 512.0, "builds");
        let mut a = Avail::of(&o);
        let got = a.take("cpus", 0.3);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].scalar.as_ref().unwrap().value, 0.3);
        assert_eq!(
            got[0].allocation_info.as_ref().unwrap().role.as_deref(),
            Some("builds")
        );
        assert!(a.fits(0.7, 512.0));
        assert!(!a.fits(0.701, 512.0));
        a.take("cpus", 0.7);
        assert!(a.exhausted());
    }
}

#[cfg(test)]
mod builder_tests {
    use super::*;
    use crate::runner::Builder;

    #[test]
    fn the_builder_choice_reaches_the_executor() {
        let args = |builder| {
            command(&CoreConfig {
                builder,
                ..Default::default()
            })
            .arguments
        };
        assert_eq!(args(Builder::Auto), vec!["slipway", "executor"]);
        assert_eq!(
            args(Builder::Classic),
            vec!["slipway", "executor", "--builder", "classic"]
        );
        let bk = command(&CoreConfig {
            builder: Builder::Buildkitd,
            buildkitd: crate::runner::BuildkitdArgs {
                addr: Some("tcp://127.0.0.1:1234".into()),
                ca: Some("/etc/bk/ca.pem".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .arguments;
        assert_eq!(
            bk,
            [
                "slipway",
                "executor",
                "--builder",
                "buildkitd",
                "--buildkit-addr",
                "tcp://127.0.0.1:1234",
                "--buildkit-ca",
                "/etc/bk/ca.pem"
            ]
        );
    }

    #[test]
    fn the_agents_daemon_over_tls_reaches_the_executor() {
        let cfg = CoreConfig {
            agent_docker_host: Some("tcp://10.0.0.5:2376".into()),
            docker_tls: crate::runner::DockerTls {
                docker_tls_verify: true,
                docker_cert_path: Some("/etc/docker/client".into()),
            },
            ..Default::default()
        };
        assert_eq!(
            command(&cfg).arguments,
            [
                "slipway",
                "executor",
                "--docker-host",
                "tcp://10.0.0.5:2376",
                "--docker-tls-verify",
                "--docker-cert-path",
                "/etc/docker/client"
            ]
        );
    }

    #[test]
    fn the_registry_certificates_reach_the_executor() {
        let cfg = CoreConfig {
            tls: crate::tls::TlsArgs {
                ca_file: Some("/etc/corp/ca.pem".into()),
                certs_dir: "/etc/corp/certs.d".into(),
            },
            ..Default::default()
        };
        assert_eq!(
            command(&cfg).arguments,
            [
                "slipway",
                "executor",
                "--ca-file",
                "/etc/corp/ca.pem",
                "--certs-dir",
                "/etc/corp/certs.d"
            ]
        );
    }
}
