//! One bounded priority queue per agent, and the workers that drain them.
//!
//! All state sits behind one `std::sync::Mutex` (held for map operations only, never across
//! an await): the queues, every known task, the idempotency index and the expiry order. A
//! state change sends its write to the store while the lock is held, so the file sees the
//! changes in the order they happened. There are no idle worker tasks: when a task is
//! submitted, finishes, or its queue resumes, [`TaskQueues::pump`] starts a worker for each
//! free slot of the agent's concurrency, highest priority first, first in first out within
//! a priority.
//!
//! Time is the clock's wall time (`unix_ms`), so `created_at` and expiry survive restarts
//! and tests can move it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::record::{IdempotencyKey, TaskRecord, TaskStatus, new_task_id};
use super::store::{StoreOp, TaskStore};
use super::{RunOutcome, TaskConfig, TaskError, TaskRunner};
use crate::clock::Clock;
use crate::name::Name;

/// The order of a queue's pending tasks: highest priority, then earliest submission.
type PendingKey = (Reverse<u32>, u64, String);

/// One agent's queue.
#[derive(Default)]
struct AgentQueue {
    /// The agent's tool name, so callers may name the queue either way.
    tool_name: String,
    paused: bool,
    pending: BTreeSet<PendingKey>,
    /// Submissions accepted but not yet on disk: they count towards the bound.
    reserved: usize,
    processing: usize,
    /// Known tasks of this agent by status.
    counts: [usize; 5],
    /// Processing time of its known completed and failed tasks.
    processing_ms_total: u64,
    processing_ms_count: u64,
}

/// A known task.
struct Entry {
    record: TaskRecord,
    /// Cancels the agent call of a processing task.
    cancel: Option<CancellationToken>,
}

#[derive(Default)]
struct State {
    queues: BTreeMap<Name, AgentQueue>,
    tasks: HashMap<String, Entry>,
    idempotency: HashMap<(IdempotencyKey, String), String>,
    /// Finished tasks by the time they are forgotten.
    expiries: BTreeSet<(u64, String)>,
    next_seq: u64,
}

/// One queue's statistics (the Python AOP server's `QueueStats`, plus `queue_status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStats {
    pub total_tasks: usize,
    pub completed_tasks: usize,
    pub failed_tasks: usize,
    pub cancelled_tasks: usize,
    pub pending_tasks: usize,
    pub processing_tasks: usize,
    /// Seconds.
    pub average_processing_time: f64,
    /// Tasks waiting now.
    pub queue_size: usize,
    /// `running` or `paused`.
    pub queue_status: &'static str,
}

/// What a submission needs to know of its agent.
pub struct Submission {
    pub agent: Name,
    pub tool_name: String,
    pub arguments: Map<String, Value>,
    pub priority: u32,
    pub max_retries: u32,
    pub idempotency: Option<IdempotencyKey>,
    /// Created through the MCP tasks extension: the whole tool result is kept.
    pub mcp_task: bool,
}

/// The task queues of one gateway.
pub struct TaskQueues {
    config: TaskConfig,
    store: Option<TaskStore>,
    clock: Arc<dyn Clock>,
    runner: OnceLock<Weak<dyn TaskRunner>>,
    state: Mutex<State>,
    /// Ends the workers when the gateway stops (their tasks stay `processing` on disk and
    /// are recovered at the next start).
    shutdown: CancellationToken,
}

