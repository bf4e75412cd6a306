//! One tokio runtime per process, shared by every node in it. Two workers are plenty for
//! socket I/O and keep an idle node cheap.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

/// The shared runtime, created on first use.
pub fn get() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("espial")
            .enable_all()
            .build()
            .expect("the OS refused to start the espial runtime threads")
    })
}
