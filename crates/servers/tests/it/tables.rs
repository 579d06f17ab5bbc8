use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use stepforge_servers::mcp::{self, McpConfig, TOOLS};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run(lines: &[Value]) -> Vec<Value> {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let sink = Sink::default();
    let cfg = McpConfig {
        root: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."),
        ..McpConfig::default()
    };
    mcp::serve(input.as_bytes(), sink.clone(), &cfg).unwrap();
    let out = sink.0.lock().unwrap().clone();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_tool_has_a_consistent_schema() {
    for t in TOOLS {
        let s = (t.schema)();
        assert_eq!(s["type"], "object", "{}", t.name);
        assert_eq!(s["additionalProperties"], false, "{}", t.name);
        let props = s["properties"].as_object().unwrap();
        for r in s["required"].as_array().unwrap() {
            assert!(
                props.contains_key(r.as_str().unwrap()),
                "{}: required {r} is not a property",
                t.name
            );
        }
        for (k, v) in props {
            assert!(
                v["description"].is_string(),
                "{}.{k} has no description",
                t.name
            );
        }
        assert!(t.description.ends_with('.'), "{}", t.name);
    }
}

#[test]
fn serves_in_process_and_answers_every_request() {
    let out = run(&[
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "1999-01-01"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "check", "arguments": {"task": "operators/norm/rmsnorm.yaml", "program": "return X\n"}}}),
        json!({"jsonrpc": "1.0", "id": 3, "method": "ping"}),
    ]);
    assert_eq!(out.len(), 3, "{out:?}");
    let by_id = |id: i64| out.iter().find(|m| m["id"] == id).unwrap();
    // An unknown protocol version gets the newest one we speak.
    assert_eq!(
        by_id(1)["result"]["protocolVersion"],
        mcp::PROTOCOL_VERSIONS[0]
    );
    let check = &by_id(2)["result"];
    assert_eq!(check["isError"], false);
    assert!(check["structuredContent"]["diagnostics"].is_array());
    assert_eq!(by_id(3)["error"]["code"], -32600);
}
