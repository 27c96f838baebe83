//! The shard-local door: how a task that runs on a shard's own executor
//! (a connection of the network layer, through `Node::spawn_on_shards`)
//! hands data commands to that shard without the cross-thread inbox.
//!
//! Each shard thread installs its [`LocalQueue`] in a thread local when it
//! starts. `Shards::try_command` asks [`try_push`] first: when the caller
//! runs on the target shard's thread, the command goes into that queue (no
//! atomics, no channel: the task and the dispatcher are cooperative tasks
//! of one executor, never running at once); otherwise it goes to the inbox
//! as before. The dispatcher takes the local queue before the inbox.
//!
//! Order: a producer reaches a given shard by one path only (its own shard
//! locally, every other one through its inbox), so each producer's commands
//! reach each shard in the order it sent them. The queue is bounded like
//! the inbox (`NodeConfig::inbox_capacity`): full is `Backpressure`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::mpsc::TrySendError;

use super::command::Command;

/// A shard's queue of data commands from tasks on its own executor.
pub(crate) struct LocalQueue {
    q: RefCell<VecDeque<Command>>,
    capacity: usize,
}

impl LocalQueue {
    /// The next command, oldest first.
    pub(crate) fn pop(&self) -> Option<Command> {
        self.q.borrow_mut().pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.q.borrow().is_empty()
    }
}

/// Which shard of which node this thread runs, and its queue.
struct Door {
    node: u64,
    shard: usize,
    queue: Rc<LocalQueue>,
}

thread_local! {
    static DOOR: RefCell<Option<Door>> = const { RefCell::new(None) };
}

/// Install shard `shard` of node `node` on this thread (its executor's
/// thread, once, before its dispatcher runs).
pub(crate) fn install(node: u64, shard: usize, capacity: usize) -> Rc<LocalQueue> {
    let queue = Rc::new(LocalQueue {
        q: RefCell::new(VecDeque::with_capacity(capacity.min(1024))),
        capacity,
    });
    DOOR.with(|d| {
        let mut d = d.borrow_mut();
        assert!(d.is_none(), "a shard thread runs one shard");
        *d = Some(Door {
            node,
            shard,
            queue: queue.clone(),
        });
    });
    queue
}

/// Hand `cmd` to shard `shard` of node `node` if this thread runs it: `Ok`
/// (queued), `Err(Full)` (backpressure, the command handed back), or
/// `Err(Disconnected)`: this thread is not that shard, take the inbox.
pub(crate) fn try_push(node: u64, shard: usize, cmd: Command) -> Result<(), TrySendError<Command>> {
    DOOR.with(|d| {
        let d = d.borrow();
        let Some(door) = d.as_ref().filter(|x| x.node == node && x.shard == shard) else {
            return Err(TrySendError::Disconnected(cmd));
        };
        let mut q = door.queue.q.borrow_mut();
        if q.len() >= door.queue.capacity {
            return Err(TrySendError::Full(cmd));
        }
        q.push_back(cmd);
        Ok(())
    })
}

/// The shard this thread runs, if it runs one of node `node`.
pub(crate) fn current_shard(node: u64) -> Option<usize> {
    DOOR.with(|d| {
        d.borrow()
            .as_ref()
            .filter(|x| x.node == node)
            .map(|x| x.shard)
    })
}
