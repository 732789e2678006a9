//! The queue on a twin runner: order, limits, cancel, pause, idempotency, expiry, restarts.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::queues::Submission;
use super::record::IdempotencyKey;
use super::{RunOutcome, TaskConfig, TaskError, TaskQueues, TaskRunner, TaskStatus};
use crate::clock::{Clock, ManualClock};
use crate::name::Name;

/// Runs a task once the test releases a permit; records the order tasks started in.
struct Twin {
    started: Mutex<Vec<String>>,
    release: Semaphore,
    cancelled: AtomicUsize,
    idempotent: AtomicBool,
}

impl Twin {
    fn new() -> Arc<Twin> {
        Arc::new(Twin {
            started: Mutex::new(Vec::new()),
            release: Semaphore::new(0),
            cancelled: AtomicUsize::new(0),
            idempotent: AtomicBool::new(true),
        })
    }

    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }
}

impl TaskRunner for Twin {
    fn run(
        &self,
        _agent: Name,
        arguments: Map<String, Value>,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, RunOutcome> {
        Box::pin(async move {
            let task = arguments["task"].as_str().unwrap_or_default().to_string();
            self.started.lock().unwrap().push(task.clone());
            tokio::select! {
                permit = self.release.acquire() => {
                    permit.unwrap().forget();
                    RunOutcome::Answered {
                        result: json!({"result": task, "success": true, "error": null}),
                        success: true,
                        error: None,
                        retries: 0,
                        tool_result: None,
                    }
                }
                _ = cancel.cancelled() => {
                    self.cancelled.fetch_add(1, Ordering::SeqCst);
                    RunOutcome::Cancelled
                }
            }
        })
    }

    fn idempotent(&self, _agent: Name) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move { Ok(self.idempotent.load(Ordering::SeqCst)) })
    }
}

fn agent() -> Name {
    Name::parse("sleeper.finance.acme").unwrap()
}

fn submission(task: &str, priority: u32) -> Submission {
    let mut arguments = Map::new();
    arguments.insert("task".into(), json!(task));
    Submission {
        agent: agent(),
        tool_name: "sleeper_finance_acme".into(),
        arguments,
        priority,
        max_retries: 2,
        idempotency: None,
        mcp_task: false,
    }
}

fn config(concurrency: usize, queue_size: usize) -> TaskConfig {
    TaskConfig {
        queue_size,
        agent_concurrency: concurrency,
        ttl: Duration::from_secs(60),
        data_dir: None,
    }
}

