//! Build progress for people: bars on a terminal, plain lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::runner::{BuildEvent, stages};

pub async fn show(key: String, mut rx: UnboundedReceiver<BuildEvent>) {
    if std::io::stderr().is_terminal() {
        bars(&key, &mut rx).await;
    } else {
        lines(&key, &mut rx).await;
    }
}

async fn lines(key: &str, rx: &mut UnboundedReceiver<BuildEvent>) {
    while let Some(ev) = rx.recv().await {
        match ev {
            BuildEvent::Building {
                context_bytes,
                files,
            } => eprintln!(
                "[{key}] sending context: {files} files, {:.1} MiB",
                context_bytes as f64 / 1048576.0
            ),
            BuildEvent::Step(s) => eprintln!("[{key}] {s}"),
            BuildEvent::Log(l) => eprintln!("[{key}]   {l}"),
            BuildEvent::Pushing { tags } => eprintln!("[{key}] pushing {}", tags.join(", ")),
            BuildEvent::PushProgress { .. } => {}
            BuildEvent::Pushed { tag, digest } => eprintln!("[{key}] pushed {tag} ({digest})"),
            BuildEvent::Stages(steps) => {
                for s in &steps {
                    eprintln!("[{key}] step {}", stages::line(s));
                }
            }
            other => {
                if let Some(line) = remote_line(&other) {
                    eprintln!("[{key}] {line}");
                }
            }
        }
    }
}

async fn bars(key: &str, rx: &mut UnboundedReceiver<BuildEvent>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let spinner_style = ProgressStyle::with_template("{spinner} {prefix} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar_style =
        ProgressStyle::with_template("  {prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let main = multi.add(ProgressBar::new_spinner().with_style(spinner_style));
    main.set_prefix(key.to_string());
    main.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut pushes: HashMap<String, ProgressBar> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            BuildEvent::Building {
                context_bytes,
                files,
            } => main.set_message(format!(
                "sending context: {files} files, {:.1} MiB",
                context_bytes as f64 / 1048576.0
            )),
            BuildEvent::Step(s) => {
                let _ = multi.println(format!("[{key}] {s}"));
                main.set_message(s);
            }
            BuildEvent::Log(l) => {
                let _ = multi.println(format!("[{key}]   {l}"));
            }
            BuildEvent::Pushing { tags } => {
                main.set_message(format!("pushing {}", tags.join(", ")))
            }
            BuildEvent::PushProgress {
                tag,
                status,
                current,
                total,
            } => {
                let bar = pushes.entry(tag.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(0).with_style(bar_style.clone()));
                    b.set_prefix(tag.clone());
                    b
                });
                // the daemon reports one layer at a time; show the layer under way
                if total > 0 {
                    bar.set_length(total);
                    bar.set_position(current.min(total));
                }
                bar.set_message(status);
            }
            BuildEvent::Pushed { tag, digest } => {
                if let Some(b) = pushes.get(&tag) {
                    b.finish_with_message(format!("pushed {digest}"));
                } else {
                    let _ = multi.println(format!("[{key}] pushed {tag} ({digest})"));
                }
            }
            BuildEvent::Stages(steps) => {
                for s in &steps {
                    let _ = multi.println(format!("[{key}] step {}", stages::line(s)));
                }
            }
            other => {
                if let Some(line) = remote_line(&other) {
                    main.set_message(line);
                }
            }
        }
    }
    main.finish_and_clear();
}

/// What a remote backend's placement events say.
fn remote_line(ev: &BuildEvent) -> Option<String> {
    match ev {
        BuildEvent::Waiting(m) => Some(m.clone()),
        BuildEvent::Placed { host, task } => {
            Some(format!("launched on {host} as Mesos task {}", task.task_id))
        }
        BuildEvent::Running { host, .. } => Some(format!("building on {host}")),
        _ => None,
    }
}
