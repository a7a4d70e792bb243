//! SIGINT, SIGTERM and SIGHUP while a machine runs: recorded, so that the run stops QEMU
//! and says why, instead of Keel ending with its machine still running. While no machine
//! runs they do what they always do: end the process.
//!
//! The handlers are installed once per process (signal-hook cannot give a signal its
//! default disposition back); "no machine runs" makes them perform the default action.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

struct Handlers {
    /// No machine runs: a signal ends the process.
    idle: Arc<AtomicBool>,
    /// The last signal received while a machine ran (0: none).
    last: Arc<AtomicUsize>,
    /// How many machines run.
    running: usize,
}

static HANDLERS: Mutex<Option<Handlers>> = Mutex::new(None);

fn install() -> std::io::Result<Handlers> {
    let idle = Arc::new(AtomicBool::new(true));
    let last = Arc::new(AtomicUsize::new(0));
    for sig in SIGNALS {
        signal_hook::flag::register_conditional_default(sig, idle.clone())?;
        signal_hook::flag::register_usize(sig, last.clone(), sig as usize)?;
    }
    Ok(Handlers {
        idle,
        last,
        running: 0,
    })
}

/// While it lives, the three signals are recorded, not fatal.
pub(crate) struct Watch {
    last: Arc<AtomicUsize>,
}

pub(crate) fn watch() -> std::io::Result<Watch> {
    let mut guard = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        *guard = Some(install()?);
    }
    let Some(h) = guard.as_mut() else {
        return Err(std::io::Error::other("signal handlers missing"));
    };
    if h.running == 0 {
        h.last.store(0, Ordering::SeqCst);
        h.idle.store(false, Ordering::SeqCst);
    }
    h.running += 1;
    Ok(Watch {
        last: h.last.clone(),
    })
}

impl Watch {
    /// The signal received since the first running machine started, if any.
    pub(crate) fn signal(&self) -> Option<i32> {
        match self.last.load(Ordering::SeqCst) {
            0 => None,
            s => i32::try_from(s).ok(),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut guard = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = guard.as_mut() {
            h.running = h.running.saturating_sub(1);
            if h.running == 0 {
                h.idle.store(true, Ordering::SeqCst);
            }
        }
    }
}