impl TaskQueues {
    /// The queues, loaded from `config.data_dir` when there is one: finished tasks past
    /// their TTL are forgotten, tasks that were processing become pending again, marked
    /// interrupted. Nothing runs before [`TaskQueues::start`].
    pub fn open(config: TaskConfig, clock: Arc<dyn Clock>) -> Result<TaskQueues, TaskError> {
        let mut state = State::default();
        let mut store = None;
        if let Some(dir) = &config.data_dir {
            let loading = std::time::Instant::now();
            let (opened, loaded) = TaskStore::open(dir)?;
            let now = clock.unix_ms();
            let ttl_ms = config.ttl.as_millis() as u64;
            let mut writes = Vec::new();
            for mut record in loaded.tasks {
                let Ok(agent) = Name::parse(&record.agent) else {
                    writes.push(StoreOp::Delete(record.task_id.clone()));
                    continue;
                };
                if let Some(finished) = record.finished_at_ms
                    && record.status.is_finished()
                    && finished.saturating_add(ttl_ms) <= now
                {
                    writes.push(StoreOp::Delete(record.task_id.clone()));
                    continue;
                }
                if record.status == TaskStatus::Processing {
                    record.status = TaskStatus::Pending;
                    record.interrupted = true;
                    record.started_at_ms = None;
                    writes.push(StoreOp::put(&record));
                }
                state.next_seq = state.next_seq.max(record.seq + 1);
                let queue = state.queues.entry(agent.clone()).or_default();
                if queue.tool_name.is_empty() {
                    queue.tool_name = crate::mcp::tool_name::tool_name(&agent);
                }
                state.insert_known(record, ttl_ms, true);
            }
            for agent in loaded.paused {
                if let Ok(agent) = Name::parse(&agent) {
                    let queue = state.queues.entry(agent.clone()).or_default();
                    queue.paused = true;
                    if queue.tool_name.is_empty() {
                        queue.tool_name = crate::mcp::tool_name::tool_name(&agent);
                    }
                }
            }
            if !writes.is_empty() {
                opened.send(writes);
            }
            tracing::info!(
                path = %opened.path().display(),
                tasks = state.tasks.len(),
                queues = state.queues.len(),
                elapsed_ms = loading.elapsed().as_millis() as u64,
                "task store loaded"
            );
            store = Some(opened);
        }
        Ok(TaskQueues {
            config,
            store,
            clock,
            runner: OnceLock::new(),
            state: Mutex::new(state),
            shutdown: CancellationToken::new(),
        })
    }

    pub fn config(&self) -> &TaskConfig {
        &self.config
    }

    /// Lets workers run, through `runner`; starts what is pending.
    pub fn start(self: &Arc<Self>, runner: Weak<dyn TaskRunner>) {
        let _ = self.runner.set(runner);
        let mut state = self.lock();
        let agents: Vec<Name> = state.queues.keys().cloned().collect();
        for agent in agents {
            self.pump(&mut state, &agent);
        }
    }

