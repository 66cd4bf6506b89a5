//! Task manifests narrow by what each request or call would get, not rule
//! by rule: HTTP rules are first-match, so a task rule covered by a later
//! standing rule must not take the requests an earlier standing rule
//! decides with approval or with other injected headers. Through the real
//! binary: `sandbox run --task-manifest`, `policy explain` and `policy diff`.
#![allow(clippy::unwrap_used)]

mod common;

use common::http_server::HttpServer;
use common::{Fixture, Run, guest, label, sandbox};
use std::path::Path;
use std::process::Stdio;

/// A task manifest's own `allow_private` (the loopback test server).
const PRIVATE: &str = "[http]\nallow_private = [\"127.0.0.1/32\"]\n";

const TOKEN: &str = "narrowing-test-token-0123456789abcdef";

/// The standing manifest: `/v1/admin/**` asks for every method and injects
/// nothing; `/v1/**` after it never asks and injects the API token.
fn standing(s: &HttpServer, admin_when: &str) -> String {
    format!(
        r#"
[secrets.api]
env = "NARROWING_API_TOKEN"

[http]
allow_private = ["127.0.0.1/32"]

[[http.allow]]
url = "{admin}"
methods = ["GET", "DELETE"]
approval = "required"
{admin_when}

[[http.allow]]
url = "{v1}"
methods = ["GET", "DELETE"]
approval = "never"
headers = {{ Authorization = "Bearer {{secrets.api}}" }}
"#,
        admin = s.url("/v1/admin/**"),
        v1 = s.url("/v1/**"),
    )
}

/// `sandbox run probe` with a task manifest (and more options), no terminal.
fn run(fx: &Fixture, task: &Path, opts: &[&str], args: &[&str]) -> Run {
    let mut c = sandbox();
    c.arg("run").arg(guest("probe")).arg("--manifest").arg(fx.manifest()).args(["--user", "alice"]);
    c.arg("--task-manifest").arg(task).args(opts).arg("--").args(args);
    c.env("NARROWING_API_TOKEN", TOKEN).env_remove("SANDBOX_IDENTITY_TOKEN");
    Run::from_output(c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap())
}

fn diff(old: &Path, new: &Path) -> Run {
    Run::from_output(sandbox().args(["policy", "diff"]).arg(old).arg(new).output().unwrap())
}

fn write(fx: &Fixture, name: &str, body: &str) -> std::path::PathBuf {
    let p = fx.path(name);
    std::fs::write(&p, format!("version = 1\n{body}")).unwrap();
    p
}

/// The start was refused with exit 77 and one line naming `want`; nothing
/// ran, and the refusal is on record.
fn assert_refused(fx: &Fixture, r: &Run, want: &str) {
    assert_eq!(r.code, 77, "{r:?}");
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "one line: {}", r.stderr);
    assert!(r.stderr.contains(want), "{want} not in {}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let end = fx.events().pop().unwrap();
    assert_eq!((end["kind"].as_str(), end["status"].as_str()), (Some("task-end"), Some("refused")), "{end}");
    assert!(end["reason"].as_str().unwrap().contains(want), "{end}");
}

