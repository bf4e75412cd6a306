//! One tokio runtime per process, shared by every node in it. One worker: a node's work is
//! one task and its sockets' readers and writers, which hand off to each other; on one
//! thread they do so without waking another (the benchmark moved 20 % more small messages
//! with one worker than with two, on 2 cores shared with the JavaScript thread), and an
//! idle node costs one parked thread.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

/// The shared runtime, created on first use.
pub fn get() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("espial")
            .enable_all()
            .build()
            .expect("the OS refused to start the espial runtime threads")
    })
}
