//! The gateway's durable task store (`aop gateway --data-dir DIR`): one redb file,
//! `DIR/gateway-tasks.redb`, with the gateway's own tables (tasks by id, paused queues).
//!
//! One writer thread owns every write and commits with fsync (`Durability::Immediate`).
//! Writes are sent in the order the queue changed its state, under the queue's lock, so the
//! file replays that order; the writer takes every write waiting when it starts a transaction
//! (group commit), so many submissions at once share one fsync, and whoever needs the write
//! on disk before answering (`submit_task`) waits for that commit.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::TaskError;
use super::record::TaskRecord;

const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("gateway_tasks");
const PAUSED: TableDefinition<&str, ()> = TableDefinition::new("gateway_paused_queues");

/// Writes per transaction at most, so one commit never grows without bound.
const BATCH_MAX: usize = 4096;

/// The store file inside `--data-dir`.
pub const FILE_NAME: &str = "gateway-tasks.redb";

/// One change to the file.
#[derive(Debug)]
pub enum StoreOp {
    Put(Box<TaskRecord>),
    Delete(String),
    Paused { agent: String, paused: bool },
}

impl StoreOp {
    pub fn put(record: &TaskRecord) -> StoreOp {
        StoreOp::Put(Box::new(record.clone()))
    }
}

struct Batch {
    ops: Vec<StoreOp>,
    done: Option<oneshot::Sender<Result<(), TaskError>>>,
}

/// What the file held at start.
pub struct Loaded {
    pub tasks: Vec<TaskRecord>,
    pub paused: Vec<String>,
}

/// The writer's mailbox.
pub struct TaskStore {
    path: PathBuf,
    // std mpsc: the writer is a plain thread; sends happen under the queue's std Mutex
    // (never across an await) so the order of writes is the order of changes.
    sender: mpsc::Sender<Batch>,
}

impl TaskStore {
    /// Opens (or creates) the store in `dir`, reads every task and paused flag, and starts
    /// the writer thread.
    pub fn open(dir: &Path) -> Result<(TaskStore, Loaded), TaskError> {
        let path = dir.join(FILE_NAME);
        let failed = |reason: String| TaskError::Store {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create the directory: {e}")))?;
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(failed(
                    "the file is in use by another gateway: give each gateway its own --data-dir"
                        .into(),
                ));
            }
            Err(error) => return Err(failed(error.to_string())),
        };
        {
            let txn = db.begin_write().map_err(|e| failed(e.to_string()))?;
            txn.open_table(TASKS).map_err(|e| failed(e.to_string()))?;
            txn.open_table(PAUSED).map_err(|e| failed(e.to_string()))?;
            txn.commit().map_err(|e| failed(e.to_string()))?;
        }
        let loaded = load(&db).map_err(failed)?;
        let (sender, receiver) = mpsc::channel();
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("aop-task-store".into())
            .spawn(move || write_loop(db, &writer_path, receiver))
            .map_err(|e| failed(format!("cannot start the writer thread: {e}")))?;
        Ok((TaskStore { path, sender }, loaded))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `ops`; nobody waits for them (their order is kept all the same).
    pub fn send(&self, ops: Vec<StoreOp>) {
        let _ = self.sender.send(Batch { ops, done: None });
    }

    /// Queues `ops` and returns what resolves once they are on disk.
    pub fn send_acked(&self, ops: Vec<StoreOp>) -> oneshot::Receiver<Result<(), TaskError>> {
        let (done, receiver) = oneshot::channel();
        if let Err(mpsc::SendError(batch)) = self.sender.send(Batch {
            ops,
            done: Some(done),
        }) && let Some(done) = batch.done
        {
            let _ = done.send(Err(TaskError::Store {
                path: self.path.clone(),
                reason: "the store's writer has stopped".into(),
            }));
        }
        receiver
    }
}

fn load(db: &Database) -> Result<Loaded, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let tasks_table = txn.open_table(TASKS).map_err(|e| e.to_string())?;
    let mut tasks = Vec::new();
    for row in tasks_table.iter().map_err(|e| e.to_string())? {
        let (key, value) = row.map_err(|e| e.to_string())?;
        let record = TaskRecord::decode(value.value())
            .map_err(|reason| format!("task {}: {reason}", key.value()))?;
        tasks.push(record);
    }
    let paused_table = txn.open_table(PAUSED).map_err(|e| e.to_string())?;
    let mut paused = Vec::new();
    for row in paused_table.iter().map_err(|e| e.to_string())? {
        let (key, _) = row.map_err(|e| e.to_string())?;
        paused.push(key.value().to_string());
    }
    Ok(Loaded { tasks, paused })
}

/// The writer: waits for a batch, takes every batch waiting behind it, commits them in one
/// fsync'd transaction, tells the waiters. Ends when every sender is gone.
fn write_loop(db: Database, path: &Path, receiver: mpsc::Receiver<Batch>) {
    while let Ok(first) = receiver.recv() {
        let mut batches = vec![first];
        let mut count = batches[0].ops.len();
        while count < BATCH_MAX {
            match receiver.try_recv() {
                Ok(batch) => {
                    count += batch.ops.len();
                    batches.push(batch);
                }
                Err(_) => break,
            }
        }
        let outcome = commit(&db, &batches).map_err(|reason| TaskError::Store {
            path: path.to_path_buf(),
            reason,
        });
        if let Err(error) = &outcome {
            tracing::error!(%error, "task store write failed");
        }
        for batch in batches {
            if let Some(done) = batch.done {
                let _ = done.send(outcome.clone());
            }
        }
    }
}

fn commit(db: &Database, batches: &[Batch]) -> Result<(), String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|e| e.to_string())?;
    {
        let mut tasks = txn.open_table(TASKS).map_err(|e| e.to_string())?;
        let mut paused = txn.open_table(PAUSED).map_err(|e| e.to_string())?;
        for op in batches.iter().flat_map(|batch| batch.ops.iter()) {
            match op {
                StoreOp::Put(record) => {
                    tasks
                        .insert(record.task_id.as_str(), record.encode().as_slice())
                        .map_err(|e| e.to_string())?;
                }
                StoreOp::Delete(task_id) => {
                    tasks.remove(task_id.as_str()).map_err(|e| e.to_string())?;
                }
                StoreOp::Paused {
                    agent,
                    paused: true,
                } => {
                    paused
                        .insert(agent.as_str(), ())
                        .map_err(|e| e.to_string())?;
                }
                StoreOp::Paused {
                    agent,
                    paused: false,
                } => {
                    paused.remove(agent.as_str()).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}