#[test]
fn a_task_rule_cannot_drop_the_approval_an_earlier_standing_rule_asks_for() {
    let s = HttpServer::start();
    let fx = Fixture::new(&standing(&s, ""));
    let (admin, v1) = (s.url("/v1/admin/**"), s.url("/v1/**"));
    let delete_all = s.url("/v1/admin/delete-all");
    // Only `/v1/**`, as the standing manifest writes it: covered by the
    // standing `/v1/**`, but it would also take the admin requests.
    let v1_rule = format!("[[http.allow]]\nurl = \"{v1}\"\nmethods = [\"GET\", \"DELETE\"]\napproval = \"never\"\n");
    let task = write(&fx, "task.toml", &v1_rule);
    let r = run(&fx, &task, &[], &["http-req", "DELETE", &delete_all]);
    assert_refused(
        &fx,
        &r,
        &format!(
            "`http.allow:{v1}` would widen the standing manifest: GET without approval on requests where the \
             standing http.allow[0]:{admin} asks for it (rules are first-match: repeat the standing `{admin}` \
             rule before it, or leave those requests out)"
        ),
    );
    assert!(s.requests().is_empty(), "nothing was sent: {:?}", s.requests());

    // `policy diff` from the standing manifest to the task's says so too.
    let r = diff(&fx.manifest(), &task);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.lines().any(|l| l.starts_with(&format!(
            "widens   http.allow {v1}: GET without approval on requests where the old http.allow[0]:{admin} asks"
        ))),
        "{}",
        r.stdout
    );

    // Doing what the message says narrows: the admin requests keep their
    // approval (no terminal here, so they are denied) and get no token;
    // the rest gets the token, without approval.
    let admin_rule =
        format!("[[http.allow]]\nurl = \"{admin}\"\nmethods = [\"GET\", \"DELETE\"]\napproval = \"required\"\n");
    let fixed = write(&fx, "fixed.toml", &format!("{PRIVATE}{admin_rule}{v1_rule}"));
    let items = s.url("/v1/items");
    let r = run(&fx, &fixed, &[], &["http-req", "DELETE", &delete_all, "+", "http-req", "GET", &items]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.line(&label(&["http-req", "DELETE", &delete_all])).starts_with("ok"), "{}", r.stdout);
    assert!(r.line(&label(&["http-req", "GET", &items])).starts_with("ok"), "{}", r.stdout);
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "only the GET went out: {reqs:#?}");
    assert_eq!(reqs[0].target(), Some("/v1/items"));
    assert_eq!(reqs[0].header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    let approval = fx.events().into_iter().find(|e| e["kind"] == "approval").unwrap();
    assert_eq!(approval["rule"], format!("task.http.allow[0]:{admin}"), "{approval}");
    let r = diff(&fx.manifest(), &fixed);
    assert!(r.stdout.lines().all(|l| !l.starts_with("widens   http")), "{}", r.stdout);
    assert_eq!(fx.verify().code, 0);
}

#[test]
fn a_task_rule_cannot_move_an_injected_secret_onto_requests_another_rule_decides() {
    let s = HttpServer::start();
    // The admin rule asks for nothing on GET and injects no token.
    let fx = Fixture::new(&standing(&s, "").replace("approval = \"required\"\n", "approval = \"never\"\n"));
    let (admin, v1) = (s.url("/v1/admin/**"), s.url("/v1/**"));
    let users = s.url("/v1/admin/users");
    let task = write(
        &fx,
        "task.toml",
        &format!("{PRIVATE}[[http.allow]]\nurl = \"{v1}\"\nmethods = [\"GET\"]\napproval = \"never\"\n"),
    );
    let r = run(&fx, &task, &[], &["http-req", "GET", &users]);
    assert_refused(
        &fx,
        &r,
        &format!(
            "`http.allow:{v1}` would widen the standing manifest: injects `Authorization: Bearer {{secrets.api}}` \
             on requests where the standing http.allow[0]:{admin} injects no header"
        ),
    );
    assert!(s.requests().is_empty(), "the token went nowhere: {:?}", s.requests());
    assert!(!r.stderr.contains(TOKEN));
    // `policy diff` finds the same move between two manifests: dropping
    // the admin rule sends the token to the admin requests.
    let moved = fx.manifest().with_file_name("moved.toml");
    let text = std::fs::read_to_string(fx.manifest()).unwrap();
    let admin_rule = text.find("[[http.allow]]").unwrap();
    let v1_rule = admin_rule + 1 + text[admin_rule + 1..].find("[[http.allow]]").unwrap();
    std::fs::write(&moved, format!("{}{}", &text[..admin_rule], &text[v1_rule..])).unwrap();
    let r = diff(&fx.manifest(), &moved);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.lines().any(|l| l.starts_with(&format!(
            "widens   http.allow {v1}: injects `Authorization: Bearer {{secrets.api}}` on requests where the old \
             http.allow[0]:{admin} injects no header"
        ))),
        "{}",
        r.stdout
    );
}

