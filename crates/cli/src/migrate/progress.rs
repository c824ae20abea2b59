//! How long runs show where they are, on standard error when it is a terminal (nothing
//! otherwise): a count while operators are read, a bar per stage with rate and time left while
//! a plan is applied.

use std::io::IsTerminal as _;
use std::sync::Mutex;

/// The engine's progress display (`ims_migration::run::Progress`).
pub struct Display {
    tty: bool,
    current: Mutex<Option<(String, indicatif::ProgressBar)>>,
}

impl Display {
    pub fn new() -> Self {
        Display {
            tty: std::io::stderr().is_terminal(),
            current: Mutex::new(None),
        }
    }

    /// A stage, how far it is, out of how many (0: not known, counted instead of drawn).
    pub fn show(&self, stage: &str, done: usize, total: usize) {
        if total == 0 {
            if self.tty {
                eprint!("\r{stage}: {done}");
            }
            return;
        }
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        if current.as_ref().is_none_or(|(s, _)| s != stage) {
            if let Some((_, bar)) = current.take() {
                bar.finish();
            }
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(stage.to_owned());
            *current = Some((stage.to_owned(), bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_position(done as u64);
        }
    }

    /// Ends the last bar.
    pub fn finish(&self) {
        if let Some((_, bar)) = self.current.lock().ok().and_then(|mut c| c.take()) {
            bar.finish();
        }
    }

    /// Ends a count's line, when one was drawn.
    pub fn end_count(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Who runs this command on this machine, for the record of what was forced: the login name
/// when the environment gives one (cron and containers often do not), else the user id.
pub fn local_user() -> String {
    use std::os::unix::fs::MetadataExt as _;
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            std::fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid {}", m.uid()))
        })
        .unwrap_or_else(|| "an unnamed local user".into())
}