    /// Stops the workers (their tasks are left processing: a restart recovers them).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ttl_ms(&self) -> u64 {
        self.config.ttl.as_millis() as u64
    }

    /// Sends `ops` to the store, if any (called with the lock held: keeps their order).
    fn persist(&self, ops: Vec<StoreOp>) {
        if let Some(store) = &self.store
            && !ops.is_empty()
        {
            store.send(ops);
        }
    }

    /// Sends `ops` and waits until they are on disk (without a store, at once).
    fn persist_acked(
        &self,
        ops: Vec<StoreOp>,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<(), TaskError>>> {
        self.store.as_ref().map(|store| store.send_acked(ops))
    }

    async fn wait_acked(
        &self,
        ack: Option<tokio::sync::oneshot::Receiver<Result<(), TaskError>>>,
    ) -> Result<(), TaskError> {
        let Some(ack) = ack else { return Ok(()) };
        match ack.await {
            Ok(outcome) => outcome,
            Err(_) => Err(TaskError::Store {
                path: self
                    .store
                    .as_ref()
                    .map(|s| s.path().to_path_buf())
                    .unwrap_or_default(),
                reason: "the store's writer stopped before the write".into(),
            }),
        }
    }

    /// Forgets finished tasks past their TTL.
    fn purge(&self, state: &mut State) {
        let now = self.clock.unix_ms();
        let mut deletes = Vec::new();
        while let Some((at, _)) = state.expiries.first()
            && *at <= now
        {
            let Some((_, task_id)) = state.expiries.pop_first() else {
                break;
            };
            if state.forget(&task_id) {
                deletes.push(StoreOp::Delete(task_id));
            }
        }
        self.persist(deletes);
    }

    /// The canonical name of the queue `text` names (full name or tool name), if there is
    /// one.
    pub fn queue_named(&self, text: &str) -> Option<Name> {
        let state = self.lock();
        if let Ok(name) = Name::parse(text)
            && state.queues.contains_key(&name)
        {
            return Some(name);
        }
        state
            .queues
            .iter()
            .find(|(_, queue)| queue.tool_name == text)
            .map(|(name, _)| name.clone())
    }

    /// Queues a task; answers once it is on disk. The same idempotency key (same caller,
    /// same agent) within the TTL gives the first task's id, or a conflict when the
    /// arguments or priority differ.
    pub async fn submit(self: &Arc<Self>, submission: Submission) -> Result<String, TaskError> {
        let agent_text = submission.agent.to_string();
        let (task_id, ack) = {
            let mut state = self.lock();
            self.purge(&mut state);
            if let Some(key) = &submission.idempotency
                && let Some(existing) = state
                    .idempotency
                    .get(&(key.clone(), agent_text.clone()))
                    .cloned()
                && let Some(entry) = state.tasks.get(&existing)
            {
                if entry.record.arguments == submission.arguments
                    && entry.record.priority == submission.priority
                {
                    return Ok(existing);
                }
                return Err(TaskError::IdempotencyConflict {
                    key: key.key.clone(),
                    task_id: existing,
                    agent: agent_text,
                });
            }
            let limit = self.config.queue_size;
            let queue = state.queues.entry(submission.agent.clone()).or_default();
            queue.tool_name = submission.tool_name.clone();
            if queue.pending.len() + queue.reserved >= limit {
                return Err(TaskError::QueueFull {
                    agent: agent_text,
                    limit,
                });
            }
            queue.reserved += 1;
            let seq = state.next_seq;
            state.next_seq += 1;
            let record = TaskRecord {
                task_id: new_task_id(),
                agent: agent_text.clone(),
                arguments: submission.arguments,
                priority: submission.priority,
                seq,
                created_at_ms: self.clock.unix_ms(),
                status: TaskStatus::Pending,
                result: None,
                error: None,
                retry_count: 0,
                max_retries: submission.max_retries,
                started_at_ms: None,
                finished_at_ms: None,
                idempotency: submission.idempotency,
                interrupted: false,
                mcp_task: submission.mcp_task,
                tool_result: None,
            };
            let task_id = record.task_id.clone();
            let ack = self.persist_acked(vec![StoreOp::put(&record)]);
            let ttl_ms = self.ttl_ms();
            state.insert_known(record, ttl_ms, false);
            (task_id, ack)
        };
        let written = self.wait_acked(ack).await;
        let mut state = self.lock();
        if let Some(queue) = state.queues.get_mut(&submission.agent) {
            queue.reserved = queue.reserved.saturating_sub(1);
        }
        if let Err(error) = written {
            state.forget(&task_id);
            return Err(error);
        }
        // Cancelled (or cleared) while it was being written: it stays cancelled.
        if let Some(entry) = state.tasks.get(&task_id)
            && entry.record.status == TaskStatus::Pending
        {
            let key = (
                Reverse(entry.record.priority),
                entry.record.seq,
                task_id.clone(),
            );
            if let Some(queue) = state.queues.get_mut(&submission.agent) {
                queue.pending.insert(key);
            }
            self.pump(&mut state, &submission.agent);
        }
        Ok(task_id)
    }

    /// Starts workers for `agent` while it has pending tasks and free slots.
    fn pump(self: &Arc<Self>, state: &mut State, agent: &Name) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let Some(runner) = self.runner.get().and_then(Weak::upgrade) else {
            return;
        };
        let concurrency = self.config.agent_concurrency;
        let now = self.clock.unix_ms();
        let mut writes = Vec::new();
        loop {
            let Some(queue) = state.queues.get_mut(agent) else {
                return;
            };
            if queue.paused || queue.processing >= concurrency {
                break;
            }
            let Some((_, _, task_id)) = queue.pending.pop_first() else {
                break;
            };
            let Some(entry) = state.tasks.get_mut(&task_id) else {
                continue;
            };
            let cancel = CancellationToken::new();
            entry.cancel = Some(cancel.clone());
            let interrupted = entry.record.interrupted;
            entry.record.started_at_ms = Some(now);
            let arguments = entry.record.arguments.clone();
            let previous = entry.record.status;
            entry.record.status = TaskStatus::Processing;
            writes.push(StoreOp::put(&entry.record));
            state.recount(agent, previous, TaskStatus::Processing);
            if let Some(queue) = state.queues.get_mut(agent) {
                queue.processing += 1;
            }
            let queues = Arc::clone(self);
            let runner = Arc::clone(&runner);
            let agent = agent.clone();
            tokio::spawn(async move {
                queues
                    .work(runner, agent, task_id, arguments, interrupted, cancel)
                    .await;
            });
        }
        self.persist(writes);
    }

    /// One worker: runs one task and records how it ended.
    async fn work(
        self: Arc<Self>,
        runner: Arc<dyn TaskRunner>,
        agent: Name,
        task_id: String,
        arguments: Map<String, Value>,
        interrupted: bool,
        cancel: CancellationToken,
    ) {
        let run = async {
            if interrupted {
                match runner.idempotent(agent.clone()).await {
                    Ok(true) => self.count_retry(&task_id),
                    Ok(false) => {
                        return Finish::Failed {
                            error: "the gateway stopped while this task was processing, and the \
                                    agent's tool is not annotated idempotentHint, so it was not \
                                    run again (the agent may have acted on it)"
                                .into(),
                            tool_result: None,
                        };
                    }
                    Err(reason) => {
                        return Finish::Failed {
                            error: format!(
                                "the gateway stopped while this task was processing, and whether \
                                 the agent's tool is idempotent could not be learned: {reason}"
                            ),
                            tool_result: None,
                        };
                    }
                }
            }
            match runner.run(agent.clone(), arguments, cancel.clone()).await {
                RunOutcome::Answered {
                    result,
                    success,
                    error,
                    retries,
                    tool_result,
                } => Finish::Answered {
                    result,
                    success,
                    error,
                    retries,
                    tool_result,
                },
                RunOutcome::Failed { error, tool_result } => Finish::Failed { error, tool_result },
                RunOutcome::Cancelled => Finish::Cancelled,
            }
        };
        let finish = tokio::select! {
            finish = run => finish,
            // The gateway is stopping: the task stays processing on disk.
            _ = self.shutdown.cancelled() => return,
        };
        self.finish(&agent, &task_id, finish);
    }

    /// An interrupted task runs again: one more retry, on disk before the call.
    fn count_retry(&self, task_id: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.tasks.get_mut(task_id) {
            entry.record.retry_count += 1;
            entry.record.interrupted = false;
            let record = entry.record.clone();
            self.persist(vec![StoreOp::put(&record)]);
        }
    }

    fn finish(self: &Arc<Self>, agent: &Name, task_id: &str, finish: Finish) {
        let now = self.clock.unix_ms();
        let ttl_ms = self.ttl_ms();
        let mut state = self.lock();
        if let Some(queue) = state.queues.get_mut(agent) {
            queue.processing = queue.processing.saturating_sub(1);
        }
        let mut writes = Vec::new();
        if let Some(entry) = state.tasks.get_mut(task_id)
            && entry.record.status == TaskStatus::Processing
        {
            let record = &mut entry.record;
            entry.cancel = None;
            let status = match finish {
                Finish::Answered {
                    result,
                    success,
                    error,
                    retries,
                    tool_result,
                } => {
                    record.result = Some(result);
                    record.error = error;
                    record.retry_count += retries;
                    if record.mcp_task {
                        record.tool_result = tool_result;
                    }
                    if success {
                        TaskStatus::Completed
                    } else {
                        TaskStatus::Failed
                    }
                }
                Finish::Failed { error, tool_result } => {
                    record.error = Some(error);
                    if record.mcp_task {
                        record.tool_result = tool_result;
                    }
                    TaskStatus::Failed
                }
                Finish::Cancelled => TaskStatus::Cancelled,
            };
            record.status = status;
            record.finished_at_ms = Some(now);
            record.interrupted = false;
            writes.push(StoreOp::put(record));
            let processing_ms = record.processing_ms();
            state.recount(agent, TaskStatus::Processing, status);
            state.expiries.insert((now + ttl_ms, task_id.to_string()));
            if let (Some(ms), Some(queue)) = (processing_ms, state.queues.get_mut(agent)) {
                queue.processing_ms_total += ms;
                queue.processing_ms_count += 1;
            }
        }
        self.persist(writes);
        self.pump(&mut state, agent);
    }

    /// A task of `agent`, as the Python AOP server shows it.
    pub fn task(&self, agent: &Name, task_id: &str) -> Result<TaskRecord, TaskError> {
        let mut state = self.lock();
        self.purge(&mut state);
        if !state.queues.contains_key(agent) {
            return Err(TaskError::NoQueue {
                agent: agent.to_string(),
            });
        }
        match state.tasks.get(task_id) {
            Some(entry) if entry.record.agent == agent.as_str() => Ok(entry.record.clone()),
            _ => Err(TaskError::UnknownTask {
                task_id: task_id.to_string(),
                agent: agent.to_string(),
            }),
        }
    }

    /// Any known task, by its id alone (the MCP tasks extension names a task by id only).
    pub fn find(&self, task_id: &str) -> Option<TaskRecord> {
        let mut state = self.lock();
        self.purge(&mut state);
        state.tasks.get(task_id).map(|entry| entry.record.clone())
    }

    /// Cancels a pending or processing task (a processing one's agent call is cancelled
    /// over MCP); answers once the cancellation is on disk.
    pub async fn cancel(&self, agent: &Name, task_id: &str) -> Result<(), TaskError> {
        let ack = {
            let mut state = self.lock();
            self.purge(&mut state);
            if !state.queues.contains_key(agent) {
                return Err(TaskError::NoQueue {
                    agent: agent.to_string(),
                });
            }
            let unknown = || TaskError::UnknownTask {
                task_id: task_id.to_string(),
                agent: agent.to_string(),
            };
            let entry = state.tasks.get(task_id).ok_or_else(unknown)?;
            if entry.record.agent != agent.as_str() {
                return Err(unknown());
            }
            if entry.record.status.is_finished() {
                return Err(TaskError::AlreadyFinished {
                    task_id: task_id.to_string(),
                    status: entry.record.status,
                });
            }
            let record = self.cancel_locked(&mut state, agent, task_id);
            self.persist_acked(record.iter().map(StoreOp::put).collect())
        };
        self.wait_acked(ack).await
    }

    /// Marks a pending or processing task cancelled (the lock held); its record to write.
    fn cancel_locked(&self, state: &mut State, agent: &Name, task_id: &str) -> Option<TaskRecord> {
        let now = self.clock.unix_ms();
        let ttl_ms = self.ttl_ms();
        let entry = state.tasks.get_mut(task_id)?;
        let previous = entry.record.status;
        if previous.is_finished() {
            return None;
        }
        let key = (
            Reverse(entry.record.priority),
            entry.record.seq,
            task_id.to_string(),
        );
        if let Some(cancel) = entry.cancel.take() {
            cancel.cancel();
        }
        entry.record.status = TaskStatus::Cancelled;
        entry.record.finished_at_ms = Some(now);
        entry.record.error = Some("cancelled by the caller".into());
        entry.record.interrupted = false;
        let record = entry.record.clone();
        if let Some(queue) = state.queues.get_mut(agent) {
            queue.pending.remove(&key);
        }
        state.recount(agent, previous, TaskStatus::Cancelled);
        state.expiries.insert((now + ttl_ms, task_id.to_string()));
        Some(record)
    }

    /// Cancels every pending task of `agent`; how many.
    pub async fn clear(&self, agent: &Name) -> Result<usize, TaskError> {
        let (count, ack) = {
            let mut state = self.lock();
            let Some(queue) = state.queues.get(agent) else {
                return Err(TaskError::NoQueue {
                    agent: agent.to_string(),
                });
            };
            let pending: Vec<String> = queue.pending.iter().map(|(_, _, id)| id.clone()).collect();
            let records: Vec<StoreOp> = pending
                .iter()
                .filter_map(|id| self.cancel_locked(&mut state, agent, id))
                .map(|record| StoreOp::put(&record))
                .collect();
            (records.len(), self.persist_acked(records))
        };
        self.wait_acked(ack).await?;
        Ok(count)
    }

    /// Pauses or resumes `agent`'s queue, creating it (with `tool_name`) if it has none:
    /// running tasks go on, pending ones wait. Whether the state changed.
    pub async fn set_paused(
        self: &Arc<Self>,
        agent: &Name,
        tool_name: Option<&str>,
        paused: bool,
    ) -> Result<bool, TaskError> {
        let (changed, ack) = {
            let mut state = self.lock();
            let queue = match (state.queues.contains_key(agent), tool_name) {
                (true, _) | (false, Some(_)) => state.queues.entry(agent.clone()).or_default(),
                (false, None) => {
                    return Err(TaskError::NoQueue {
                        agent: agent.to_string(),
                    });
                }
            };
            if let Some(tool_name) = tool_name {
                queue.tool_name = tool_name.to_string();
            }
            let changed = queue.paused != paused;
            queue.paused = paused;
            let ack = self.persist_acked(vec![StoreOp::Paused {
                agent: agent.to_string(),
                paused,
            }]);
            if !paused {
                self.pump(&mut state, agent);
            }
            (changed, ack)
        };
        self.wait_acked(ack).await?;
        Ok(changed)
    }

    /// Every agent that has a queue.
    pub fn agents(&self) -> Vec<Name> {
        self.lock().queues.keys().cloned().collect()
    }

    /// Statistics of `agent`'s queue.
    pub fn stats(&self, agent: &Name) -> Result<QueueStats, TaskError> {
        let mut state = self.lock();
        self.purge(&mut state);
        state
            .queues
            .get(agent)
            .map(AgentQueue::stats)
            .ok_or_else(|| TaskError::NoQueue {
                agent: agent.to_string(),
            })
    }

    /// Statistics of every queue.
    pub fn all_stats(&self) -> Vec<(Name, QueueStats)> {
        let mut state = self.lock();
        self.purge(&mut state);
        state
            .queues
            .iter()
            .map(|(name, queue)| (name.clone(), queue.stats()))
            .collect()
    }

    /// Tasks known, in memory (for figures).
    pub fn known_tasks(&self) -> usize {
        self.lock().tasks.len()
    }
}

