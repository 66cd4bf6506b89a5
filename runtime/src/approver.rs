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
use sandbox_approvals::client::{Client, ClientError};
use sandbox_approvals::protocol::{self, State, Submission, Vote};
use sandbox_host_api::approval::{Answer, ApprovalRequest, Approver};
use sandbox_policy::Require;
use std::fmt::Write as _;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant, SystemTime};

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
        if *req.require != Require::Any {
            return Answer::refused("tty", format!("the rule requires {}; a terminal has one reviewer", req.require));
        }
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
            request: None,
        }
    }
}

/// Asks an approval service (`sandbox approvals serve`): submits exactly
/// the effect, waits for the reviewers' decision (riding out a restart of
/// the service until the request's timeout), and accepts an approval only
/// when every approving vote is bound to this effect's hash.
#[derive(Debug)]
pub struct ServiceApprover {
    client: Client,
    url: String,
}

/// The most of a preview sent to reviewers (the service's limit, marker
/// included).
const MAX_PREVIEW: usize = sandbox_approvals::protocol::MAX_PREVIEW;

impl ServiceApprover {
    /// A service approver for the service at `url`, authenticated with the
    /// runner `token`.
    pub fn new(url: &str, token: &str) -> ServiceApprover {
        ServiceApprover { client: Client::new(url, token), url: url.to_owned() }
    }
}

fn protocol_require(r: &Require) -> protocol::Require {
    match r {
        Require::Any => protocol::Require::Any(true),
        Require::All(names) => protocol::Require::All(names.clone()),
        Require::Min(n) => protocol::Require::Min(*n),
        Require::Role(role) => protocol::Require::Role(role.clone()),
    }
}

fn parse_time(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).unwrap_or_else(|_| SystemTime::now())
}

impl Approver for ServiceApprover {
    fn via(&self) -> &'static str {
        "service"
    }

    fn ask(&mut self, req: &ApprovalRequest<'_>) -> Answer {
        let deadline = Instant::now() + req.timeout;
        let preview = req.preview.map(|p| {
            if p.len() <= MAX_PREVIEW {
                return p.to_owned();
            }
            let mut end = MAX_PREVIEW - 128;
            while !p.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}\n... (preview cut: {} of {} bytes shown)\n", &p[..end], end, p.len())
        });
        let submission = Submission {
            task: req.task.to_owned(),
            user: req.user.to_owned(),
            agent: req.agent.to_owned(),
            intent: req.intent.map(str::to_owned),
            capability: req.capability.to_owned(),
            target: req.target.to_owned(),
            dest: req.dest.map(str::to_owned),
            rule: req.rule.to_owned(),
            require: protocol_require(req.require),
            preview,
            content_sha256: req.content_sha256.map(str::to_owned),
            effect_sha256: req.effect_sha256.to_owned(),
            size: req.size,
            timeout_ms: req.timeout.as_millis() as u64,
        };
        let refused = |reason: String| Answer::refused("service", reason);
        let submitted = match self.client.submit(&submission, deadline) {
            Ok(s) => s,
            Err(e) => return refused(format!("{e}")),
        };
        let mut answer = match self.client.wait(&submitted.id, deadline) {
            Err(ClientError::Timeout) => refused(format!(
                "no decision within {} (expired)",
                humantime::format_duration(Duration::from_secs(req.timeout.as_secs()))
            )),
            Err(e) => refused(format!("{e}")),
            Ok(view) => {
                let approvers: Vec<&protocol::VoteView> =
                    view.votes.iter().filter(|v| v.decision == Vote::Approve).collect();
                let at = view.decided.as_deref().map_or_else(SystemTime::now, parse_time);
                match view.state {
                    State::Approved if approvers.iter().any(|v| v.effect_sha256 != req.effect_sha256) => refused(
                        format!("request {}: a vote is bound to another effect than the one asked for", view.id),
                    ),
                    State::Approved if view.effect_sha256 != req.effect_sha256 => {
                        refused(format!("request {} describes another effect than the one asked for", view.id))
                    }
                    State::Approved => Answer {
                        approved: true,
                        via: "service",
                        by: approvers.iter().map(|v| v.by.clone()).collect(),
                        at,
                        reason: format!(
                            "approved by {} ({})",
                            approvers.iter().map(|v| v.by.as_str()).collect::<Vec<_>>().join(", "),
                            req.require
                        ),
                        request: None,
                    },
                    State::Rejected => {
                        let by: Vec<&protocol::VoteView> =
                            view.votes.iter().filter(|v| v.decision == Vote::Reject).collect();
                        let comments: Vec<String> =
                            by.iter()
                                .map(|v| {
                                    if v.comment.is_empty() { v.by.clone() } else { format!("{}: {}", v.by, v.comment) }
                                })
                                .collect();
                        Answer {
                            approved: false,
                            via: "service",
                            by: by.iter().map(|v| v.by.clone()).collect(),
                            at,
                            reason: format!("rejected by {}", comments.join("; ")),
                            request: None,
                        }
                    }
                    State::Expired => refused(format!(
                        "no decision within {} (expired)",
                        humantime::format_duration(Duration::from_secs(req.timeout.as_secs()))
                    )),
                    State::Pending => refused("no decision before the deadline (expired)".into()),
                }
            }
        };
        answer.request = Some(submitted.id);
        if !answer.approved && answer.by.is_empty() {
            tracing::debug!(url = %self.url, "approval refused without a vote: {}", answer.reason);
        }
        answer
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
