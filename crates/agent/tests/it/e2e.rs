//! The loop end to end over `operators/` with a scripted server.

use stepforge_agent::Status;
use stepforge_agent::config::ProviderKind;

use crate::common::*;

fn groups_of(tasks: &[String]) -> Vec<String> {
    let refs = references();
    let mut g: Vec<String> = tasks.iter().map(|t| refs[t].0.clone()).collect();
    g.sort();
    g.dedup();
    g
}

#[test]
fn demonstrations_lift_the_second_set_and_replay_reproduces_the_store() {
    let server = scripted_server(0);
    let dir = TempDir::new("e2e");
    let store = dir.file("live.db");
    let s = run(config(&server.base, ProviderKind::Openai), &store);
    assert_eq!(s.status, Status::Done);
    assert_eq!(s.tasks, 26);
    let refs = references();
    let count = |groups: &[&str]| {
        refs.values()
            .filter(|(g, _)| groups.contains(&g.as_str()))
            .count()
    };
    // Iteration 0 solves exactly the tasks answered right at once.
    assert_eq!(s.iterations[0].solved as usize, count(AT_ONCE));
    assert_eq!(s.iterations[0].stratum, None);
    // The next iteration (hardest stratum as demonstrations) solves the second set.
    assert_eq!(s.iterations[1].new as usize, count(LATER));
    assert_eq!(s.iterations[1].stratum, Some(1));
    // Then every stratum is tried without a gain and the run stops; the third set never.
    let after: Vec<_> = s.iterations[2..]
        .iter()
        .map(|i| (i.stratum, i.new))
        .collect();
    assert_eq!(after, vec![(Some(1), 0), (Some(2), 0), (Some(3), 0)]);
    let mut want: Vec<&str> = AT_ONCE.iter().chain(LATER).copied().collect();
    want.sort();
    assert_eq!(groups_of(&s.solved_tasks), want);
    // The guardian repaired layernorm_scalar's missing Copy.
    assert!(s.guardian_fired > 0);
    assert!(
        s.solved_tasks
            .contains(&"norm_layernorm_scalar".to_string())
    );
    // Dedup: identical programs are verified once.
    assert!(
        s.verifications < s.samples,
        "{} verifications for {} samples",
        s.verifications,
        s.samples
    );
    assert!(s.tokens > 0 && s.cost > 0.0);

    // Replay from the transcript into a fresh store: identical content.
    let mut cfg = config("http://127.0.0.1:9/unused", ProviderKind::Replay);
    cfg.transcript = Some(format!("{store}.transcript.jsonl"));
    let replayed = dir.file("replay.db");
    let r = run(cfg, &replayed);
    assert_eq!(r.status, Status::Done);
    assert_eq!(dump(&store), dump(&replayed));
    assert_eq!((r.tokens, r.solved), (s.tokens, s.solved));
}

#[test]
fn batch_round_trip_matches_a_live_run() {
    use crate::server::{Api, completion};
    use stepforge_agent::provider::batch::validate_input_line;

    let dir = TempDir::new("batch");
    let tasks = subset(&dir);
    let server = scripted_server(0);
    let mut live_cfg = config(&server.base, ProviderKind::Openai);
    live_cfg.tasks_dir = tasks.clone();
    let live = run(live_cfg, &dir.file("live.db"));
    assert_eq!(live.status, Status::Done);

    let mut cfg = config("", ProviderKind::Batch);
    cfg.tasks_dir = tasks;
    let store = dir.file("batch.db");
    let refs = references();
    let mut s = run(cfg, &store);
    let mut trips = 0;
    while let Status::Waiting { requests } = s.status.clone() {
        trips += 1;
        assert!(trips < 30, "the batch run does not converge");
        let text = std::fs::read_to_string(&requests).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            validate_input_line(&v).unwrap_or_else(|e| panic!("{e}: {line}"));
            let answer = scripted(&refs, &v["body"]);
            let o = serde_json::json!({
                "id": "batch_req_1", "custom_id": v["custom_id"],
                "response": {"status_code": 200, "request_id": "req_1", "body": completion(Api::OpenAi, &answer)},
                "error": null,
            });
            out.push_str(&o.to_string());
            out.push('\n');
        }
        std::fs::write(requests.replace(".requests.jsonl", ".output.jsonl"), out).unwrap();
        s = resume(&store, None);
    }
    assert_eq!(s.status, Status::Done);
    assert!(
        trips >= 2,
        "iteration 0 and at least one demonstration round arrive by file"
    );
    assert_eq!(s.solved_tasks, live.solved_tasks);
    let key = |r: &stepforge_agent::store::IterationRow| {
        (r.iteration, r.stratum, r.solved, r.new, r.samples, r.tokens)
    };
    let a: Vec<_> = s.iterations.iter().map(key).collect();
    let b: Vec<_> = live.iterations.iter().map(key).collect();
    assert_eq!(a, b);
    // Half price on the Batch API.
    assert!(
        (s.cost * 2.0 - live.cost).abs() < 1e-9,
        "{} vs {}",
        s.cost,
        live.cost
    );
}
