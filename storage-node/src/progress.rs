//! Progress of a long operator command on stderr: one line, redrawn at most once a second, and
//! only when stderr is a terminal (logs and pipes get just the result).
//!
//! ```
//! let mut progress = storage_node::progress::Progress::new();
//! for done in 0..3u64 {
//!     progress.update(|| format!("scrub: {done} of 3 pieces"));
//! }
//! progress.finish();
//! ```

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_secs(1);

/// A progress line.
#[derive(Debug)]
pub struct Progress {
    last: Option<Instant>,
    shown: bool,
    tty: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// A line on stderr, drawn only if stderr is a terminal.
    pub fn new() -> Self {
        Progress {
            last: None,
            shown: false,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Redraws the line with `line()` if a second has passed since the last redraw (`line` is
    /// not called otherwise).
    #[allow(clippy::print_stderr)] // drawing progress is its job
    pub fn update(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if !self.tty || self.last.is_some_and(|t| now.duration_since(t) < REDRAW) {
            return;
        }
        self.last = Some(now);
        self.shown = true;
        eprint!("\r{} ", line());
    }

    /// Ends the line, if one was drawn.
    #[allow(clippy::print_stderr)]
    pub fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}
