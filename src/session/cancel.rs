//! Stopping a run from outside: the first SIGINT stops new work, the second (or SIGTERM) also
//! aborts the commands running on the hosts.

use std::sync::Arc;

use tokio::sync::watch;

/// How far a run has been asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Running,
    /// No new step, batch or host starts; running steps finish.
    Stopping,
    /// Running steps are stopped on the hosts too.
    Aborting,
}

/// Stops a run made with `Cancel::manual`, as the signals stop one made with `on_signals`.
#[derive(Clone)]
pub struct CancelHandle(Arc<watch::Sender<Stage>>);

impl CancelHandle {
    /// The first Ctrl-C: no new step, batch or host starts; running steps finish.
    pub fn interrupt(&self) {
        self.raise(Stage::Stopping);
    }

    /// The second Ctrl-C (or SIGTERM): running steps are stopped on the hosts too.
    pub fn abort(&self) {
        self.raise(Stage::Aborting);
    }

    fn raise(&self, stage: Stage) {
        self.0.send_if_modified(|now| {
            let raised = stage > *now;
            if raised {
                *now = stage;
            }
            raised
        });
    }
}

/// The run's stop requests, shared by every host task.
#[derive(Clone)]
pub struct Cancel {
    stage: watch::Receiver<Stage>,
    /// `never()` keeps its sender here, so the receiver never sees a closed channel; for
    /// `on_signals()` the signal task owns the sender.
    _sender: Option<Arc<watch::Sender<Stage>>>,
}

impl Cancel {
    pub fn never() -> Self {
        Self::manual().0
    }

    /// A `Cancel` stopped by hand through its `CancelHandle` (tests, a program embedding the
    /// run), not by signals.
    pub fn manual() -> (Self, CancelHandle) {
        let (tx, stage) = watch::channel(Stage::Running);
        let tx = Arc::new(tx);
        let cancel = Self {
            stage,
            _sender: Some(Arc::clone(&tx)),
        };
        (cancel, CancelHandle(tx))
    }

    /// The first SIGINT stops new work; a second SIGINT, or a SIGTERM at any time, aborts.
    pub fn on_signals() -> Self {
        Self::watch_signals(Stage::Stopping)
    }

    /// The first SIGINT or SIGTERM aborts, silently: for a command with nothing to finish and
    /// nothing to release (`logs -f`, `ps`), whose running commands are only read.
    pub fn on_signals_stop_at_once() -> Self {
        Self::watch_signals(Stage::Aborting)
    }

    /// A SIGINT raises the stage to `first_interrupt` (then to `Aborting`), a SIGTERM to
    /// `Aborting`; a stage below `Aborting` is announced, since work goes on.
    fn watch_signals(first_interrupt: Stage) -> Self {
        let (tx, rx) = watch::channel(Stage::Running);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                eprintln!("dropship: cannot watch for Ctrl-C; an interrupt kills the run");
                return;
            };
            loop {
                let stage = tokio::select! {
                    _ = int.recv() => match *tx.borrow() {
                        Stage::Running => first_interrupt,
                        _ => Stage::Aborting,
                    },
                    _ = term.recv() => Stage::Aborting,
                };
                if stage <= *tx.borrow() {
                    continue;
                }
                match (stage, first_interrupt) {
                    (_, Stage::Aborting) => {}
                    (Stage::Stopping, _) => eprintln!(
                        "dropship: interrupted: finishing running steps, then releasing locks (Ctrl-C again to abort them)"
                    ),
                    _ => eprintln!(
                        "dropship: aborting: stopping running steps on the hosts, then releasing locks"
                    ),
                }
                let _ = tx.send(stage);
            }
        });
        Self {
            stage: rx,
            _sender: None,
        }
    }

    /// No new work may start.
    pub fn is_cancelled(&self) -> bool {
        *self.stage.borrow() >= Stage::Stopping
    }

    /// Running commands are being stopped.
    pub fn is_aborted(&self) -> bool {
        *self.stage.borrow() >= Stage::Aborting
    }

    /// Resolves once no new work may start (never, for `never()`).
    pub async fn cancelled(&self) {
        self.reached(Stage::Stopping).await
    }

    /// Resolves once running commands must be stopped (never, for `never()`).
    pub async fn aborted(&self) {
        self.reached(Stage::Aborting).await
    }

    async fn reached(&self, stage: Stage) {
        let mut rx = self.stage.clone();
        while *rx.borrow_and_update() < stage {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