fn queues(config: TaskConfig, clock: Arc<dyn Clock>, twin: &Arc<Twin>) -> Arc<TaskQueues> {
    let queues = Arc::new(TaskQueues::open(config, clock).unwrap());
    let runner: Weak<dyn TaskRunner> = Arc::downgrade(twin) as _;
    queues.start(runner);
    queues
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn status(queues: &TaskQueues, id: &str) -> TaskStatus {
    queues.task(&agent(), id).unwrap().status
}

#[tokio::test]
async fn higher_priorities_run_first_and_equal_ones_in_submission_order() {
    let twin = Twin::new();
    let queues = queues(config(1, 100), crate::clock::system(), &twin);
    queues
        .set_paused(&agent(), Some("sleeper_finance_acme"), true)
        .await
        .unwrap();
    for (task, priority) in [
        ("low-1", 0),
        ("high-1", 5),
        ("low-2", 0),
        ("mid", 2),
        ("high-2", 5),
    ] {
        queues.submit(submission(task, priority)).await.unwrap();
    }
    assert_eq!(queues.stats(&agent()).unwrap().queue_size, 5);
    queues.set_paused(&agent(), None, false).await.unwrap();
    twin.release.add_permits(5);
    until("all five ran", || {
        queues.stats(&agent()).unwrap().completed_tasks == 5
    })
    .await;
    assert_eq!(
        twin.started(),
        ["high-1", "high-2", "mid", "low-1", "low-2"]
    );
}

#[tokio::test]
async fn concurrency_is_bounded_per_agent_and_a_full_queue_names_its_limit() {
    let twin = Twin::new();
    let queues = queues(config(2, 3), crate::clock::system(), &twin);
    for i in 0..5 {
        queues
            .submit(submission(&format!("t{i}"), 0))
            .await
            .unwrap();
    }
    until("two running", || twin.started().len() == 2).await;
    let stats = queues.stats(&agent()).unwrap();
    assert_eq!((stats.processing_tasks, stats.pending_tasks), (2, 3));
    let refused = queues.submit(submission("t5", 0)).await.unwrap_err();
    assert!(matches!(refused, TaskError::QueueFull { limit: 3, .. }));
    assert!(
        refused.to_string().contains("3 pending tasks is the limit"),
        "{refused}"
    );
    twin.release.add_permits(5);
    until("all done", || {
        queues.stats(&agent()).unwrap().completed_tasks == 5
    })
    .await;
    assert_eq!(
        queues.stats(&agent()).unwrap().total_tasks,
        5,
        "the refused one is not known"
    );
}

#[tokio::test]
async fn cancel_reaches_a_running_task_and_finished_ones_cannot_be_cancelled() {
    let twin = Twin::new();
    let queues = queues(config(1, 10), crate::clock::system(), &twin);
    let running = queues.submit(submission("running", 0)).await.unwrap();
    let waiting = queues.submit(submission("waiting", 0)).await.unwrap();
    until("first running", || {
        status(&queues, &running) == TaskStatus::Processing
    })
    .await;
    queues.cancel(&agent(), &waiting).await.unwrap();
    queues.cancel(&agent(), &running).await.unwrap();
    until("the call was cancelled", || {
        twin.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(status(&queues, &running), TaskStatus::Cancelled);
    assert_eq!(status(&queues, &waiting), TaskStatus::Cancelled);
    assert_eq!(
        twin.started(),
        ["running"],
        "a cancelled pending task never runs"
    );
    let again = queues.cancel(&agent(), &running).await.unwrap_err();
    assert!(
        matches!(again, TaskError::AlreadyFinished { .. }),
        "{again}"
    );
    let unknown = queues.cancel(&agent(), "no-such-task").await.unwrap_err();
    assert!(
        matches!(unknown, TaskError::UnknownTask { .. }),
        "{unknown}"
    );
}

#[tokio::test]
async fn clear_cancels_pending_tasks_only() {
    let twin = Twin::new();
    let queues = queues(config(1, 10), crate::clock::system(), &twin);
    let running = queues.submit(submission("running", 0)).await.unwrap();
    for i in 0..3 {
        queues
            .submit(submission(&format!("w{i}"), 0))
            .await
            .unwrap();
    }
    until("first running", || {
        status(&queues, &running) == TaskStatus::Processing
    })
    .await;
    assert_eq!(queues.clear(&agent()).await.unwrap(), 3);
    let stats = queues.stats(&agent()).unwrap();
    assert_eq!(
        (
            stats.queue_size,
            stats.processing_tasks,
            stats.cancelled_tasks
        ),
        (0, 1, 3)
    );
    twin.release.add_permits(1);
    until("the running one completes", || {
        status(&queues, &running) == TaskStatus::Completed
    })
    .await;
}

#[tokio::test]
async fn an_idempotency_key_names_the_first_task_until_it_expires() {
    let twin = Twin::new();
    let clock = ManualClock::new();
    let queues = queues(config(1, 10), clock.clone(), &twin);
    let keyed = |task: &str| {
        let mut s = submission(task, 0);
        s.idempotency = Some(IdempotencyKey {
            caller: "anonymous".into(),
            key: "k1".into(),
        });
        s
    };
    let first = queues.submit(keyed("same")).await.unwrap();
    assert_eq!(queues.submit(keyed("same")).await.unwrap(), first);
    let conflict = queues.submit(keyed("other")).await.unwrap_err();
    assert!(
        matches!(conflict, TaskError::IdempotencyConflict { .. }),
        "{conflict}"
    );
    twin.release.add_permits(1);
    until("done", || status(&queues, &first) == TaskStatus::Completed).await;
    clock.advance(Duration::from_secs(59));
    assert_eq!(
        queues.submit(keyed("same")).await.unwrap(),
        first,
        "within the TTL"
    );
    clock.advance(Duration::from_secs(2));
    assert!(
        matches!(
            queues.task(&agent(), &first),
            Err(TaskError::UnknownTask { .. })
        ),
        "past the TTL the task is unknown"
    );
    let fresh = queues.submit(keyed("other")).await.unwrap();
    assert_ne!(fresh, first, "past the TTL the key is free again");
}

#[tokio::test]
async fn a_restart_knows_every_task_reruns_pending_and_decides_on_interrupted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let durable = |concurrency| TaskConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..config(concurrency, 10)
    };
    let twin = Twin::new();
    let (done, running, waiting, paused_cfg);
    {
        let queues = queues(durable(1), crate::clock::system(), &twin);
        done = queues.submit(submission("done", 0)).await.unwrap();
        twin.release.add_permits(1);
        until("done", || status(&queues, &done) == TaskStatus::Completed).await;
        running = queues.submit(submission("running", 0)).await.unwrap();
        until("running", || twin.started().len() == 2).await;
        waiting = queues.submit(submission("waiting", 0)).await.unwrap();
        paused_cfg = Name::parse("other.finance.acme").unwrap();
        queues
            .set_paused(&paused_cfg, Some("other_finance_acme"), true)
            .await
            .unwrap();
        // A crash: the workers stop where they are, nothing more is written.
        queues.stop();
    }
    // The writer thread closes the file once the last handle is gone.
    let reopened = loop {
        match TaskQueues::open(durable(1), crate::clock::system()) {
            Ok(queues) => break Arc::new(queues),
            Err(TaskError::Store { reason, .. }) if reason.contains("in use") => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(error) => panic!("{error}"),
        }
    };
    assert_eq!(reopened.known_tasks(), 3);
    assert_eq!(reopened.stats(&paused_cfg).unwrap().queue_status, "paused");
    let interrupted = reopened.task(&agent(), &running).unwrap();
    assert_eq!(interrupted.status, TaskStatus::Pending);
    assert!(interrupted.interrupted);
    // Not idempotent: the interrupted task fails with the reason; the waiting one runs.
    let twin = Twin::new();
    twin.idempotent.store(false, Ordering::SeqCst);
    twin.release.add_permits(1);
    let runner: Weak<dyn TaskRunner> = Arc::downgrade(&twin) as _;
    reopened.start(runner);
    until("waiting completed", || {
        status(&reopened, &waiting) == TaskStatus::Completed
    })
    .await;
    let failed = reopened.task(&agent(), &running).unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    assert!(
        failed
            .error
            .unwrap()
            .contains("not annotated idempotentHint")
    );
    assert_eq!(status(&reopened, &done), TaskStatus::Completed);
    assert_eq!(twin.started(), ["waiting"]);
}

#[tokio::test]
async fn an_interrupted_task_of_an_idempotent_tool_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let durable = TaskConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..config(1, 10)
    };
    let running;
    {
        let twin = Twin::new();
        let queues = queues(durable.clone(), crate::clock::system(), &twin);
        running = queues.submit(submission("again", 0)).await.unwrap();
        until("running", || twin.started().len() == 1).await;
        queues.stop();
    }
    let twin = Twin::new();
    twin.release.add_permits(1);
    let reopened = loop {
        match TaskQueues::open(durable.clone(), crate::clock::system()) {
            Ok(queues) => break Arc::new(queues),
            Err(TaskError::Store { .. }) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(error) => panic!("{error}"),
        }
    };
    let runner: Weak<dyn TaskRunner> = Arc::downgrade(&twin) as _;
    reopened.start(runner);
    until("completed", || {
        status(&reopened, &running) == TaskStatus::Completed
    })
    .await;
    let record = reopened.task(&agent(), &running).unwrap();
    assert_eq!(
        record.retry_count, 1,
        "the run after the restart is a retry"
    );
    assert_eq!(twin.started(), ["again"]);
}