#[test]
fn a_conditional_standing_rule_is_decided_for_the_caller_of_the_run() {
    let s = HttpServer::start();
    // The admin rule asks for approval of API callers only.
    let fx = Fixture::new(&standing(&s, "when = { tier = [\"api\"] }"));
    let (admin, v1) = (s.url("/v1/admin/**"), s.url("/v1/**"));
    let users = s.url("/v1/admin/users");
    let task = write(
        &fx,
        "task.toml",
        &format!("{PRIVATE}[[http.allow]]\nurl = \"{v1}\"\nmethods = [\"GET\"]\napproval = \"never\"\n"),
    );
    let r = run(&fx, &task, &["--tier", "api"], &["http-req", "GET", &users]);
    assert_refused(
        &fx,
        &r,
        &format!("GET without approval on requests where the standing http.allow[0]:{admin} asks for it"),
    );
    assert!(s.requests().is_empty());
    // An interactive caller never had the admin rule: `/v1/**` decides
    // those requests for it under both manifests.
    let r = run(&fx, &task, &["--tier", "interactive"], &["http-req", "GET", &users]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.line(&label(&["http-req", "GET", &users])).starts_with("ok"), "{}", r.stdout);

    // `policy diff`: a `when` admitting other callers widens (it was a
    // mere "change"), one admitting fewer narrows.
    let rule = format!("[[http.allow]]\nurl = \"{v1}\"\n");
    let interactive = write(&fx, "interactive.toml", &format!("{rule}when = {{ tier = [\"interactive\"] }}\n"));
    let api = write(&fx, "api.toml", &format!("{rule}when = {{ tier = [\"api\"] }}\n"));
    let both = write(&fx, "both.toml", &format!("{rule}when = {{ tier = [\"interactive\", \"api\"] }}\n"));
    let r = diff(&interactive, &api);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.stdout.lines().next(),
        Some(format!("widens   http.allow {v1} when: tier = interactive -> tier = api").as_str())
    );
    let r = diff(&both, &interactive);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), format!("narrows  http.allow {v1} when: tier = interactive|api -> tier = interactive"));
}

#[test]
fn file_grants_do_not_depend_on_order_and_are_decided_for_the_caller() {
    // Writes under `out/` ask, except `out/auto/**`; interactive callers
    // may also write all of `out/` without asking.
    let fx = Fixture::new(
        "[fs]\nwrite = [\"out/**\"]\nauto_approve = [\"out/auto/**\"]\n\n[[fs.grant]]\nauto_approve = [\"out/**\"]\nwhen = { tier = [\"interactive\"] }\n",
    );
    fx.file("out/.keep", "");
    let task = write(&fx, "task.toml", "[fs]\nwrite = [\"out/**\"]\nauto_approve = [\"out/**\"]\n");
    let r = run(&fx, &task, &["--tier", "api"], &["write", "out/x", "y"]);
    assert_refused(
        &fx,
        &r,
        "`fs.auto_approve:out/**` would widen the standing manifest: not covered by the standing `fs.auto_approve` (out/auto/**)",
    );
    assert_eq!(fx.read("out/x"), None);
    let r = run(&fx, &task, &["--tier", "interactive"], &["write", "out/x", "y"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.line(&label(&["write", "out/x", "y"])).starts_with("ok"), "{}", r.stdout);
    assert_eq!(fx.read("out/x").as_deref(), Some("y"));

    // `policy diff`: moving the grant out of its condition widens.
    let open = write(&fx, "open.toml", "[fs]\nwrite = [\"out/**\"]\nauto_approve = [\"out/auto/**\", \"out/**\"]\n");
    let r = diff(&fx.manifest(), &open);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.lines().any(|l| l == "widens   fs.auto_approve + out/**"), "{}", r.stdout);
}

#[test]
fn command_rules_are_decided_for_the_caller_and_a_wider_when_widens() {
    let rule = "[[process.allow]]\nprogram = \"ls\"\npath = \"/bin/ls\"\n";
    let fx = Fixture::new(&format!("{rule}approval = \"required\"\n"));
    let task = write(&fx, "task.toml", &format!("{rule}approval = \"never\"\n"));
    let r = run(&fx, &task, &[], &["run", "ls"]);
    assert_refused(
        &fx,
        &r,
        "`process.allow:ls` would widen the standing manifest: runs without approval, where the standing",
    );

    // One rule per program, so only its `when` can differ by caller.
    let admins = write(&fx, "admins.toml", &format!("{rule}when = {{ claims = {{ role = [\"admin\"] }} }}\n"));
    let guests =
        write(&fx, "guests.toml", &format!("{rule}when = {{ claims = {{ role = [\"admin\", \"guest\"] }} }}\n"));
    let r = diff(&admins, &guests);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout.lines().next(), Some("widens   process.allow ls when: role = admin -> role = admin|guest"));
    let r = diff(&guests, &admins);
    assert_eq!((r.code, r.stdout.trim()), (0, "narrows  process.allow ls when: role = admin|guest -> role = admin"));
}