/// How a worker's run ended.
enum Finish {
    Answered {
        result: Value,
        success: bool,
        error: Option<String>,
        retries: u32,
        tool_result: Option<Value>,
    },
    Failed {
        error: String,
        tool_result: Option<Value>,
    },
    Cancelled,
}

impl AgentQueue {
    fn stats(&self) -> QueueStats {
        let count = |status: TaskStatus| self.counts[status.index()];
        QueueStats {
            total_tasks: self.counts.iter().sum(),
            completed_tasks: count(TaskStatus::Completed),
            failed_tasks: count(TaskStatus::Failed),
            cancelled_tasks: count(TaskStatus::Cancelled),
            pending_tasks: count(TaskStatus::Pending),
            processing_tasks: count(TaskStatus::Processing),
            average_processing_time: if self.processing_ms_count == 0 {
                0.0
            } else {
                self.processing_ms_total as f64 / self.processing_ms_count as f64 / 1000.0
            },
            queue_size: self.pending.len(),
            queue_status: if self.paused { "paused" } else { "running" },
        }
    }
}

impl State {
    /// Adds a task read from disk or just submitted (its queue exists).
    fn insert_known(&mut self, record: TaskRecord, ttl_ms: u64, join_queue: bool) {
        let Ok(agent) = Name::parse(&record.agent) else {
            return;
        };
        if let Some(key) = &record.idempotency {
            self.idempotency
                .insert((key.clone(), record.agent.clone()), record.task_id.clone());
        }
        if let Some(finished) = record.finished_at_ms
            && record.status.is_finished()
        {
            self.expiries
                .insert((finished.saturating_add(ttl_ms), record.task_id.clone()));
        }
        let queue = self.queues.entry(agent).or_default();
        queue.counts[record.status.index()] += 1;
        if let Some(ms) = record.processing_ms() {
            queue.processing_ms_total += ms;
            queue.processing_ms_count += 1;
        }
        // Loaded pending tasks join the queue now; a new submission joins once on disk.
        if join_queue && record.status == TaskStatus::Pending {
            queue
                .pending
                .insert((Reverse(record.priority), record.seq, record.task_id.clone()));
        }
        self.tasks.insert(
            record.task_id.clone(),
            Entry {
                record,
                cancel: None,
            },
        );
    }

