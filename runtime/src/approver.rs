//! Approvers: `deny` (from the host-api crate) and `tty`, which asks the
//! person at the run's controlling terminal.
//!
//! The tty approver opens `/dev/tty` itself: the tool has no door to it,
//! and its stdin is never the terminal (see `run`). Before reading the
//! answer it discards pending terminal input, so neither keys typed ahead
//! nor a terminal's reply to an escape sequence the tool printed can answer
//! for the human. Only `y` or `yes` approves; anything else, or no answer
//! in time, rejects. Text from the tool is shown with control, bidi and
//! zero-width characters made visible.

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use sandbox_host_api::approval::{Answer, ApprovalRequest, Approver};
use std::fmt::Write as _;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Instant, SystemTime};

/// Asks at the controlling terminal.
#[derive(Debug)]
pub struct TtyApprover {
    tty: Option<OwnedFd>,
    who: String,
}

impl TtyApprover {
    /// Opens the controlling terminal, if the run has one. Without one,
    /// every request is rejected saying so.
    ///
    /// # Ambient Authority
    ///
    /// Opens `/dev/tty`.
    pub fn open_ambient(who: &str) -> TtyApprover {
        let tty = rustix::fs::open("/dev/tty", OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty()).ok();
        TtyApprover { tty, who: who.to_owned() }
    }
}

/// True when the process has a controlling terminal.
///
/// # Ambient Authority
///
/// Opens `/dev/tty` (and closes it again).
pub fn has_terminal_ambient() -> bool {
    rustix::fs::open("/dev/tty", OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty()).is_ok()
}

impl Approver for TtyApprover {
    fn via(&self) -> &'static str {
        "tty"
    }

    fn ask(&mut self, req: &ApprovalRequest<'_>) -> Answer {
        let Some(tty) = &self.tty else {
            return Answer::refused("tty", "approval via `tty`, but the run has no controlling terminal");
        };
        let prompt = render(req);
        let mut out = std::fs::File::from(match tty.try_clone() {
            Ok(fd) => fd,
            Err(e) => return Answer::refused("tty", format!("cannot use the terminal: {e}")),
        });
        if out.write_all(prompt.as_bytes()).and_then(|()| out.flush()).is_err() {
            return Answer::refused("tty", "cannot write to the terminal");
        }
        // Nothing typed (or injected) before the question may answer it.
        let _ = rustix::termios::tcflush(tty, rustix::termios::QueueSelector::IFlush);
        let deadline = Instant::now() + req.timeout;
        let mut line = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = out.write_all(b"\n(no answer in time: rejected)\n");
                let wait = humantime::format_duration(req.timeout);
                return Answer::refused("tty", format!("no answer at the terminal within {wait}"));
            }
            let ts = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 };
            let mut fds = [PollFd::new(tty, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Answer::refused("tty", format!("cannot read the terminal: {e}")),
            }
            let mut buf = [0u8; 256];
            match rustix::io::read(tty, &mut buf) {
                Ok(0) => return Answer::refused("tty", "the terminal closed before an answer"),
                Ok(n) => {
                    line.extend_from_slice(&buf[..n]);
                    if line.contains(&b'\n') || line.len() > 64 {
                        break;
                    }
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                Err(e) => return Answer::refused("tty", format!("cannot read the terminal: {e}")),
            }
        }
        let answer = String::from_utf8_lossy(&line).trim().to_ascii_lowercase();
        let approved = answer == "y" || answer == "yes";
        let verb = if approved { "approved" } else { "rejected" };
        let _ = writeln!(out, "({verb})");
        Answer {
            approved,
            via: "tty",
            by: vec![self.who.clone()],
            at: SystemTime::now(),
            reason: format!("{verb} at the terminal by {}", self.who),
        }
    }
}

/// Makes tool-supplied text inert for a terminal: control characters,
/// bidi overrides and zero-width characters become visible escapes.
pub fn inert(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\t' => out.push_str("    "),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{061c}' | '\u{feff}' => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Undoes what a tool may have done to the terminal through its own output
/// so that the prompt cannot be hidden or disguised: all attributes off
/// (concealed, colours), cursor shown, back from the alternate screen,
/// scrolling region reset, line wrapping on.
const TERMINAL_RESET: &str = "\x1b[0m\x1b[?25h\x1b[?1049l\x1b[r\x1b[?7h";

fn render(req: &ApprovalRequest<'_>) -> String {
    let mut s = String::from(TERMINAL_RESET);
    s.push_str("\n+-- sandbox: approval needed ------------------------------\n");
    let mut row = |k: &str, v: &str| {
        let _ = writeln!(s, "| {k:<11} {}", inert(v, false));
    };
    row("tool", req.agent);
    row("task", req.task);
    row("user", req.user);
    row("intent", req.intent.unwrap_or("(none given)"));
    row("capability", req.capability);
    row("target", req.target);
    if let Some(d) = req.dest {
        row("to", d);
    }
    row("rule", req.rule);
    if let Some(size) = req.size {
        row("size", &format!("{size} bytes, {}", req.content_sha256.unwrap_or("")));
    }
    if let Some(p) = req.preview {
        s.push_str("| change:\n");
        for line in inert(p, true).lines() {
            let _ = writeln!(s, "|   {line}");
        }
    }
    let _ = write!(s, "+-- approve? type y and Enter ({} to answer) [y/N]: ", humantime::format_duration(req.timeout));
    s
}

#[cfg(test)]
mod tests {
    use super::inert;

    #[test]
    fn tool_text_is_made_inert() {
        assert_eq!(inert("a\u{1b}[2Jb", false), "a\\x1b[2Jb");
        assert_eq!(inert("x\ny", false), "x\\x0ay");
        assert_eq!(inert("x\ny", true), "x\ny");
        assert_eq!(inert("evil\u{202e}txt.exe", false), "evil\\u{202e}txt.exe");
        assert_eq!(inert("a\u{200b}b", false), "a\\u{200b}b");
        assert_eq!(inert("\u{9b}31m", false), "\\x9b31m");
    }
}
