//! `stepforge mcp` over stdio: protocol conformance, every tool on a library task, bad input,
//! an agent session end to end, and concurrency.

use std::time::Instant;

use serde_json::{Value, json};

use super::client::{Client, Framing};
use super::{CONSUME_TWICE, RMS_PROGRAM, RMS_TASK, SPLIT_TASK, root};

/// A functionally right RMSNorm that deadlocks on FIFOs of depth 2 (the simulator's fixture).
const DEADLOCK_TASK: &str = "simulator/tests/tasks/rmsnorm_deadlock.yaml";

fn start() -> Client {
    let r = root();
    let mut c = Client::spawn(&["mcp", "--root", r.to_str().unwrap()], Framing::Lines);
    let init = c.call(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    assert_eq!(init["result"]["serverInfo"]["name"], "stepforge");
    c.notify("notifications/initialized", json!({}));
    c
}

/// Calls a tool; returns (isError, structuredContent or null, text).
fn tool(c: &mut Client, name: &str, args: Value) -> (bool, Value, String) {
    let r = c.call("tools/call", json!({"name": name, "arguments": args}));
    let res = &r["result"];
    assert!(res.is_object(), "tools/call {name} gave no result: {r}");
    let text = res["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(res["content"][0]["type"], "text");
    (
        res["isError"] == json!(true),
        res["structuredContent"].clone(),
        text,
    )
}

#[test]
fn lists_tools_with_schemas_and_calls_each() {
    let mut c = start();
    let list = c.call("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "manual",
            "list_tasks",
            "show_task",
            "check",
            "fix",
            "verify",
            "simulate",
            "explain"
        ]
    );
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(t["inputSchema"]["properties"].is_object(), "{t}");
        assert!(t["description"].as_str().unwrap().len() > 80, "{t}");
    }

    let (err, _, text) = tool(&mut c, "manual", json!({}));
    assert!(!err, "{text}");

    let (err, s, _) = tool(&mut c, "list_tasks", json!({"dir": "operators/norm"}));
    assert!(!err);
    let tasks = s["tasks"].as_array().unwrap();
    assert!(
        tasks
            .iter()
            .any(|t| t["path"] == RMS_TASK && t["name"] == "norm_rmsnorm"),
        "{s}"
    );

    let (err, s, text) = tool(&mut c, "show_task", json!({"task": RMS_TASK}));
    assert!(!err);
    assert!(
        text.contains("func_name: fn_rms") && !text.contains("impl:"),
        "{text}"
    );
    assert_eq!(s["fn_names"], json!(["fn_rms"]));
    let (_, _, with_impl) = tool(
        &mut c,
        "show_task",
        json!({"task": RMS_TASK, "include_impl": true}),
    );
    assert!(with_impl.contains("impl:"));

    let (err, s, _) = tool(
        &mut c,
        "check",
        json!({"task": RMS_TASK, "program": RMS_PROGRAM}),
    );
    assert!(!err);
    assert_eq!(
        (s["ok"].clone(), s["linear"].clone()),
        (json!(true), json!(true)),
        "{s}"
    );
    assert!(s.as_object().unwrap().contains_key("graph_hash"));
    assert!(
        s["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "Xb"),
        "{s}"
    );

    let (err, s, _) = tool(
        &mut c,
        "fix",
        json!({"task": RMS_TASK, "program": RMS_PROGRAM}),
    );
    assert!(!err);
    assert_eq!(s["applied"], 0);
    assert_eq!(s["program"], RMS_PROGRAM);

    let (err, s, _) = tool(
        &mut c,
        "verify",
        json!({"task": RMS_TASK, "program": RMS_PROGRAM, "seeds": 2, "dims": {"D": 8}}),
    );
    assert!(!err);
    assert_eq!(s["verdict"], "pass", "{s}");
    assert_eq!(s["seeds"], json!([0, 1]));

    // simulate: cycles, the bound, the bottleneck; then a program that deadlocks at depth 2
    // and does not at a depth that holds a row.
    let (err, s, _) = tool(
        &mut c,
        "simulate",
        json!({"task": RMS_TASK, "program": RMS_PROGRAM}),
    );
    assert!(!err);
    assert_eq!(s["status"], "ok", "{s}");
    assert!(s["cycles"].as_u64().unwrap() > 0, "{s}");
    assert!(s["sol_fraction"].as_f64().unwrap() > 0.0, "{s}");
    assert!(
        s["bottleneck"].is_string() && s["deadlock"].is_null(),
        "{s}"
    );
    let (err, s, _) = tool(
        &mut c,
        "simulate",
        json!({"task": DEADLOCK_TASK, "dims": {"D": 16}}),
    );
    assert!(!err);
    assert_eq!(s["status"], "deadlock", "{s}");
    assert!(s["deadlock"].is_object(), "{s}");
    assert!(
        s["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["code"] == "E0801"),
        "{s}"
    );
    let (_, s, _) = tool(
        &mut c,
        "simulate",
        json!({"task": DEADLOCK_TASK, "dims": {"D": 16}, "fifo_depth": 64, "timing_only": true}),
    );
    assert_eq!(s["status"], "ok", "{s}");
    let (err, s, _) = tool(
        &mut c,
        "simulate",
        json!({"task": RMS_TASK, "fifo_depth": 0}),
    );
    assert!(err);
    assert_eq!(s["error"]["code"], "invalid_arguments");

    let (err, _, text) = tool(&mut c, "explain", json!({"code": "E0401"}));
    assert!(!err);
    assert!(text.contains("Copy"), "{text}");

    let res = c.call("resources/list", json!({}));
    let uris: Vec<&str> = res["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    let rms = uris
        .iter()
        .find(|u| u.ends_with(RMS_TASK))
        .expect("rmsnorm listed");
    let read = c.call("resources/read", json!({"uri": rms}));
    assert!(
        read["result"]["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("fn_rms")
    );
    let outside = c.call("resources/read", json!({"uri": "file:///etc/passwd"}));
    assert_eq!(outside["error"]["code"], -32002);

    assert!(c.close().success());
}

#[test]
fn malformed_requests_get_errors_and_the_server_goes_on() {
    let mut c = start();
    c.send_raw(b"this is not json\n");
    let (_, m) = c.wait_for("parse error", |m| m["error"]["code"] == -32700);
    assert_eq!(m["id"], Value::Null);
    c.send(&json!({"jsonrpc": "2.0", "id": 77}));
    let (_, m) = c.wait_for("invalid request", |m| m["id"] == 77);
    assert_eq!(m["error"]["code"], -32600);
    c.send_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":78,\"method\":\"ping\"}]\n");
    let (_, m) = c.wait_for("batch refusal", |m| {
        m["error"]["code"] == -32600 && m["id"].is_null()
    });
    assert!(m["error"]["message"].as_str().unwrap().contains("batch"));
    assert_eq!(c.call("no/such/method", json!({}))["error"]["code"], -32601);
    assert_eq!(
        c.call("tools/call", json!({"name": "nope"}))["error"]["code"],
        -32602
    );

    let bad = |c: &mut Client, args: Value| {
        let (err, s, text) = tool(c, "verify", args);
        assert!(err, "{text}");
        s["error"]["code"].as_str().unwrap().to_string()
    };
    assert_eq!(
        bad(&mut c, json!({"task": RMS_TASK, "program": 5})),
        "invalid_arguments"
    );
    assert_eq!(
        bad(&mut c, json!({"task": RMS_TASK, "seeds": 1000})),
        "invalid_arguments"
    );
    assert_eq!(
        bad(&mut c, json!({"task": RMS_TASK, "dims": {"D": -1}})),
        "invalid_arguments"
    );
    assert_eq!(
        bad(&mut c, json!({"task": RMS_TASK, "colour": "red"})),
        "invalid_arguments"
    );
    assert_eq!(
        bad(&mut c, json!({"task": "no/such.yaml"})),
        "task_not_found"
    );
    assert_eq!(
        bad(&mut c, json!({"task": "Cargo.toml"})),
        "invalid_arguments"
    );
    let (err, s, _) = tool(&mut c, "explain", json!({"code": "E9999"}));
    assert!(err);
    assert_eq!(s["error"]["code"], "unknown_code");

    assert_eq!(c.call("ping", json!({}))["result"], json!({}));
    assert!(c.close().success());
}

#[test]
fn huge_inputs_are_refused_with_a_clear_error() {
    let mut c = start();
    // A program over the 1 MiB bound (the message itself is within the line bound).
    let program = "# padding\n".repeat(150_000);
    let (err, s, text) = tool(
        &mut c,
        "check",
        json!({"task": RMS_TASK, "program": program}),
    );
    assert!(err);
    assert_eq!(s["error"]["code"], "input_too_large");
    assert!(text.contains("1 MiB"), "{text}");
    // A message over the 4 MiB line bound is skipped unread and answered with an error.
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{{\"name\":\"check\",\"arguments\":{{\"task\":\"{RMS_TASK}\",\"program\":\"{}\"}}}}}}\n",
        "x".repeat(5 << 20)
    );
    c.send_raw(huge.as_bytes());
    let (_, m) = c.wait_for("size error", |m| m["error"]["code"] == -32600);
    assert!(
        m["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit"),
        "{m}"
    );
    assert_eq!(c.call("ping", json!({}))["result"], json!({}));
    assert!(c.close().success());
}

#[test]
fn agent_session_check_fix_verify() {
    let mut c = start();
    let (err, _, _) = tool(&mut c, "manual", json!({}));
    assert!(!err);
    let (err, s, _) = tool(
        &mut c,
        "check",
        json!({"task": SPLIT_TASK, "program": CONSUME_TWICE}),
    );
    assert!(!err);
    assert_eq!(s["ok"], false);
    assert_eq!(s["linear"], false);
    let e = s["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "E0401")
        .expect("E0401");
    assert_eq!(e["span"]["line"], 8, "{e}");
    assert_eq!(e["fixes"][0]["applicability"], "safe");

    let (err, s, _) = tool(
        &mut c,
        "fix",
        json!({"task": SPLIT_TASK, "program": CONSUME_TWICE}),
    );
    assert!(!err);
    assert!(s["applied"].as_u64().unwrap() >= 1);
    assert_eq!(s["after"]["ok"], true, "{s}");
    assert_eq!(s["after"]["linear"], true);
    let fixed = s["program"].as_str().unwrap().to_string();
    assert!(fixed.contains("step.Copy()"), "{fixed}");

    let (err, s, _) = tool(
        &mut c,
        "verify",
        json!({"task": SPLIT_TASK, "program": fixed}),
    );
    assert!(!err);
    assert_eq!(s["verdict"], "pass", "{s}");
    assert!(c.close().success());
}

#[test]
fn a_long_verify_does_not_stall_other_requests() {
    let mut c = start();
    let slow = c.request(
        "tools/call",
        json!({"name": "verify", "arguments": {"task": RMS_TASK, "dims": {"D": 128, "N": 128, "M": 128}, "seeds": 2, "time_limit_ms": 4000}}),
    );
    let sent = Instant::now();
    let quick = c.request(
        "tools/call",
        json!({"name": "check", "arguments": {"task": RMS_TASK, "program": RMS_PROGRAM}}),
    );
    let ping = c.request("ping", json!({}));
    let (t_quick, q) = c.response_at(quick);
    let (t_ping, _) = c.response_at(ping);
    let (t_slow, v) = c.response_at(slow);
    assert_eq!(q["result"]["structuredContent"]["ok"], true);
    assert!(v["result"].is_object(), "{v}");
    assert!(
        t_quick < t_slow && t_ping < t_slow,
        "the check waited for the verify"
    );
    eprintln!(
        "mcp: check answered after {:?}, ping after {:?}, verify after {:?}",
        t_quick - sent,
        t_ping - sent,
        t_slow - sent
    );
    assert!(c.close().success());
}

#[test]
fn a_cancelled_call_is_not_answered_and_the_server_goes_on() {
    let mut c = start();
    // Occupy every worker (4) with slow verifies, then queue one more and cancel it.
    let slow_args = json!({"name": "verify", "arguments": {"task": RMS_TASK, "dims": {"D": 128, "N": 128, "M": 64}, "seeds": 1, "time_limit_ms": 3000}});
    let busy: Vec<i64> = (0..4)
        .map(|_| c.request("tools/call", slow_args.clone()))
        .collect();
    let queued = c.request("tools/call", slow_args.clone());
    c.notify(
        "notifications/cancelled",
        json!({"requestId": queued, "reason": "the user changed their mind"}),
    );
    // A cancellation of an unknown request is ignored.
    c.notify("notifications/cancelled", json!({"requestId": 999_999}));
    for id in busy {
        assert!(c.response(id)["result"].is_object());
    }
    // Everything sent after the cancelled call is answered; the cancelled one never is.
    let after = c.call(
        "tools/call",
        json!({"name": "check", "arguments": {"task": RMS_TASK, "program": RMS_PROGRAM}}),
    );
    assert_eq!(after["result"]["structuredContent"]["ok"], true, "{after}");
    let ping = c.call("ping", json!({}));
    assert!(ping["result"].is_object());
    assert!(c.seen(queued).is_none(), "the cancelled call was answered");
    assert!(c.close().success());
}