    /// Moves one task of `agent` from one status count to another.
    fn recount(&mut self, agent: &Name, from: TaskStatus, to: TaskStatus) {
        if let Some(queue) = self.queues.get_mut(agent) {
            queue.counts[from.index()] = queue.counts[from.index()].saturating_sub(1);
            queue.counts[to.index()] += 1;
        }
    }

    /// Forgets a task entirely; whether it was known.
    fn forget(&mut self, task_id: &str) -> bool {
        let Some(entry) = self.tasks.remove(task_id) else {
            return false;
        };
        let record = entry.record;
        if let Some(key) = record.idempotency {
            self.idempotency.remove(&(key, record.agent.clone()));
        }
        if let Ok(agent) = Name::parse(&record.agent)
            && let Some(queue) = self.queues.get_mut(&agent)
        {
            let index = record.status.index();
            queue.counts[index] = queue.counts[index].saturating_sub(1);
            if let (Some(start), Some(end)) = (record.started_at_ms, record.finished_at_ms)
                && matches!(record.status, TaskStatus::Completed | TaskStatus::Failed)
            {
                queue.processing_ms_total = queue
                    .processing_ms_total
                    .saturating_sub(end.saturating_sub(start));
                queue.processing_ms_count = queue.processing_ms_count.saturating_sub(1);
            }
            queue
                .pending
                .remove(&(Reverse(record.priority), record.seq, record.task_id.clone()));
        }
        true
    }
}
